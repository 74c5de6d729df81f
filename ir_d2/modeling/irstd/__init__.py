"""Small-target segmentation nets (torch; norms by name from detectron2's ``get_norm``), registered
in IRSTD_NET_REGISTRY on import."""

from .acm import ACM
from .aff import AFFBlock, AFFUNet, ChannelAttention, SpatialAttention
from .alcnet import ALCNet
from .build import IRSTD_NET_REGISTRY, build_irstd_net
from .classical import MaxMedian, TopHat
from .dnanet import DNANet, SIRST5KNet
from .isnet import ISNet
from .sgem import SGEM, SGEMUNet
from .uiunet import UIUNet
from .unet import UNet

__all__ = [
    "ACM",
    "AFFBlock",
    "AFFUNet",
    "ALCNet",
    "ChannelAttention",
    "DNANet",
    "IRSTD_NET_REGISTRY",
    "ISNet",
    "MaxMedian",
    "SGEM",
    "SGEMUNet",
    "SIRST5KNet",
    "SpatialAttention",
    "TopHat",
    "UIUNet",
    "UNet",
    "build_irstd_net",
]
