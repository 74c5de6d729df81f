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

from ir_d2.layers.norm import NormSpec, get_norm

__all__ = ["BNSABlock", "sa_attention_upsample", "sa_fuse"]


def _conv_norm(in_ch: int, out_ch: int, k: int, norm: NormSpec) -> nn.Sequential:
    """A k x k convolution ("same" padding), then the norm if any (bias only without a norm)."""
    layer_norm = get_norm(norm, out_ch)
    conv = nn.Conv2d(in_ch, out_ch, k, padding=k // 2, bias=layer_norm is None)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return nn.Sequential(conv, layer_norm) if layer_norm is not None else nn.Sequential(conv)


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


class BNSABlock(nn.Module):
    """
    Bottleneck Squeeze-and-Attention block (Wang & Ren 2025, sec. 3.2).

    Layout, for an input of C channels and ``c = round(C * bottleneck_ratio)`` (paper: C/4):

    1. ``reduce``: 1x1 conv C -> c, norm, ReLU (the bottleneck). The paper draws a bare 1x1 conv;
       the norm and ReLU are our choice, as in every ResNet bottleneck.
    2. Squeeze-and-Attention on c channels:

       - main channel ``res_branch``: two 3x3 conv-norm-ReLU -> ``X_res``;
       - attention channel ``attn_branch``: 2x2 average pool (ceil mode, so a 1-pixel side still
         works), two 3x3 conv-norm, each followed by ReLU (the paper's sigma in eq. 1 is ReLU),
         up-sampled to ``X_res``'s size -> ``X_attn`` (eq. 1);
       - ``X_out = X_attn * X_res + X_attn`` (eq. 2).
    3. ``expand``: 1x1 conv c -> C with norm.

    With ``residual=True`` (default) the block returns ``x + expand(...)``, and the last norm's
    weight (or the last conv's weight, without a norm) starts at zero, so the block is the
    identity at initialisation and a pretrained backbone is unchanged at step 0.
    ``residual=False`` returns ``expand(...)``, the paper's plain form (fig. 5).

    Args:
        channels: C, the input and output channels.
        bottleneck_ratio: c / C.
        norm: "BN", "GN", "SyncBN", "" or a callable ``channels -> nn.Module``.
        residual: see above.
    """

    def __init__(
        self,
        channels: int,
        bottleneck_ratio: float = 0.25,
        norm: NormSpec = "BN",
        residual: bool = True,
    ):
        super().__init__()
        if channels <= 0:
            raise ValueError(f"BNSABlock needs channels > 0, got {channels}.")
        if not 0.0 < bottleneck_ratio <= 1.0:
            raise ValueError(
                f"MODEL.BNSA.BOTTLENECK_RATIO must be in (0, 1], got {bottleneck_ratio}."
            )
        mid = max(1, int(round(channels * bottleneck_ratio)))
        self.channels = channels
        self.mid_channels = mid
        self.residual = residual

        self.reduce = nn.Sequential(*_conv_norm(channels, mid, 1, norm), nn.ReLU(inplace=True))
        self.res_branch = nn.Sequential(
            *_conv_norm(mid, mid, 3, norm),
            nn.ReLU(inplace=True),
            *_conv_norm(mid, mid, 3, norm),
            nn.ReLU(inplace=True),
        )
        self.attn_branch = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, ceil_mode=True),
            *_conv_norm(mid, mid, 3, norm),
            nn.ReLU(inplace=True),
            *_conv_norm(mid, mid, 3, norm),
            nn.ReLU(inplace=True),
        )
        self.expand = _conv_norm(mid, channels, 1, norm)
        if residual:
            last = self.expand[-1]
            nn.init.zeros_(last.weight)
            if getattr(last, "bias", None) is not None:
                nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"BNSABlock({self.channels}) expects an (N, {self.channels}, H, W) tensor, "
                f"got {tuple(x.shape)}."
            )
        y = self.reduce(x)
        x_res = self.res_branch(y)
        x_attn = sa_attention_upsample(self.attn_branch(y), x_res.shape[-2:])
        out = self.expand(sa_fuse(x_res, x_attn))
        return x + out if self.residual else out

    def extra_repr(self) -> str:
        return f"channels={self.channels}, mid={self.mid_channels}, residual={self.residual}"
