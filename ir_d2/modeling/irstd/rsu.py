"""
Residual U-blocks (RSU) of U^2-Net, pure torch: the nodes of UIU-Net (:mod:`.uiunet`).

Paper: Qin, Zhang, Huang, Dehghan, Zaiane & Jagersand, "U^2-Net: Going deeper with nested
U-structure for salient object detection", Pattern Recognition 106, 2020, sec. 3.1 (RSU) and 3.2
(RSU-4F); as UIU-Net (Wu, Hong & Chanussot, IEEE TIP 2022, sec. III, RM-DS) nests them, from the
authors' released code (github.com/danfenghong/IEEE_TIP_UIU-Net, ``model/uiunet.py``).
"""

import torch
import torch.nn.functional as F
from torch import nn

from ir_d2.layers.norm import NormSpec, get_norm

__all__ = ["ConvNormReLU", "DilatedRSU", "RSU", "resize_like", "rsu_num_params"]


def resize_like(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """
    Bilinear resize of ``x`` to ``ref``'s exact spatial size (align_corners False), as the
    authors' ``_upsample_like``: with ceil-mode pooling a level is ``ceil(size / 2)`` of the one
    above, so the decoder resizes to the reference size rather than by a factor of 2.
    """
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


class ConvNormReLU(nn.Sequential):
    """
    The RSU's basic layer (the code's ``REBNCONV``): 3x3 convolution of dilation ``d`` (padding
    ``d``, so the size is kept), norm, ReLU. The convolution keeps its bias even before the norm,
    as in the authors' code (so that the parameter count is theirs).
    """

    def __init__(
        self, in_channels: int, out_channels: int, dilation: int = 1, norm: NormSpec = "BN"
    ):
        layer_norm = get_norm(norm, out_channels)
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation),
            *([layer_norm] if layer_norm is not None else []),
            nn.ReLU(inplace=True),
        )


class RSU(nn.Module):
    """
    Residual U-block RSU-L (U^2-Net, Qin et al. 2020, sec. 3.1, eq. of the residual U-block;
    UIU-Net sec. III, RM-DS: the "tiny U-Net" inside every node of the large one)::

        H_RSU(x) = U(F_1(x)) + F_1(x)

    ``F_1`` (``conv_in``): a conv-norm-ReLU ``in -> out``; ``U``: a U-Net of ``depth`` = L
    levels of width ``mid``: encoder layers 1..L-1 (the first ``out -> mid``) with a 2x2 max pool
    (ceil mode) before each but the first, a bottom layer of dilation 2 at the coarsest level,
    and decoder layers L-1..1 over ``[deeper, skip]`` (the deeper one resized to the skip's size;
    the last ``2 mid -> out``). RSU-7, -6, -5 and -4 of the paper are ``depth`` 7, 6, 5, 4.

    Subclasses change :meth:`dilation` and :attr:`pooled` (:class:`DilatedRSU`).
    """

    #: whether the encoder pools between levels (False: RSU-4F, where dilation grows instead)
    pooled = True

    def __init__(
        self,
        depth: int,
        in_channels: int,
        mid_channels: int,
        out_channels: int,
        norm: NormSpec = "BN",
    ):
        super().__init__()
        if depth < 2:
            raise ValueError(f"An RSU needs depth >= 2, got {depth}.")
        self.depth = depth
        mid, out = mid_channels, out_channels
        self.conv_in = ConvNormReLU(in_channels, out, norm=norm)
        # encoder[i] and decoder[i] are the layers of level i (0 = full resolution)
        self.encoder = nn.ModuleList(
            [
                ConvNormReLU(out if i == 0 else mid, mid, self.dilation(i), norm)
                for i in range(depth - 1)
            ]
        )
        self.bottom = ConvNormReLU(mid, mid, self.dilation(depth - 1), norm)
        self.decoder = nn.ModuleList(
            [
                ConvNormReLU(2 * mid, out if i == 0 else mid, self.dilation(i), norm)
                for i in range(depth - 1)
            ]
        )
        if self.pooled:
            self.pool = nn.MaxPool2d(2, 2, ceil_mode=True)

    def dilation(self, level: int) -> int:
        """Dilation of the layers of ``level`` (0-based; ``depth - 1`` is the bottom): 1, and 2
        at the bottom."""
        return 2 if level == self.depth - 1 else 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top = self.conv_in(x)  # F_1(x)
        skips = []
        y = top
        for i, layer in enumerate(self.encoder):
            y = layer(self.pool(y) if self.pooled and i > 0 else y)
            skips.append(y)
        y = self.bottom(y)  # at the coarsest encoder level's size: no resize
        for i in range(self.depth - 2, -1, -1):
            skip = skips[i]
            if self.pooled and i < self.depth - 2:
                y = resize_like(y, skip)
            y = self.decoder[i](torch.cat([y, skip], dim=1))
        return y + top  # U(F_1(x)) + F_1(x)


class DilatedRSU(RSU):
    """
    RSU-4F (U^2-Net sec. 3.2, UIU-Net's two deepest encoder stages and deepest decoder stage):
    the RSU with no pooling, its levels told apart by dilation 1, 2, 4 and 8 at the bottom (the
    decoder layer of a level has that level's dilation), for features already at 1/16 and 1/32.
    """

    pooled = False

    def __init__(
        self,
        in_channels: int,
        mid_channels: int,
        out_channels: int,
        depth: int = 4,
        norm: NormSpec = "BN",
    ):
        super().__init__(depth, in_channels, mid_channels, out_channels, norm)

    def dilation(self, level: int) -> int:
        return 2**level


def rsu_num_params(
    depth: int, in_channels: int, mid_channels: int, out_channels: int, norm_params: int = 2
) -> int:
    """
    Parameters of an :class:`RSU` (or :class:`DilatedRSU`, the same count) in closed form, each
    3x3 convolution with its bias and a norm of ``norm_params`` parameters per channel
    (BatchNorm: 2): ``conv_in`` (in -> out), encoder layer 1 (out -> mid), encoder layers
    2..L-1 and the bottom (mid -> mid, L-1 of them), decoder layers L-1..2 (2 mid -> mid, L-2),
    decoder layer 1 (2 mid -> out).
    """
    k, c, m, o = 9, in_channels, mid_channels, out_channels
    per = 1 + norm_params  # bias + norm, per output channel

    def conv(cin, cout):
        return k * cin * cout + per * cout

    return (
        conv(c, o)
        + conv(o, m)
        + (depth - 1) * conv(m, m)
        + (depth - 2) * conv(2 * m, m)
        + conv(2 * m, o)
    )
