"""
UIU-Net, pure torch: the "U-Net in U-Net" baseline of SGEM (Deng & Yang 2025, Table 1) and
SIRST-5K (Lu et al. 2024, Table II), both printing it at 50.54 M parameters and 54.50 GFLOPs.

Paper: Wu, Hong & Chanussot, "UIU-Net: U-Net in U-Net for Infrared Small Object Detection",
IEEE TIP 32:364-376 (2022/2023), sec. III: a large U-Net whose every node is a small U-Net (the
residual U-blocks, RSU, of U^2-Net: Qin et al., Pattern Recognition 2020, sec. 3.1), with two
modules:

- RM-DS, resolution-maintenance deep supervision: the RSU nodes of the outer encoder-decoder and
  a side output per decoder level, all fused into the final map (:class:`RSU`,
  :class:`DilatedRSU`, :class:`SideFusion`);
- IC-A, interactive-cross attention: the decoder's skip fusion, a global channel attention of the
  high-level feature on the low-level one and a local spatial attention of the low-level feature
  on the high-level one (:class:`InteractiveCrossAttention`).

The structure (widths, depths, dilations, conv biases, which levels have IC-A) is the authors'
released code (github.com/danfenghong/IEEE_TIP_UIU-Net, ``model/uiunet.py``, ``model/fusion.py``;
the same file in BasicIRSTD, ``model/UIUNet``); this is ir_d2's own code, not a copy. With the
default width it has the same parameters as that code to the unit (50,541,461 with a 3-channel
input, 50,540,309 with 1: BasicIRSTD's thop count, 50.54 M) and the same outputs for the same
weights; 54.46 GFLOPs at 256x256 by fvcore (54.38 with 1 channel).

References: UIU-Net's text was not at hand when this was written, so its parts are cited by the
paper's module names (RM-DS and IC-A, sec. III) rather than by equation numbers, and the RSU and
deep-supervision formulas by U^2-Net's sections (3.1 RSU, 3.2 architecture, 3.3 supervision).
The RSU nodes are in :mod:`.rsu`.
"""

from typing import List, Sequence, Union

import torch
from torch import nn

from ir_d2.layers.norm import NormSpec, get_norm

from .build import IRSTD_NET_REGISTRY
from .rsu import RSU, DilatedRSU, resize_like
from .unet import IRSTDNetInitMixin

__all__ = ["InteractiveCrossAttention", "SideFusion", "UIUNet"]


