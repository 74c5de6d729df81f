from .bnsa import BNSABlock
from .bnsa_fpn import BNSAResNet, build_bnsa_resnet, build_bnsa_resnet_fpn_backbone

__all__ = ["BNSABlock", "BNSAResNet", "build_bnsa_resnet", "build_bnsa_resnet_fpn_backbone"]
