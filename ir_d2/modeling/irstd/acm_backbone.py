"""
The residual backbone and head that ACM (:mod:`.acm`), ALCNet (:mod:`.alcnet`) and ISNet
(:mod:`.isnet`) share, pure torch.

Paper: Dai, Wu, Zhou & Barnard, "Asymmetric Contextual Modulation for Infrared Small Target
Detection", WACV 2021 (arXiv 2009.14530), sec. 3: a stem, then three stages of basic residual
blocks, and an FCN head. Structure, layer for layer and bias for bias, from the authors' MXNet
code (github.com/YimianDai/open-acm: ``model/segmentation.py``, ``train_dentist.py``); gluoncv's
``CIFARBasicBlockV1`` and ``_FCNHead`` are :class:`ResidualBlock` and :class:`FCNHead`.
"""

from typing import List, Optional, Sequence

import torch
from torch import nn

from ir_d2.layers.norm import NormSpec, get_norm

__all__ = [
    "ACM_WIDTHS",
    "FCNHead",
    "ResidualBlock",
    "ResidualEncoder",
    "acm_blocks",
    "acm_encoder",
    "acm_conv_norm",
    "acm_widths",
    "input_norm",
    "norm_layer",
    "residual_stage",
]

#: Widths (stem, stage 1, stage 2, stage 3) of the authors' code: ``[8, 16, 32, 64]`` times
#: ``--channel-times`` (1 by default) in ``train_dentist.py`` and ``train_alcnet.py``.
ACM_WIDTHS = (8, 16, 32, 64)


def acm_widths(channels: Optional[Sequence[int]], default: Sequence[int] = ACM_WIDTHS) -> tuple:
    """The 4 widths ``(c0, c1, c2, c3)`` (``MODEL.IRSTD.CHANNELS``; empty: ``default``)."""
    if not channels:
        return tuple(default)
    channels = tuple(int(c) for c in channels)
    if len(channels) != 4 or min(channels) <= 0:
        raise ValueError(
            "MODEL.IRSTD.CHANNELS must list 4 positive widths (stem, stage 1, stage 2, stage 3) "
            f"for ACM / ALCNet, got {list(channels)}."
        )
    return channels


def acm_blocks(blocks: Optional[Sequence[int]], default: int) -> tuple:
    """Residual blocks of the 3 stages (``MODEL.IRSTD.BLOCKS``; empty: ``default`` each)."""
    if not blocks:
        return (default,) * 3
    blocks = tuple(int(b) for b in blocks)
    if len(blocks) != 3 or min(blocks) < 1:
        raise ValueError(
            f"MODEL.IRSTD.BLOCKS must list 3 counts >= 1 for ACM / ALCNet, got {list(blocks)}."
        )
    return blocks


def norm_layer(norm: NormSpec, channels: int) -> nn.Module:
    """:func:`ir_d2.layers.get_norm`, with ``nn.Identity`` for no norm."""
    layer = get_norm(norm, channels)
    return nn.Identity() if layer is None else layer