class InteractiveCrossAttention(nn.Module):
    """
    The IC-A module (UIU-Net sec. III, IC-A; the code's ``AsymBiChaFuseReduce``, after ACM's
    asymmetric bi-directional fusion, Dai et al. WACV 2021), fusing the high-level feature ``Y``
    (the deeper decoder output, resized) with the low-level skip ``X`` of one decoder level, both
    of ``C`` channels after ``Y``'s projection; ``r`` = ``reduction`` (code: 4)::

        Y' = ReLU(BN(Conv1x1(Y)))                                   high-level projection
        G  = sigmoid(BN(Conv1x1(ReLU(BN(Conv1x1(GAP(Y')))))))       global channel attention,
                                                                    C -> C/r -> C (top-down)
        Z  = ReLU(BN(Conv1x1(X * G)))                               C -> C/r
        S  = sigmoid(Conv3x3([mean_c(Z); max_c(Z)]))                local spatial attention
                                                                    (bottom-up, no bias)
        X_out = P(2 * X * G),   Y_out = P(2 * Y' * S)
        out = [X_out; Y_out]                                        2C channels

    ``P`` is ONE 3x3 conv-BN-ReLU applied to both products (the code's ``post``, shared weights);
    the spatial attention reads the low-level feature already weighted by the channel attention
    (the "cross" of the code: ``bottomup(xl * topdown_wei)``), and the two refined features are
    concatenated for the decoder RSU rather than summed as ACM does. All of this is the authors'
    code, followed as is. ``norm`` replaces every BN; with "GN" the two norms of ``G``, on a
    1x1 map, are GroupNorm(1, C) (ours: 32 groups of one channel there would each normalise a
    single value, which torch refuses).
    """

    def __init__(
        self,
        high_channels: int,
        low_channels: int,
        reduction: int = 4,
        norm: NormSpec = "BN",
    ):
        super().__init__()
        c = low_channels
        b = c // reduction
        if b < 1:
            raise ValueError(f"IC-A: {c} channels cannot be reduced by {reduction}.")
        self.channels = c

        def conv_norm(cin, cout, k=1, act: nn.Module = None, norm=norm):
            n = get_norm(norm, cout)
            act = nn.ReLU(inplace=True) if act is None else act
            return [nn.Conv2d(cin, cout, k, padding=k // 2), *([n] if n is not None else []), act]

        # GroupNorm's groups of single channels hold one value on the pooled (N, C, 1, 1)
        # vector: "GN" normalises it over all its channels there (GroupNorm(1, C))
        pooled = (lambda ch: nn.GroupNorm(1, ch)) if norm == "GN" else norm
        self.project_high = nn.Sequential(*conv_norm(high_channels, c))
        self.channel_attention = nn.Sequential(
            *conv_norm(c, b, norm=pooled), *conv_norm(b, c, act=nn.Sigmoid(), norm=pooled)
        )
        self.spatial_reduce = nn.Sequential(*conv_norm(c, b))
        self.spatial_conv = nn.Conv2d(2, 1, 3, padding=1, bias=False)
        self.post = nn.Sequential(*conv_norm(c, c, 3))

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        high = self.project_high(high)  # Y'
        g = self.channel_attention(high.mean(dim=(2, 3), keepdim=True))  # G, (N, C, 1, 1)
        z = self.spatial_reduce(low * g)
        pooled = torch.cat([z.mean(dim=1, keepdim=True), z.amax(dim=1, keepdim=True)], dim=1)
        s = torch.sigmoid(self.spatial_conv(pooled))  # S, (N, 1, H, W)
        return torch.cat([self.post(2 * low * g), self.post(2 * high * s)], dim=1)


class SideFusion(nn.Module):
    """
    The deep-supervision outputs of RM-DS (UIU-Net sec. III, RM-DS; U^2-Net sec. 3.2, its
    side outputs and fusion): a 3x3 conv (with bias) per supervised feature (decoder levels
    1..5 and the coarsest encoder stage, widths ``channels``, finest first) gives a side logit
    map ``S_m``, bilinearly resized to the finest one's size; the fused map is a 1x1 conv over
    their concatenation::

        S_fuse = Conv1x1([S_1; ...; S_6])

    The code fuses the side LOGITS (before the sigmoid) and applies the sigmoid to each of the 7
    maps afterwards; here the 7 logit maps are returned (the segmentor's loss applies the
    sigmoid, as binary cross-entropy with logits).
    """

    def __init__(self, channels: Sequence[int]):
        super().__init__()
        self.sides = nn.ModuleList([nn.Conv2d(c, 1, 3, padding=1) for c in channels])
        self.fuse = nn.Conv2d(len(channels), 1, 1)

    def forward(self, features: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """``features`` finest first -> ``[S_1, ..., S_6, S_fuse]``, all at ``features[0]``'s
        size."""
        ref = features[0]
        maps = [side(f) for side, f in zip(self.sides, features)]
        maps = [maps[0], *(resize_like(m, ref) for m in maps[1:])]
        return [*maps, self.fuse(torch.cat(maps, dim=1))]


#: The authors' stages in units of ``base_channels / 4`` (16 at their width 64): encoder
#: (RSU depth, mid, out) for stages 1..6 ("4F": :class:`DilatedRSU`), and decoder (mid) for
#: levels 1..5; decoder level i takes 2 x the encoder width of level i and gives the encoder
#: width of level i - 1 (level 1: its own).
ENCODER_STAGES = ((7, 2, 4), (6, 2, 8), (5, 4, 16), (4, 8, 32), ("4F", 16, 32), ("4F", 16, 32))
DECODER_MIDS = (1, 2, 4, 8, 16)
#: Decoder levels (1-based) whose skip fusion is IC-A; level 1 concatenates (authors' code).
ICA_LEVELS = (2, 3, 4, 5)


def _rsu(depth, cin, mid, out, norm) -> RSU:
    if depth == "4F":
        return DilatedRSU(cin, mid, out, norm=norm)
    return RSU(depth, cin, mid, out, norm=norm)


@IRSTD_NET_REGISTRY.register()
class UIUNet(IRSTDNetInitMixin, nn.Module):
    """
    UIU-Net (Wu et al., TIP 2022, sec. III; fig. 2 of the paper), structured as the authors' code.

    - encoder: 6 stages RSU-7, RSU-6, RSU-5, RSU-4, RSU-4F, RSU-4F of output widths
      ``channels`` = base x (1, 2, 4, 8, 8, 8) (64 ... 512 at the authors' base 64), a 2x2 max
      pool (ceil mode) between stages; each RSU gives a feature at its input's resolution
      while pooling down to 1/32 of the frame inside (RM-DS's multi-scale,
      resolution-maintaining features);
    - decoder, levels 5..1 (RSU-4F, RSU-4, -5, -6, -7): the deeper output is resized to the
      level's skip; levels 5..2 fuse the two with IC-A (:class:`InteractiveCrossAttention`,
      2C channels out), level 1 concatenates them;
    - RM-DS: a side logit map on each decoder level and on encoder stage 6, and their fusion
      (:class:`SideFusion`).

    The authors train on all 7 maps, the sum of 7 binary cross-entropies (``train.py``,
    ``muti_bce_loss_fusion``: U^2-Net's eq. 1 of sec. 3.3 with unit weights; ir_d2:
    ``MODEL.IRSTD.LOSS`` "bce", ``DS_REDUCTION`` "sum"), and predict with the fused one. That
    loss lives in the segmentor: this module only returns the logit maps.

    Args:
        in_channels: channels of the input image (``MODEL.IRSTD.IN_CHANNELS``; the authors' code
            takes 3, BasicIRSTD's copy 1).
        base_channels: width of the first stage (``MODEL.IRSTD.BASE_CHANNELS``; the authors':
            64); every width of the net scales with it, so it must be a multiple of 4.
        deep_supervision: return the 7 logit maps ``[S_1, ..., S_6, S_fuse]`` (the fused one
            last) rather than ``S_fuse`` alone (``MODEL.IRSTD.DEEP_SUPERVISION``; on in UIU-Net).
        ica_reduction: channel reduction r of IC-A's attention branches (code: 4).
        norm: the norm after every convolution (``MODEL.IRSTD.NORM``; the authors' BatchNorm).

    Outputs are logits: the authors' net returns their sigmoids.
    """

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 64,
        *,
        deep_supervision: bool = True,
        ica_reduction: int = 4,
        norm: NormSpec = "BN",
    ):
        super().__init__()
        if base_channels <= 0 or base_channels % 4:
            raise ValueError(
                f"MODEL.IRSTD.BASE_CHANNELS must be a positive multiple of 4 for UIUNet (the "
                f"authors': 64), got {base_channels}."
            )
        u = base_channels // 4
        self.set_in_channels(in_channels)
        self.base_channels = base_channels
        self.deep_supervision = deep_supervision
        c = tuple(u * out for _, _, out in ENCODER_STAGES)
        self.channels = c
        self.pool = nn.MaxPool2d(2, 2, ceil_mode=True)
        cin = (in_channels, *c[:-1])
        self.encoder = nn.ModuleList(
            [_rsu(d, cin[k], u * m, c[k], norm) for k, (d, m, _) in enumerate(ENCODER_STAGES)]
        )
        # decoder[k] is decoder level k + 1 (k = 0..4); its input has 2 x c[k] channels
        dec_depths = [d for d, _, _ in ENCODER_STAGES[:5]]
        dec_out = (c[0], *c[:4])
        self.decoder = nn.ModuleList(
            [_rsu(dec_depths[k], 2 * c[k], u * DECODER_MIDS[k], dec_out[k], norm) for k in range(5)]
        )
        # the high-level input of level k + 1 is the output of level k + 2 (or stage 6): c[k] wide
        self.fusions = nn.ModuleDict()
        for level in ICA_LEVELS:
            width = c[level - 1]
            self.fusions[str(level)] = InteractiveCrossAttention(width, width, ica_reduction, norm)
        self.side_fusion = SideFusion((*dec_out, c[5]))

    @classmethod
    def from_config(cls, cfg) -> dict:
        """Constructor arguments from ``cfg.MODEL.IRSTD``. ``CHANNELS`` must be empty: UIU-Net's
        widths all follow ``BASE_CHANNELS``."""
        ir = cfg.MODEL.IRSTD
        if len(ir.CHANNELS):
            raise ValueError(
                f"MODEL.IRSTD.CHANNELS = {list(ir.CHANNELS)}: UIUNet takes its widths from "
                "MODEL.IRSTD.BASE_CHANNELS (the authors': 64); set MODEL.IRSTD.CHANNELS to []."
            )
        return {
            "in_channels": ir.IN_CHANNELS,
            "base_channels": ir.BASE_CHANNELS,
            "deep_supervision": ir.DEEP_SUPERVISION,
            "norm": ir.NORM,
        }

    def output_heads(self) -> List[nn.Conv2d]:
        """The convs that produce logits: the fusion conv (final output) first, then the 6 side
        convs (finest first)."""
        return [self.side_fusion.fuse, *self.side_fusion.sides]

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, List[torch.Tensor]]:
        self.check_input(x)
        enc = []
        y = x
        for k, stage in enumerate(self.encoder):
            y = stage(self.pool(y) if k > 0 else y)
            enc.append(y)
        decoded = [enc[5]]  # deep to shallow: stage 6, then decoder levels 5..1
        for k in range(4, -1, -1):
            high, low = resize_like(decoded[-1], enc[k]), enc[k]
            level = k + 1
            if level in ICA_LEVELS:
                fused = self.fusions[str(level)](high, low)
            else:
                fused = torch.cat([high, low], dim=1)
            decoded.append(self.decoder[k](fused))
        maps = self.side_fusion(decoded[::-1])  # finest first: level 1..5, stage 6
        return maps if self.deep_supervision else maps[-1]

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, channels={self.channels}, "
            f"deep_supervision={self.deep_supervision}"
        )
