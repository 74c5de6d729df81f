"""
U-Net for infrared small-target segmentation, pure torch: the baseline of SGEM (Deng & Yang 2025)
and SIRST-5K (Lu et al. 2024), and the skeleton that SGEMUNet and AFFUNet change.
"""

import math
from functools import partial
from typing import Callable, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from ir_d2.layers.norm import NormSpec, conv_norm

from .build import IRSTD_NET_REGISTRY

__all__ = [
    "DoubleConv",
    "IRSTDNetInitMixin",
    "UNet",
    "conv_norm",
    "conv_norm_relu",
    "unet_channels",
]

NUM_LEVELS = 5  # full resolution + 4 down-sampling stages


def conv_norm_relu(
    in_channels: int, out_channels: int, kernel_size: int = 3, norm: NormSpec = "BN"
) -> List[nn.Module]:
    """:func:`conv_norm` then ReLU."""
    return [*conv_norm(in_channels, out_channels, kernel_size, norm), nn.ReLU(inplace=True)]


class DoubleConv(nn.Sequential):
    """The U-Net feature node: two 3x3 conv-norm-ReLU (BatchNorm by default)."""

    def __init__(self, in_channels: int, out_channels: int, norm: NormSpec = "BN"):
        super().__init__(
            *conv_norm_relu(in_channels, out_channels, norm=norm),
            *conv_norm_relu(out_channels, out_channels, norm=norm),
        )


def unet_channels(base_channels: int, channels: Optional[Sequence[int]] = None) -> tuple:
    """
    Widths of the 5 U-Net levels: ``channels`` when given (``MODEL.IRSTD.CHANNELS``), else
    ``base_channels * (1, 2, 4, 8, 16)`` (``MODEL.IRSTD.BASE_CHANNELS``).
    """
    if channels:
        channels = tuple(int(c) for c in channels)
        if len(channels) != NUM_LEVELS or min(channels) <= 0:
            raise ValueError(
                f"MODEL.IRSTD.CHANNELS must list {NUM_LEVELS} positive widths (full resolution "
                f"first), got {list(channels)}."
            )
        return channels
    if base_channels <= 0:
        raise ValueError(f"MODEL.IRSTD.BASE_CHANNELS must be > 0, got {base_channels}.")
    return tuple(base_channels * 2**i for i in range(NUM_LEVELS))


def upsample_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Bilinear up-sampling of ``x`` to the exact spatial size of ``ref`` (odd sizes work)."""
    if x.shape[-2:] == ref.shape[-2:]:
        return x
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


class IRSTDNetInitMixin:
    """
    The two initialisation hooks that :func:`build_irstd_net` calls (``MODEL.IRSTD.PRIOR_PROB``,
    ``MODEL.IRSTD.INIT``), for a net whose :meth:`output_heads` lists its logit convs.
    """

    def output_heads(self) -> List[nn.Conv2d]:
        raise NotImplementedError

    def set_in_channels(self, in_channels: int) -> None:
        """Set ``in_channels`` (``MODEL.IRSTD.IN_CHANNELS``), a ValueError naming the key unless
        it is positive."""
        if in_channels <= 0:
            raise ValueError(f"MODEL.IRSTD.IN_CHANNELS must be > 0, got {in_channels}.")
        self.in_channels = in_channels

    def check_input(self, x: torch.Tensor) -> None:
        """A ValueError naming ``MODEL.IRSTD.IN_CHANNELS`` unless ``x`` is (N, in_channels, H,
        W), the input every small-target net takes."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects an (N, {self.in_channels}, H, W) tensor "
                f"(MODEL.IRSTD.IN_CHANNELS), got {tuple(x.shape)}."
            )

    def set_output_prior(self, prior_prob: float) -> None:
        """
        Start every output head at the foreground probability ``prior_prob``: bias
        ``-log((1 - p) / p)``, as RetinaNet's classifier prior (Lin et al. 2017, sec. 4.1).

        Ours, not the papers' (``MODEL.IRSTD.PRIOR_PROB``, off in the paper-row configs): SGEM
        does not say how it initialises, SIRST-5K uses Xavier (:meth:`init_weights`), and neither
        sets an output bias. With p ~ 0.5 everywhere at the start, the Soft-IoU union is half the
        frame, so the gradient on the few target pixels is tiny and training idles for hundreds of
        iterations; a small prior puts the union near the targets from the start.
        """
        if not 0.0 < prior_prob < 1.0:
            raise ValueError(f"MODEL.IRSTD.PRIOR_PROB must be in (0, 1), got {prior_prob}")
        bias = -math.log((1.0 - prior_prob) / prior_prob)
        for head in self.output_heads():
            nn.init.constant_(head.bias, bias)

    def init_weights(self, init: str) -> None:
        """
        ``init`` ("default" or "xavier", ``MODEL.IRSTD.INIT``): "xavier" draws every convolution
        weight from Xavier's normal distribution, as SIRST-5K's authors do
        (``weights_init_xavier``: ``xavier_normal_`` on each Conv2d, biases and norms kept).
        "default" keeps torch's initialisation.
        """
        if init == "default":
            return
        if init != "xavier":
            raise ValueError(f"MODEL.IRSTD.INIT must be 'default' or 'xavier', got {init!r}")
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_normal_(m.weight)


