"""Small-target segmentation nets (pure torch), registered in IRSTD_NET_REGISTRY on import."""

from .aff import AFFBlock, AFFUNet, ChannelAttention, SpatialAttention
from .build import IRSTD_NET_REGISTRY, build_irstd_net
from .nested_unet import NestedUNet
from .sgem import SGEM, SGEMUNet
from .unet import UNet

__all__ = [
    "AFFBlock",
    "AFFUNet",
    "ChannelAttention",
    "IRSTD_NET_REGISTRY",
    "NestedUNet",
    "SGEM",
    "SGEMUNet",
    "SpatialAttention",
    "UNet",
    "build_irstd_net",
]