def acm_conv_norm(
    cin: int, cout: int, k: int, norm: NormSpec, stride: int = 1, bias: bool = False
) -> List[nn.Module]:
    """A k x k conv ("same" padding; a bias only where the authors' layer has one, whatever the
    norm) and the norm."""
    return [nn.Conv2d(cin, cout, k, stride, k // 2, bias=bias), norm_layer(norm, cout)]


def input_norm(norm: NormSpec, channels: int) -> nn.Module:
    """
    The stem's first layer in the authors' code: a BatchNorm of the input image without learned
    scale or shift (``norm_layer(scale=False, center=False)``), i.e. ``norm`` with its affine
    parameters removed (no parameters; BasicIRSTD's PyTorch port keeps them, 2 per channel).
    """
    layer = norm_layer(norm, channels)
    for name in ("weight", "bias"):
        if isinstance(getattr(layer, name, None), nn.Parameter):
            setattr(layer, name, None)
    if hasattr(layer, "affine"):
        layer.affine = False
    return layer


class ResidualBlock(nn.Module):
    """
    The residual block of ACM's and ALCNet's CIFAR-style ResNet backbones (ACM sec. 3; the
    code's gluoncv ``CIFARBasicBlockV1``, torchvision's ``BasicBlock``)::

        out = ReLU(norm(conv3x3(ReLU(norm(conv3x3_s(x))))) + shortcut(x))

    convs without bias; ``shortcut`` is a strided 1x1 conv (no bias) + norm when the stride or
    the width changes, else the identity.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, norm: NormSpec = "BN"):
        super().__init__()
        self.body = nn.Sequential(
            *acm_conv_norm(cin, cout, 3, norm, stride),
            nn.ReLU(inplace=True),
            *acm_conv_norm(cout, cout, 3, norm),
        )
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(*acm_conv_norm(cin, cout, 1, norm, stride))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def residual_stage(cin: int, cout: int, blocks: int, stride: int, norm: NormSpec) -> nn.Sequential:
    """``blocks`` residual blocks, the first one ``cin -> cout`` with ``stride`` (the code's
    ``_make_layer``)."""
    return nn.Sequential(
        ResidualBlock(cin, cout, stride, norm),
        *[ResidualBlock(cout, cout, 1, norm) for _ in range(blocks - 1)],
    )


class FCNHead(nn.Sequential):
    """
    The prediction head of ACM and ALCNet (the code's gluoncv ``_FCNHead``)::

        conv3x3 (C -> C/4, no bias) -> norm -> ReLU -> Dropout(0.1) -> conv1x1 (C/4 -> 1, bias)

    ``logits`` is the last conv (the output head of :meth:`.unet.IRSTDNetInitMixin.output_heads`).
    """

    def __init__(self, channels: int, norm: NormSpec = "BN", dropout: float = 0.1):
        inter = channels // 4
        super().__init__(
            *acm_conv_norm(channels, inter, 3, norm),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Conv2d(inter, 1, 1),
        )

    @property
    def logits(self) -> nn.Conv2d:
        return self[-1]


class ResidualEncoder(nn.Module):
    """
    The backbone of ACM and ALCNet: a stem, then three stages of :class:`ResidualBlock`
    (``blocks`` each; strides 1, 2, 2; widths c1, c2, c3). Returns the three stage outputs.

    Stem (both start with :func:`input_norm`):

    - ``downsample`` True (ACM, the code's default ``tiny=False``): conv3x3 stride 2 (in -> c0),
      conv3x3 (c0 -> c0), conv3x3 (c0 -> c1), each without bias + norm + ReLU, then a 3x3 max
      pool of stride 2: stage 1 runs at 1/4 of the input's resolution;
    - ``downsample`` False (ALCNet; ACM's ``tiny``): one conv3x3 (in -> c1, no bias) + norm +
      ReLU, at full resolution; c0 is unused.

    The code's stem ends at ``2 * channels[0]`` channels, which is ``channels[1]`` in every
    setting it uses; here it is ``c1`` (``channels[1]``).
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int],
        blocks: Sequence[int],
        downsample: bool,
        norm: NormSpec = "BN",
    ):
        super().__init__()
        c0, c1, c2, c3 = channels
        layers = [input_norm(norm, in_channels)]
        if downsample:
            layers += [*acm_conv_norm(in_channels, c0, 3, norm, stride=2), nn.ReLU(inplace=True)]
            layers += [*acm_conv_norm(c0, c0, 3, norm), nn.ReLU(inplace=True)]
            layers += [*acm_conv_norm(c0, c1, 3, norm), nn.ReLU(inplace=True)]
            layers += [nn.MaxPool2d(3, 2, 1)]
        else:
            layers += [*acm_conv_norm(in_channels, c1, 3, norm), nn.ReLU(inplace=True)]
        self.stem = nn.Sequential(*layers)
        self.stages = nn.ModuleList(
            [
                residual_stage(c1, c1, blocks[0], 1, norm),
                residual_stage(c1, c2, blocks[1], 2, norm),
                residual_stage(c2, c3, blocks[2], 2, norm),
            ]
        )

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        feats = []
        y = self.stem(x)
        for stage in self.stages:
            y = stage(y)
            feats.append(y)
        return feats


def acm_encoder(net, in_channels: int, channels, blocks, default_blocks: int, *, downsample, norm):
    """
    The :class:`ResidualEncoder` of an ACM-family net ``net`` (``MODEL.IRSTD.IN_CHANNELS``,
    ``CHANNELS``, ``BLOCKS``; ``default_blocks`` residual blocks a stage when BLOCKS is empty):
    sets ``net.in_channels`` (checked), ``net.channels``, ``net.blocks`` and ``net.encoder``, and
    returns the widths.
    """
    c, b = acm_widths(channels), acm_blocks(blocks, default_blocks)
    net.set_in_channels(in_channels)
    net.channels, net.blocks = c, b
    net.encoder = ResidualEncoder(in_channels, c, b, downsample=downsample, norm=norm)
    return c
