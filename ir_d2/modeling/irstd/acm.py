"""
ACM, pure torch, and the pieces that ALCNet (:mod:`.alcnet`) shares with it.

Paper: Dai, Wu, Zhou & Barnard, "Asymmetric Contextual Modulation for Infrared Small Target
Detection", WACV 2021 (arXiv 2009.14530), sec. 3: a residual backbone (a stem, then three stages
of basic residual blocks) whose coarse and fine features are fused by the asymmetric contextual
modulation (ACM) module, i.e. a top-down global channel attention (from the deep feature onto the
shallow one) plus a bottom-up point-wise channel attention (from the shallow feature onto the deep
one), in a U-Net or an FPN.

Structure, layer for layer and bias for bias, from the authors' MXNet code
(github.com/YimianDai/open-acm: ``model/segmentation.py`` ``ASKCResUNet`` / ``ASKCResNetFPN``,
``model/fusion.py`` ``AsymBiChaFuse`` / ``AsymBiChaFuseReduce``, ``train_dentist.py``); gluoncv's
``CIFARBasicBlockV1`` and ``_FCNHead`` are :class:`ResidualBlock` and :class:`FCNHead`.
"""

from typing import List, Optional, Sequence

import torch
from torch import nn

from ir_d2.layers.norm import NormSpec, get_norm

from .build import IRSTD_NET_REGISTRY, staged_net_args
from .unet import IRSTDNetInitMixin, upsample_to

__all__ = [
    "ACM",
    "ACM_ARCHS",
    "AsymBiFusion",
    "FCNHead",
    "GlobalChannelAttention",
    "PointwiseChannelAttention",
    "ResidualBlock",
    "ResidualEncoder",
    "acm_blocks",
    "acm_conv_norm",
    "acm_widths",
    "input_norm",
    "norm_layer",
    "residual_stage",
]

#: Widths (stem, stage 1, stage 2, stage 3) of the authors' code: ``[8, 16, 32, 64]`` times
#: ``--channel-times`` (1 by default) in ``train_dentist.py`` and ``train_alcnet.py``.
ACM_WIDTHS = (8, 16, 32, 64)

#: The two ACM architectures of the authors' code: "unet" (``ASKCResUNet``) and "fpn"
#: (``ASKCResNetFPN``).
ACM_ARCHS = ("unet", "fpn")


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

    ``logits`` is the last conv (the output head of :meth:`IRSTDNetInitMixin.output_heads`).
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


class GlobalChannelAttention(nn.Sequential):
    """
    ACM's top-down global channel attention (Dai et al. 2021, sec. 3, "top-down global contextual
    feedback", an SE-style attention of the deep feature Y)::

        G(Y) = sigmoid(norm(W2 ReLU(norm(W1 GAP(Y)))))

    ``W1``: C -> C/r, ``W2``: C/r -> C, 1x1 convs with bias (the code's ``topdown``, r = 4).
    Returns the (N, C, 1, 1) weights.
    """

    def __init__(self, channels: int, reduction: int = 4, norm: NormSpec = "BN"):
        inter = max(1, channels // reduction)
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            *acm_conv_norm(channels, inter, 1, norm, bias=True),
            nn.ReLU(inplace=True),
            *acm_conv_norm(inter, channels, 1, norm, bias=True),
            nn.Sigmoid(),
        )