@IRSTD_NET_REGISTRY.register()
class UNet(IRSTDNetInitMixin, nn.Module):
    """
    U-Net with 4 down-sampling stages (5 levels, widths ``c0..c4``).

    - encoder: ``enc0 = node(in, c0)`` at full resolution; ``enc_i = node(c_{i-1}, c_i)`` after a
      2x2 max pool (ceil mode, so odd sizes keep every pixel), i = 1..4 (enc4 is the bottleneck);
    - decoder, from deep to shallow, i = 3..0: ``dec_i = node(c_{i+1} + c_i, c_i)`` over the
      concatenation of the deeper output bilinearly up-sampled to ``enc_i``'s exact size and the
      skip ``self.skip(i, enc_i, deeper)`` (``enc_i`` itself here; SGEMUNet overrides it);
    - head: 1x1 conv c0 -> 1 logit per pixel, at the input's size.

    In the papers' 1-based names, E1..E5 are ``enc0..enc4`` and D1..D4 are ``dec3..dec0``.

    Args:
        in_channels: channels of the input image (``MODEL.IRSTD.IN_CHANNELS``).
        base_channels: c0 when ``channels`` is not given; level i has ``base * 2**i``.
        channels: the 5 widths, overriding ``base_channels`` (``MODEL.IRSTD.CHANNELS``).
        deep_supervision: when True, ``forward`` returns a list of 4 logit maps, one per decoder
            level (dec3, dec2, dec1, dec0), each up-sampled to the input's size; the last one is
            the final output. Otherwise a single (N, 1, H, W) tensor.
        node: ``(in_channels, out_channels, norm=...) -> nn.Module``, the feature node of every
            level.
        norm: the norm of every node (``MODEL.IRSTD.NORM``): "BN", "GN", "SyncBN", "" (none) or
            a callable ``channels -> nn.Module`` (:func:`ir_d2.layers.get_norm`).
    """

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 32,
        *,
        channels: Optional[Sequence[int]] = None,
        deep_supervision: bool = False,
        node: Callable[..., nn.Module] = DoubleConv,
        norm: NormSpec = "BN",
    ):
        super().__init__()
        self.set_in_channels(in_channels)
        c = unet_channels(base_channels, channels)
        self.channels = c
        self.deep_supervision = deep_supervision
        self.norm = norm
        node = partial(node, norm=norm)
        self.pool = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.encoder = nn.ModuleList(
            [node(in_channels if i == 0 else c[i - 1], c[i]) for i in range(NUM_LEVELS)]
        )
        # decoder[i] is the node of level i (i = 0..3); decoder[4] does not exist
        self.decoder = nn.ModuleList([node(c[i + 1] + c[i], c[i]) for i in range(NUM_LEVELS - 1)])
        self.head = nn.Conv2d(c[0], 1, 1)
        if deep_supervision:
            self.aux_heads = nn.ModuleList([nn.Conv2d(c[i], 1, 1) for i in (3, 2, 1)])

    @classmethod
    def from_config(cls, cfg) -> dict:
        """Constructor arguments from ``cfg.MODEL.IRSTD``."""
        return {
            "in_channels": cfg.MODEL.IRSTD.IN_CHANNELS,
            "base_channels": cfg.MODEL.IRSTD.BASE_CHANNELS,
            "channels": list(cfg.MODEL.IRSTD.CHANNELS) or None,
            "deep_supervision": cfg.MODEL.IRSTD.DEEP_SUPERVISION,
            "norm": cfg.MODEL.IRSTD.NORM,
        }

    def output_heads(self) -> List[nn.Conv2d]:
        """The 1x1 convs that produce logits (the final head, then the deep-supervision ones)."""
        return [self.head, *getattr(self, "aux_heads", [])]

    def skip(self, level: int, enc: torch.Tensor, deeper: torch.Tensor) -> torch.Tensor:
        """
        The skip feature that the decoder node of ``level`` concatenates with the up-sampled
        ``deeper`` feature (the decoder output one level deeper, or the bottleneck for level 3).
        """
        return enc

    def fuse(self, decoded: List[torch.Tensor], bottleneck: torch.Tensor) -> torch.Tensor:
        """
        The feature the head reads, from the decoder outputs ``decoded`` (deep to shallow:
        ``dec3`` at 1/8 ... ``dec0`` at full resolution) and the ``bottleneck`` (``enc4``): the
        last decoder output here; AFFUNet fuses all the scales (SIRST-5K eq. 7).
        """
        return decoded[-1]

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, List[torch.Tensor]]:
        self.check_input(x)
        feats = []
        y = x
        for i, node in enumerate(self.encoder):
            y = node(y if i == 0 else self.pool(y))
            feats.append(y)
        deeper = feats[-1]
        decoded = []
        for i in range(NUM_LEVELS - 2, -1, -1):
            skip = self.skip(i, feats[i], deeper)
            deeper = self.decoder[i](torch.cat([upsample_to(deeper, skip), skip], dim=1))
            decoded.append(deeper)
        out = self.head(self.fuse(decoded, feats[-1]))
        if not self.deep_supervision:
            return out
        aux = [upsample_to(h(d), x) for h, d in zip(self.aux_heads, decoded[:-1])]
        return aux + [out]

    def extra_repr(self) -> str:
        return f"channels={self.channels}, deep_supervision={self.deep_supervision}"
