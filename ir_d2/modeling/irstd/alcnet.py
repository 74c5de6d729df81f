"""
ALCNet, pure torch.

Paper: Dai, Wu, Zhou & Barnard, "Attentional Local Contrast Networks for Infrared Small Target
Detection", IEEE TGRS 59(11), 2021 (arXiv 2012.08573), sec. III: ACM's residual backbone (without
its down-sampling stem), a parameter-free local contrast layer on every stage's feature, computed
by a feature-map cyclic shift, and a bottom-up local attentional modulation (BLAM) that fuses the
scales.

Structure, layer for layer and bias for bias, from the authors' MXNet code
(github.com/YimianDai/open-alcnet: ``model/contrast.py`` ``MPCMResNetFPN`` with
``pyramid_mode='Dec'``, ``pyramid_fuse='bottomuplocal'``, ``cal_pcm`` / ``circ_shift``,
``BottomUpLocal_FPNFuse``; ``train_alcnet.py``). The backbone and the head are ACM's
(:mod:`.acm_backbone`), and so is the point-wise attention (:mod:`.acm_fusion`).
"""

from typing import List, Optional, Sequence

import torch
from torch import nn

from ir_d2.layers.norm import NormSpec

from .acm_backbone import FCNHead, acm_conv_norm, acm_encoder, norm_layer
from .acm_fusion import PointwiseChannelAttention
from .build import IRSTD_NET_REGISTRY, staged_net_args
from .unet import IRSTDNetInitMixin, upsample_to

__all__ = ["ALCNet", "BottomUpLocalModulation", "local_contrast", "multiscale_local_contrast"]

#: Cyclic shifts of the multiscale local contrast in the authors' code (``cal_mpcm``: 13, 17).
ALC_SHIFTS = (13, 17)


def local_contrast(x: torch.Tensor, shift: int) -> torch.Tensor:
    """
    The dilated local contrast of ALCNet (Dai et al., TGRS 2021, sec. III, "feature map cyclic
    shift"), the patch-based contrast measure of Wei et al. (2016) made a parameter-free,
    depth-wise layer: with ``B_i`` the feature ``x`` cyclically shifted by ``shift`` pixels in the
    8 directions (i = 1..8, ``B_{i+4}`` opposite to ``B_i``)::

        D(x) = min_{i=1..4} (B_i - x) * (B_{i+4} - x)

    large where a pixel stands out from its surround on both sides in every direction. The code's
    ``circ_shift`` builds ``B_i`` by cutting and concatenating slices (valid for a shift below the
    feature's size); ``torch.roll`` gives the same maps and wraps larger shifts modulo the size.
    """
    s = shift
    down, up = torch.roll(x, s, 2), torch.roll(x, -s, 2)
    opposite_pairs = (
        (torch.roll(down, s, 3), torch.roll(up, -s, 3)),  # diagonal
        (down, up),  # vertical
        (torch.roll(down, -s, 3), torch.roll(up, s, 3)),  # anti-diagonal
        (torch.roll(x, s, 3), torch.roll(x, -s, 3)),  # horizontal
    )
    out = None
    for a, b in opposite_pairs:
        d = (a - x) * (b - x)
        out = d if out is None else torch.minimum(out, d)
    return out


def multiscale_local_contrast(x: torch.Tensor, shifts: Sequence[int]) -> torch.Tensor:
    """
    The multiscale local contrast of ALCNet (Dai et al., TGRS 2021, sec. III): the element-wise
    maximum of :func:`local_contrast` over the cyclic shifts ``shifts`` (the code's
    ``cal_mpcm``: 13 and 17; one shift is its single-scale ``cal_pcm``).
    """
    out = None
    for s in shifts:
        d = local_contrast(x, s)
        out = d if out is None else torch.maximum(out, d)
    return out


class BottomUpLocalModulation(nn.Module):
    """
    ALCNet's bottom-up local attentional modulation (BLAM; Dai et al., TGRS 2021, sec. III), the
    fusion of the deep (coarse, already resized) feature Y = ``high`` with the shallow X = ``low``::

        Z = L(X) * Y + X,   X = norm(low), Y = norm(high)

    ``L``: ACM's :class:`PointwiseChannelAttention` with no reduction (r = 1). Each input has its
    own norm first, as the authors' code (``BottomUpLocal_FPNFuse``: ``bn1``, ``bn2``).
    """

    def __init__(self, channels: int, reduction: int = 1, norm: NormSpec = "BN"):
        super().__init__()
        self.norm_high = norm_layer(norm, channels)
        self.norm_low = norm_layer(norm, channels)
        self.attention = PointwiseChannelAttention(channels, reduction, norm)

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        high, low = self.norm_high(high), self.norm_low(low)
        return self.attention(low) * high + low


