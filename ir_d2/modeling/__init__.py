"""Models of ir_d2. Importing this module registers every backbone, head and meta-architecture."""

from .backbone import BNSABlock, BNSAResNet, build_bnsa_resnet_fpn_backbone
from .irstd import (
    IRSTD_NET_REGISTRY,
    AFFUNet,
    DNANet,
    SGEMUNet,
    SIRST5KNet,
    UNet,
    build_irstd_net,
)
from .meta_arch import IRSTDSegmentor
from .roi_heads import IRFastRCNNOutputLayers, IRMaskRCNNConvUpsampleHead, IRROIHeads

__all__ = ["BNSABlock", "BNSAResNet", "build_bnsa_resnet_fpn_backbone"]
__all__ += ["IRFastRCNNOutputLayers", "IRMaskRCNNConvUpsampleHead", "IRROIHeads"]
__all__ += ["AFFUNet", "DNANet", "IRSTD_NET_REGISTRY", "IRSTDSegmentor", "SGEMUNet", "SIRST5KNet"]
__all__ += ["UNet"]
__all__ += ["build_irstd_net"]