class PointwiseChannelAttention(nn.Sequential):
    """
    The bottom-up point-wise (local) channel attention of the shallow feature X: ACM's bottom-up
    modulation pathway (Dai et al. 2021, sec. 3) and ALCNet's bottom-up local attentional
    modulation (Dai et al., TGRS 2021, sec. III-C)::

        L(X) = sigmoid(norm(PWConv2(ReLU(norm(PWConv1(X))))))

    ``PWConv1``: C -> C/r, ``PWConv2``: C/r -> C, 1x1 convs with bias, so every pixel gets its own
    channel weights (the code's ``bottomup`` / ``bottomup_att``; ACM r = 4, ALCNet r = 1).
    Returns (N, C, H, W) weights.
    """

    def __init__(self, channels: int, reduction: int = 4, norm: NormSpec = "BN"):
        inter = max(1, channels // reduction)
        super().__init__(
            *acm_conv_norm(channels, inter, 1, norm, bias=True),
            nn.ReLU(inplace=True),
            *acm_conv_norm(inter, channels, 1, norm, bias=True),
            nn.Sigmoid(),
        )


class AsymBiFusion(nn.Module):
    """
    The asymmetric contextual modulation (ACM) module (Dai et al. 2021, sec. 3) fusing the deep
    (coarse, already resized) feature Y = ``high`` with the shallow feature X = ``low``::

        Z = post(2 * X * G(Y) + 2 * Y * L(X))

    ``G``: :class:`GlobalChannelAttention` (top-down), ``L``: :class:`PointwiseChannelAttention`
    (bottom-up), ``post``: conv3x3 (with bias) -> norm -> ReLU. The factor 2 and ``post`` are the
    authors' code (``fusion.py``, ``AsymBiChaFuse``): with both attentions near 0.5 at the start
    the sum is about X + Y.

    ``high_channels`` given (the FPN, ``AsymBiChaFuseReduce``): Y is first projected to
    ``channels`` by a 1x1 conv (with bias) -> norm -> ReLU (the code's ``feature_high``).
    """

    def __init__(
        self,
        channels: int,
        high_channels: Optional[int] = None,
        reduction: int = 4,
        norm: NormSpec = "BN",
    ):
        super().__init__()
        self.channels = channels
        if high_channels is not None:
            self.project = nn.Sequential(
                *acm_conv_norm(high_channels, channels, 1, norm, bias=True), nn.ReLU(inplace=True)
            )
        else:
            self.project = nn.Identity()
        self.topdown = GlobalChannelAttention(channels, reduction, norm)
        self.bottomup = PointwiseChannelAttention(channels, reduction, norm)
        self.post = nn.Sequential(
            *acm_conv_norm(channels, channels, 3, norm, bias=True), nn.ReLU(inplace=True)
        )

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        high = self.project(high)
        z = 2 * low * self.topdown(high) + 2 * high * self.bottomup(low)
        return self.post(z)


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


@IRSTD_NET_REGISTRY.register()
class ACM(IRSTDNetInitMixin, nn.Module):
    """
    ACM (Dai et al., WACV 2021, sec. 3): the :class:`ResidualEncoder` with the down-sampling stem
    (stages at 1/4, 1/8, 1/16 of the input: C1, C2, C3), a decoder fusing the scales with
    :class:`AsymBiFusion`, an :class:`FCNHead` at 1/4 and a bilinear resize of the logits to the
    input's size. ``arch`` (``MODEL.IRSTD.ACM.ARCH``) picks one of the two decoders of the paper
    and of the authors' code:

    - "fpn" (``ASKCResNetFPN``; ``train_dentist.py``'s defaults): ``F2 = fuse2(resize(C3), C2)``,
      ``F1 = fuse1(resize(F2), C1)`` with the projecting fusion (``AsymBiChaFuseReduce``); the
      head reads F1.
    - "unet" (``ASKCResUNet``, the authors' released model and BasicIRSTD's "ACM"):
      ``D2 = up2(fuse2(deconv2(C3), C2))``, ``D1 = up1(fuse1(deconv1(D2), C1))``, where ``deconv``
      is a 4x4 transposed conv of stride 2 (with bias) halving the width, ``fuse`` an
      :class:`AsymBiFusion` and ``up`` a residual stage as deep as the encoder's at that level;
      the head reads D1.

    Every resize is bilinear to the exact size of the feature it meets (the code resizes to
    ``H // 8`` etc., the same sizes for inputs that are multiples of 32); a deconvolution output
    that misses its skip's size (odd sizes) is resized to it.

    Sizes (fvcore GFLOPs at 256x256, 3-channel input): the defaults (widths 8, 16, 32, 64; 3
    blocks per stage; "fpn") have 289,965 parameters, 0.224 GFLOPs (289,821 with 1 channel):
    SIRST-5K's Table II (0.29 M). Widths 16..128 with 4 blocks per stage ("fpn") have 1,542,873,
    1.108 GFLOPs: SGEM's Table 1 (1.54 M, 1.31 GFLOPs). "unet" with the defaults has 397,965
    (397,821 with 1 channel: BasicIRSTD's 0.398 M).

    Args:
        in_channels: channels of the input image (``MODEL.IRSTD.IN_CHANNELS``).
        channels: widths (stem, stage 1, stage 2, stage 3) (``MODEL.IRSTD.CHANNELS``; default
            8, 16, 32, 64, the code's ``--channel-times 1``).
        blocks: residual blocks per stage (``MODEL.IRSTD.BLOCKS``; default 3, the code's
            ``--blocks`` default).
        arch: "fpn" or "unet" (``MODEL.IRSTD.ACM.ARCH``).
        reduction: channel reduction r of the attentions (the code: 4).
        norm: the norm of every conv (``MODEL.IRSTD.NORM``).
    """

    def __init__(
        self,
        in_channels: int = 3,
        *,
        channels: Optional[Sequence[int]] = None,
        blocks: Optional[Sequence[int]] = None,
        arch: str = "fpn",
        reduction: int = 4,
        norm: NormSpec = "BN",
    ):
        super().__init__()
        if arch not in ACM_ARCHS:
            raise ValueError(f"MODEL.IRSTD.ACM.ARCH must be one of {ACM_ARCHS}, got {arch!r}.")
        c = acm_widths(channels)
        b = acm_blocks(blocks, 3)
        self.set_in_channels(in_channels)
        self.channels = c
        self.blocks = b
        self.arch = arch
        self.encoder = ResidualEncoder(in_channels, c, b, downsample=True, norm=norm)
        if arch == "unet":
            self.deconv2 = nn.ConvTranspose2d(c[3], c[2], 4, 2, 1)
            self.fuse2 = AsymBiFusion(c[2], reduction=reduction, norm=norm)
            self.up2 = residual_stage(c[2], c[2], b[1], 1, norm)
            self.deconv1 = nn.ConvTranspose2d(c[2], c[1], 4, 2, 1)
            self.fuse1 = AsymBiFusion(c[1], reduction=reduction, norm=norm)
            self.up1 = residual_stage(c[1], c[1], b[0], 1, norm)
        else:
            self.fuse2 = AsymBiFusion(c[2], c[3], reduction, norm)
            self.fuse1 = AsymBiFusion(c[1], c[2], reduction, norm)
        self.head = FCNHead(c[1], norm)

    @classmethod
    def from_config(cls, cfg) -> dict:
        """Constructor arguments from ``cfg.MODEL.IRSTD``."""
        return {**staged_net_args(cfg), "arch": cfg.MODEL.IRSTD.ACM.ARCH}

    def output_heads(self) -> List[nn.Conv2d]:
        """The 1x1 conv that produces the logits."""
        return [self.head.logits]

    def init_weights(self, init: str) -> None:
        """:meth:`IRSTDNetInitMixin.init_weights`, the transposed convs ("unet") included: the
        authors' initialiser draws every weight."""
        super().init_weights(init)
        if init == "xavier":
            for m in self.modules():
                if isinstance(m, nn.ConvTranspose2d):
                    nn.init.xavier_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        c1, c2, c3 = self.encoder(x)
        if self.arch == "unet":
            d2 = self.up2(self.fuse2(upsample_to(self.deconv2(c3), c2), c2))
            out = self.up1(self.fuse1(upsample_to(self.deconv1(d2), c1), c1))
        else:
            out = self.fuse1(upsample_to(self.fuse2(upsample_to(c3, c2), c2), c1), c1)
        return upsample_to(self.head(out), x)

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, channels={self.channels}, blocks={self.blocks}"
