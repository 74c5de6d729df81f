"""
Attention-feature-fusion (AFF) residual block and the AFF U-Net, pure torch.

Paper: Lu et al., "SIRST-5K: Exploring Massive Negatives Synthesis with Self-supervised Learning
for Robust Infrared Small Target Detection", TGRS 2024, sec. III-C: the feature nodes are residual
blocks refined by channel attention (eq. 5) then spatial attention (eq. 6), as in CBAM
(Woo et al., ECCV 2018) and DNANet's Res_CBAM block, and the features of four scales are fused
before the head (eq. 7).
"""

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ir_d2.layers.norm import NormSpec, conv_norm

from .build import IRSTD_NET_REGISTRY
from .unet import UNet, upsample_to

__all__ = [
    "AFF_FUSIONS",
    "AFFBlock",
    "AFFUNet",
    "ChannelAttention",
    "SpatialAttention",
    "global_fusion",
]


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
        # pooling ops, as the authors' code: amax's backward (a full-size tie mask) costs more
        avg = F.adaptive_avg_pool2d(x, 1)
        mx = F.adaptive_max_pool2d(x, 1)
        return torch.sigmoid(self.mlp(avg) + self.mlp(mx))


class SpatialAttention(nn.Module):
    """
    Spatial attention, eq. 6 of Lu et al. 2024::

        M_s(F) = sigmoid(conv7x7([MaxPool_c(F); AvgPool_c(F)]))

    over the per-pixel maximum and mean across channels, in that order (``mean_first`` False,
    the paper's order; CBAM's, DNANet's and the SIRST-5K code's ``mean_first`` True stacks the
    mean first, which only permutes the two input channels of the learned convolution, so a
    checkpoint of their code loads as is). Returns the (N, 1, H, W) weights.
    """

    def __init__(self, kernel_size: int = 7, mean_first: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.mean_first = mean_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # max with indices, as the authors' code: its backward scatters, amax's masks every tie
        pooled = [torch.max(x, dim=1, keepdim=True)[0], x.mean(dim=1, keepdim=True)]
        if self.mean_first:
            pooled.reverse()
        return torch.sigmoid(self.conv(torch.cat(pooled, dim=1)))


class AFFBlock(nn.Module):
    """
    The AFF feature node (Lu et al. 2024, sec. III-C)::

        y = BN(conv3x3(ReLU(BN(conv3x3(x)))))
        y = M_c(y) * y          (eq. 5)
        y = M_s(y) * y          (eq. 6)
        out = ReLU(y + shortcut(x))

    ``shortcut`` is the identity, or a 1x1 conv + BN when the channels change. ``norm`` replaces
    BN (``MODEL.IRSTD.NORM``; :func:`ir_d2.layers.get_norm`).

    ``code_layout`` True builds the block exactly as the authors' released code (DNANet's
    ``Res_CBAM_block``, the SIRST-5K code's ``Res_block``): every convolution keeps its bias in
    front of its BatchNorm (redundant, but counted in their parameter figures) and the spatial
    attention stacks the channel mean first. False (the default) is the paper's block without
    the redundant biases.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        reduction: int = 16,
        norm: NormSpec = "BN",
        *,
        code_layout: bool = False,
    ):
        super().__init__()

        def conv_bn(cin, cout, k):
            layers = conv_norm(cin, cout, k, norm)
            if code_layout and layers[0].bias is None:
                layers[0] = nn.Conv2d(cin, cout, k, padding=k // 2)
            return layers

        self.body = nn.Sequential(
            *conv_bn(in_channels, out_channels, 3),
            nn.ReLU(inplace=True),
            *conv_bn(out_channels, out_channels, 3),
        )
        self.channel_attention = ChannelAttention(out_channels, reduction)
        self.spatial_attention = SpatialAttention(mean_first=code_layout)
        if in_channels != out_channels:
            self.shortcut = nn.Sequential(*conv_bn(in_channels, out_channels, 1))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        y = self.channel_attention(y) * y
        y = self.spatial_attention(y) * y
        # in place, as the authors' code (``out += residual; relu(inplace=True)``): two full-size
        # tensors fewer per block (autograd keeps what the products' backward needs)
        y += self.shortcut(x)
        return y.relu_()


#: Levels whose outputs the global fusion reads besides the full-resolution one: eq. 7's
#: F''/2, F''/4, F''/8 (decoder levels 1-3), and for "code" also the 1/16 bottleneck.
AFF_FUSIONS = {"paper": (3, 2, 1), "code": (4, 3, 2, 1), "none": ()}


def global_fusion(
    features, full: torch.Tensor, projections: nn.ModuleList, fuse: nn.Module
) -> torch.Tensor:
    """
    Eq. 7 of Lu et al. 2024: ``F_global = {F'', F''/2, F''/4, F''/8}``, the attention-refined
    features of the four scales, fused into one full-resolution map before the head. Each coarser
    feature (``features``, deep to shallow) is projected to the full-resolution width by its 1x1
    convolution (``projections``), bilinearly up-sampled to ``full``'s size, concatenated with
    ``full`` (coarse first, as the authors' code) and fused by ``fuse`` (an AFF node). The paper
    gives the set, not the operator; the authors' code (``model.py``, ``conv0_4_final``) does it
    this way, DNANet-style, on five scales (the 1/16 bottleneck too: ``AFF_FUSION`` "code").
    """
    parts = [upsample_to(p(f), full) for p, f in zip(projections, features)]
    return fuse(torch.cat([*parts, full], dim=1))


@IRSTD_NET_REGISTRY.register()
class AFFUNet(UNet):
    """
    The U-Net (:class:`UNet`) whose every feature node is an :class:`AFFBlock` (Lu et al. 2024,
    sec. III-C), and whose head reads the global fusion of eq. 7 (:func:`global_fusion`) of the
    decoder's four scales. Arguments as :class:`UNet` (but ``node``, which is the AFFBlock), plus
    the keyword-only ``reduction`` of the channel-attention MLP (``MODEL.IRSTD.AFF_REDUCTION``)
    and ``fusion`` (``MODEL.IRSTD.AFF_FUSION``): "paper" (eq. 7, four scales), "code" (the
    authors' five, with the bottleneck) or "none" (the head reads the last decoder node).
    """

    def __init__(self, *args, reduction: int = 16, fusion: str = "paper", **kwargs):
        super().__init__(*args, node=partial(AFFBlock, reduction=reduction), **kwargs)
        if fusion not in AFF_FUSIONS:
            raise ValueError(
                f"MODEL.IRSTD.AFF_FUSION must be one of {sorted(AFF_FUSIONS)}, got {fusion!r}"
            )
        self.reduction = reduction
        self.fusion = fusion
        levels = AFF_FUSIONS[fusion]
        c = self.channels
        if levels:
            self.fusion_proj = nn.ModuleList([nn.Conv2d(c[i], c[0], 1) for i in levels])
            self.fusion_node = AFFBlock(c[0] * (len(levels) + 1), c[0], reduction, norm=self.norm)

    @classmethod
    def from_config(cls, cfg) -> dict:
        return {
            **super().from_config(cfg),
            "reduction": cfg.MODEL.IRSTD.AFF_REDUCTION,
            "fusion": cfg.MODEL.IRSTD.AFF_FUSION,
        }

    def fuse(self, decoded, bottleneck):
        if self.fusion == "none":
            return super().fuse(decoded, bottleneck)
        # decoded holds dec3 (1/8), dec2, dec1, dec0 (full): level i is decoded[3 - i]
        by_level = {4: bottleneck, **{3 - k: d for k, d in enumerate(decoded)}}
        features = [by_level[i] for i in AFF_FUSIONS[self.fusion]]
        return global_fusion(features, decoded[-1], self.fusion_proj, self.fusion_node)
