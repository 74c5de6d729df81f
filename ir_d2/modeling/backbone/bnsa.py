"""
Bottleneck Squeeze-and-Attention (BNSA) block, pure torch.

Paper: Wang & Ren, "Attention-Based Mask R-CNN Enhancement for Infrared Image Target
Segmentation", Symmetry 2025, sec. 3.2 and fig. 5-6. The Squeeze-and-Attention (SA) part follows
Zhong et al., "Squeeze-and-Attention Networks for Semantic Segmentation", CVPR 2020, which the
paper's eqs. 1-2 restate.
"""

import torch
import torch.nn.functional as F
from torch import nn

from ir_d2.layers.norm import NormSpec, conv_norm

__all__ = ["BNSA_LAYOUTS", "BNSABlock", "sa_attention_upsample", "sa_fuse"]


def _conv_norm(in_ch: int, out_ch: int, k: int, norm: NormSpec) -> nn.Sequential:
    """:func:`ir_d2.layers.norm.conv_norm` as a Sequential, He-initialised."""
    layers = conv_norm(in_ch, out_ch, k, norm)
    nn.init.kaiming_normal_(layers[0].weight, mode="fan_out", nonlinearity="relu")
    if layers[0].bias is not None:
        nn.init.zeros_(layers[0].bias)
    return nn.Sequential(*layers)


def sa_attention_upsample(attn: torch.Tensor, size) -> torch.Tensor:
    """
    The up-sampling of eq. 1 (Wang & Ren 2025; Zhong et al. 2020 eq. 3): the attention map, computed
    on the 2x2 average-pooled input, is brought back to the exact size of ``X_res`` (bilinear), so
    odd input sizes work.
    """
    if attn.shape[-2:] == tuple(size):
        return attn
    return F.interpolate(attn, size=size, mode="bilinear", align_corners=False)


def sa_fuse(x_res: torch.Tensor, x_attn: torch.Tensor) -> torch.Tensor:
    """
    Eq. 2 of Wang & Ren 2025 (Zhong et al. 2020 eq. 4): ``X_out = X_attn * X_res + X_attn``.
    """
    return x_attn * x_res + x_attn


#: BNSA layouts: "per_branch" (our reading of fig. 5: a 1x1 conv before and after each branch)
#: or "shared" (one 1x1 reduction before the Squeeze-and-Attention part, one expansion after).
BNSA_LAYOUTS = ("per_branch", "shared")


class BNSABlock(nn.Module):
    """
    Bottleneck Squeeze-and-Attention block (Wang & Ren 2025, sec. 3.2, fig. 5), for an input of C
    channels and a bottleneck of ``c = round(C * bottleneck_ratio)`` channels (sec. 3.2: C/4).

    The Squeeze-and-Attention part (eqs. 1-2, after Zhong et al. 2020): a main channel of two 3x3
    conv-norm-ReLU giving ``X_res``, and an attention channel that 2x2 average-pools its input,
    applies two 3x3 conv-norm-ReLU (the paper's sigma in eq. 1 is ReLU) and up-samples back to
    ``X_res``'s size, giving ``X_attn``; then ``X_out = X_attn * X_res + X_attn`` (eq. 2).
    Where the 1x1 bottleneck convolutions sit is the ``layout``:

    - ``"per_branch"`` (default): fig. 5 read as a 1x1 conv C -> c before and a 1x1 conv c -> C
      after each branch (conv-norm-ReLU each), so each branch maps C channels to C and eq. 2 acts
      at C channels. +4.27 M parameters at res3 + res4 of R-50.
    - ``"shared"``: one 1x1 conv C -> c (norm, ReLU) before the whole SA part and one 1x1 conv
      c -> C (norm) after eq. 2; the layout of ir_d2 0.1. +3.61 M at res3 + res4.

    Neither reading gives the +9.5 M the paper's parameter counts imply (53.865 M vs 44.343 M);
    the deviation table of projects/BNSA-MaskRCNN/README.md lists the readings and their measured
    counts.

    With ``residual=True`` (ours) the block returns ``x + scale * BNSA(x)`` with a learned scalar
    ``scale`` that starts at zero (as ReZero, Bachlechner et al. 2020), so the block is the identity
    at initialisation and a pretrained backbone is unchanged at step 0, while ``scale`` gets a
    gradient from the first step. (A zero-initialised last norm would not do: in the per-branch
    layout a ReLU follows it, whose gradient at 0 is 0.) ``residual=False`` returns ``BNSA(x)``,
    the paper's plain form (fig. 5).

    Args:
        channels: C, the input and output channels.
        bottleneck_ratio: c / C.
        norm: "BN", "GN", "SyncBN", "" or a callable ``channels -> nn.Module``.
        residual: see above; False (the paper's plain form) by default, as
            ``MODEL.BNSA.RESIDUAL``.
        layout: "per_branch" or "shared", see above.
    """

    def __init__(
        self,
        channels: int,
        bottleneck_ratio: float = 0.25,
        norm: NormSpec = "BN",
        residual: bool = False,
        layout: str = "per_branch",
    ):
        super().__init__()
        if channels <= 0:
            raise ValueError(f"BNSABlock needs channels > 0, got {channels}.")
        if not 0.0 < bottleneck_ratio <= 1.0:
            raise ValueError(
                f"MODEL.BNSA.BOTTLENECK_RATIO must be in (0, 1], got {bottleneck_ratio}."
            )
        if layout not in BNSA_LAYOUTS:
            raise ValueError(f"MODEL.BNSA.LAYOUT must be one of {BNSA_LAYOUTS}, got {layout!r}.")
        mid = max(1, int(round(channels * bottleneck_ratio)))
        self.channels = channels
        self.mid_channels = mid
        self.residual = residual
        self.layout = layout

        def cbr(i, o, k):
            return [*_conv_norm(i, o, k, norm), nn.ReLU(inplace=True)]

        sa_convs = [*cbr(mid, mid, 3), *cbr(mid, mid, 3)]
        pool = nn.AvgPool2d(kernel_size=2, stride=2, ceil_mode=True)
        if layout == "shared":
            self.reduce = nn.Sequential(*cbr(channels, mid, 1))
            self.res_branch = nn.Sequential(*sa_convs)
            self.attn_branch = nn.Sequential(pool, *cbr(mid, mid, 3), *cbr(mid, mid, 3))
            self.expand = _conv_norm(mid, channels, 1, norm)
        else:
            self.res_branch = nn.Sequential(
                *cbr(channels, mid, 1), *sa_convs, *cbr(mid, channels, 1)
            )
            self.attn_branch = nn.Sequential(
                pool,
                *cbr(channels, mid, 1),
                *cbr(mid, mid, 3),
                *cbr(mid, mid, 3),
                *cbr(mid, channels, 1),
            )
        if residual:
            self.scale = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"BNSABlock({self.channels}) expects an (N, {self.channels}, H, W) tensor, "
                f"got {tuple(x.shape)}."
            )
        y = self.reduce(x) if self.layout == "shared" else x
        x_res = self.res_branch(y)
        x_attn = sa_attention_upsample(self.attn_branch(y), x_res.shape[-2:])
        out = sa_fuse(x_res, x_attn)
        if self.layout == "shared":
            out = self.expand(out)
        return x + self.scale * out if self.residual else out

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, mid={self.mid_channels}, layout={self.layout}, "
            f"residual={self.residual}"
        )