@IRSTD_NET_REGISTRY.register()
class ALCNet(IRSTDNetInitMixin, nn.Module):
    """
    ALCNet (Dai et al., TGRS 2021): ACM's :class:`~.acm_backbone.ResidualEncoder` with the one-conv
    full-resolution stem (stages at 1, 1/2, 1/4 of the input: C1, C2, C3, widths c1, c2, c3), then

    - ``P3 = proj3(MLC(C3))``, ``P2 = proj2(MLC(C2))``, ``P1 = MLC(C1)``:
      :func:`multiscale_local_contrast` of every stage, the deeper two projected to c1 by a 1x1
      conv (no bias) + norm + ReLU (the code's ``dec_c3``, ``dec_c2``);
    - ``F2 = BLAM2(resize(P3), P2)``, ``F1 = BLAM1(resize(F2), P1)``
      (:class:`BottomUpLocalModulation`; each resize bilinear to the exact size of the feature
      it meets);
    - an :class:`~.acm_backbone.FCNHead` on F1, resized to the input's size (a no-op: F1 is at full
      resolution).

    With the defaults (widths 8, 16, 32, 64; 4 blocks per stage: the authors' ``--blocks`` default
    and their released model ``BottomUpLocal_r_1_b_4``) it has 372,573 parameters for a 3-channel
    input (372,285 for 1 channel).

    Args:
        in_channels: channels of the input image (``MODEL.IRSTD.IN_CHANNELS``).
        channels: widths (c0, c1, c2, c3) (``MODEL.IRSTD.CHANNELS``; default 8, 16, 32, 64); c0 is
            unused (the code's stem ends at ``2 * channels[0] = channels[1]``).
        blocks: residual blocks per stage (``MODEL.IRSTD.BLOCKS``; default 4).
        shifts: cyclic shifts of the local contrast (``MODEL.IRSTD.ACM.ALC_SHIFTS``; default 13,
            17, the code's multiscale ``cal_mpcm``; ``[13]`` is its single-scale mode).
        norm: the norm of every conv and of the BLAM inputs (``MODEL.IRSTD.NORM``).
    """

    def __init__(
        self,
        in_channels: int = 3,
        *,
        channels: Optional[Sequence[int]] = None,
        blocks: Optional[Sequence[int]] = None,
        shifts: Sequence[int] = ALC_SHIFTS,
        norm: NormSpec = "BN",
    ):
        super().__init__()
        shifts = tuple(int(s) for s in shifts)
        if not shifts or min(shifts) < 1:
            raise ValueError(
                f"MODEL.IRSTD.ACM.ALC_SHIFTS must list cyclic shifts >= 1, got {list(shifts)}."
            )
        self.shifts = shifts
        c = acm_encoder(self, in_channels, channels, blocks, 4, downsample=False, norm=norm)
        self.proj3 = nn.Sequential(*acm_conv_norm(c[3], c[1], 1, norm), nn.ReLU(inplace=True))
        self.proj2 = nn.Sequential(*acm_conv_norm(c[2], c[1], 1, norm), nn.ReLU(inplace=True))
        self.fuse2 = BottomUpLocalModulation(c[1], norm=norm)
        self.fuse1 = BottomUpLocalModulation(c[1], norm=norm)
        self.head = FCNHead(c[1], norm)

    @classmethod
    def from_config(cls, cfg) -> dict:
        """Constructor arguments from ``cfg.MODEL.IRSTD``."""
        return {**staged_net_args(cfg), "shifts": list(cfg.MODEL.IRSTD.ACM.ALC_SHIFTS)}

    def output_heads(self) -> List[nn.Conv2d]:
        """The 1x1 conv that produces the logits."""
        return [self.head.logits]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        c1, c2, c3 = self.encoder(x)
        p3 = self.proj3(multiscale_local_contrast(c3, self.shifts))
        p2 = self.proj2(multiscale_local_contrast(c2, self.shifts))
        p1 = multiscale_local_contrast(c1, self.shifts)
        f2 = self.fuse2(upsample_to(p3, p2), p2)
        f1 = self.fuse1(upsample_to(f2, p1), p1)
        return upsample_to(self.head(f1), x)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, blocks={self.blocks}, shifts={self.shifts}"
