"""Models of ir_d2. Importing this module registers every backbone, head and meta-architecture."""

from .backbone import BNSABlock, BNSAResNet, build_bnsa_resnet_fpn_backbone

__all__ = ["BNSABlock", "BNSAResNet", "build_bnsa_resnet_fpn_backbone"]
