"""
Attention-feature-fusion (AFF) residual block and the AFF U-Net, pure torch.

Paper: Lu et al., "SIRST-5K: Exploring Massive Negatives Synthesis with Self-supervised Learning
for Robust Infrared Small Target Detection", TGRS 2024, sec. III-C: the feature nodes are residual
blocks refined by channel attention (eq. 5) then spatial attention (eq. 6), as in CBAM
(Woo et al., ECCV 2018) and DNANet's Res_CBAM block.
"""

from functools import partial

import torch
from torch import nn

from .build import IRSTD_NET_REGISTRY
from .unet import UNet

__all__ = ["AFFBlock", "AFFUNet", "ChannelAttention", "SpatialAttention"]


class ChannelAttention(nn.Module):
    """
    Channel attention, eq. 5 of Lu et al. 2024::

        M_c(F) = sigmoid(MLP(AvgPool(F)) + MLP(MaxPool(F)))

    with one MLP shared by both pooled vectors: C -> C / reduction -> C (ReLU between, no bias),
    written with 1x1 convolutions. Returns the (N, C, 1, 1) weights.
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = x.mean(dim=(2, 3), keepdim=True)
        mx = x.amax(dim=(2, 3), keepdim=True)
        return torch.sigmoid(self.mlp(avg) + self.mlp(mx))


class SpatialAttention(nn.Module):
    """
    Spatial attention, eq. 6 of Lu et al. 2024::

        M_s(F) = sigmoid(conv7x7([MaxPool_c(F); AvgPool_c(F)]))

    over the per-pixel maximum and mean across channels, in that order (the paper's order; CBAM
    and DNANet stack mean first, which only permutes the two input channels of the learned
    convolution). Returns the (N, 1, H, W) weights.
    """

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))


class AFFBlock(nn.Module):
    """
    The AFF feature node (Lu et al. 2024, sec. III-C)::

        y = BN(conv3x3(ReLU(BN(conv3x3(x)))))
        y = M_c(y) * y          (eq. 5)
        y = M_s(y) * y          (eq. 6)
        out = ReLU(y + shortcut(x))

    ``shortcut`` is the identity, or a 1x1 conv + BN when the channels change.
    """

    def __init__(self, in_channels: int, out_channels: int, reduction: int = 16):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.channel_attention = ChannelAttention(out_channels, reduction)
        self.spatial_attention = SpatialAttention()
        if in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        y = self.channel_attention(y) * y
        y = self.spatial_attention(y) * y
        return torch.relu(y + self.shortcut(x))


@IRSTD_NET_REGISTRY.register()
class AFFUNet(UNet):
    """
    The U-Net (:class:`UNet`) whose every feature node is an :class:`AFFBlock` (Lu et al. 2024,
    sec. III-C). Arguments as :class:`UNet` (but ``node``, which is the AFFBlock), plus the
    keyword-only ``reduction`` of the channel-attention MLP (``MODEL.IRSTD.AFF_REDUCTION``).
    """

    def __init__(self, *args, reduction: int = 16, **kwargs):
        super().__init__(*args, node=partial(AFFBlock, reduction=reduction), **kwargs)
        self.reduction = reduction

    @classmethod
    def from_config(cls, cfg) -> dict:
        return {**super().from_config(cfg), "reduction": cfg.MODEL.IRSTD.AFF_REDUCTION}
