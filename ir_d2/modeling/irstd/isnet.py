"""
ISNet, pure torch.

Paper: Zhang, Zhang, Yang, Bai, Zhang & Guo, "ISNet: Shape Matters for Infrared Small Target
Detection", CVPR 2022, sec. 3: an ACM-style residual encoder-decoder whose two skip fusions are
two-orientation attention aggregation (TOAA) blocks, and a shape branch of Taylor-finite-
difference (TFD) -inspired edge blocks at full resolution that starts from the input's gradient
image, is gated by side outputs of the encoder-decoder, predicts the targets' edges (supervised
by the mask's edges) and reweights the decoder's features before the head.

Structure, layer for layer and bias for bias, from the authors' code (github.com/RuiZhang97/
ISNet: ``model/ISNet.py``, ``model/DCNv2/TTOA.py``, ``model/my_functionals/GatedSpatialConv.py``,
``model/network/Resnet.py``, ``model/train_ISNet.py``), written anew; BasicIRSTD's port
(``model/ISNet/model_ISNet.py``) is the same net with a 1-channel input and a DCNv1 (no
modulation) in the TOAA block. The paper's text was not at hand here: the sections are named by
title, and the equations by what they compute, not by number.

The TOAA block's deformable convolution is in :mod:`.deform_conv`, the shape branch's blocks in
:mod:`.isnet_edge`, and the encoder's residual stages and the head are ACM's
(:mod:`.acm_backbone`).
"""

from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ir_d2.layers.edge_loss import gradient_magnitude
from ir_d2.layers.norm import NormSpec

from .acm_backbone import FCNHead, acm_blocks, acm_conv_norm, acm_widths, norm_layer, residual_stage
from .build import IRSTD_NET_REGISTRY, staged_net_args
from .deform_conv import DEFORM_IMPLS, ModulatedDeformConv2d
from .isnet_edge import GatedSpatialConv, TFDBlock, TFDResidual
from .unet import IRSTDNetInitMixin

__all__ = ["ISNet", "ISNetStem", "TOAABlock", "authors_unused_modules"]

#: Widths (stem, stage 1, stage 2, stage 3) of the authors' code (``train_ISNet.py``).
ISNET_WIDTHS = (8, 16, 32, 64)
#: Residual blocks per stage (``--blocks-per-layer`` 4).
ISNET_BLOCKS = 4


class ISNetStem(nn.Sequential):
    """
    ISNet's stem (sec. 3, overall architecture; the code's ``self.stem``, ACM's down-sampling
    stem with a learned input BatchNorm)::

        norm(in) -> conv3x3/2 (in -> c0) -> norm -> ReLU -> conv3x3 (c0 -> c0) -> norm -> ReLU
                 -> conv3x3 (c0 -> c1) -> norm -> ReLU -> maxpool 3x3/2

    convs without bias; the output is at 1/4 of the input's size. The input norm keeps its affine
    parameters (the code's ``nn.BatchNorm2d(3)``; ACM's MXNet code drops them). The code ends at
    ``2 * c0`` channels, which is ``c1`` in its setting; here it is ``c1``.
    """

    def __init__(self, in_channels: int, c0: int, c1: int, norm: NormSpec = "BN"):
        super().__init__(
            norm_layer(norm, in_channels),
            *acm_conv_norm(in_channels, c0, 3, norm, stride=2),
            nn.ReLU(inplace=True),
            *acm_conv_norm(c0, c0, 3, norm),
            nn.ReLU(inplace=True),
            *acm_conv_norm(c0, c1, 3, norm),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )


class TOAABlock(nn.Module):
    """
    The two-orientation attention aggregation block (sec. 3, TOAA block; the code's ``TTOA``),
    fusing the up-sampled decoder feature ``a`` with the encoder skip ``s`` of the same width::

        a' = P(a),  s' = P(s)                     # P: 1x1 conv C -> C/2 -> C (with bias), shared
        col = a' + sigmoid(DCN_3x1(a')) * s'      # column-direction attention
        row = a' + sigmoid(DCN_1x3(a')) * s'      # row-direction attention
        out = row + col

    The DCNs are :class:`ModulatedDeformConv2d` with 3x1 and 1x3 kernels. The attention is
    computed from the decoder feature and applied to the skip, as the code does (its argument
    names call the decoder feature "low" and the skip "high").
    """

    def __init__(self, channels: int, kernel: int = 3, deform_impl: str = "auto"):
        super().__init__()
        self.preprocess = nn.Sequential(
            nn.Conv2d(channels, channels // 2, 1), nn.Conv2d(channels // 2, channels, 1)
        )
        self.dcn_col = ModulatedDeformConv2d(channels, channels, (kernel, 1), deform_impl)
        self.dcn_row = ModulatedDeformConv2d(channels, channels, (1, kernel), deform_impl)

    def forward(self, decoder: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        a = self.preprocess(decoder)
        s = self.preprocess(skip)
        col = a + torch.sigmoid(self.dcn_col(a)) * s
        row = a + torch.sigmoid(self.dcn_row(a)) * s
        return row + col


class _ShuffleAttentionParams(nn.Module):
    """The parameters of the code's ``sa_layer`` (shuffle attention, Zhang & Yang, ICASSP 2021)
    for ``channels`` and ``groups``: 4 vectors of ``channels // (2 groups)`` and their
    GroupNorm. ISNet builds two and never calls them (:func:`authors_unused_modules`)."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        g = channels // (2 * groups)
        self.cweight = nn.Parameter(torch.zeros(1, g, 1, 1))
        self.cbias = nn.Parameter(torch.ones(1, g, 1, 1))
        self.sweight = nn.Parameter(torch.zeros(1, g, 1, 1))
        self.sbias = nn.Parameter(torch.ones(1, g, 1, 1))
        self.gn = nn.GroupNorm(g, g)


def authors_unused_modules(c1: int, norm: NormSpec = "BN") -> nn.ModuleDict:
    """
    The modules the authors' ``ISNet.__init__`` builds and its ``forward`` never calls (left from
    Gated-SCNN's shape stream and from experiments), with the code's shapes: three residual
    units on 64, 32, 16 channels with 1x1 reductions 64 -> 32 -> 16 -> 8, three gated convs on
    32, 16, 8 channels, two shuffle attentions (4 and 17 channels, 2 groups), a 4 -> 1 conv, a
    3-class FCN head on ``c1``, and 3 -> 1 and 3 -> 16 convs: 103,709 parameters with
    BatchNorm. They count in the authors' model's ``parameters()``, hence in the 1.09 M of
    SGEM's Table 1 (:class:`ISNet`, ``unused_modules``); they take no part in the output.
    """
    head2 = nn.Sequential(
        *acm_conv_norm(c1, c1 // 4, 3, norm), nn.ReLU(inplace=True), nn.Dropout(0.1),
        nn.Conv2d(c1 // 4, 3, 1),
    )  # fmt: skip
    return nn.ModuleDict(
        {
            "res1": TFDResidual(64, norm),
            "d1": nn.Conv2d(64, 32, 1),
            "res2": TFDResidual(32, norm),
            "d2": nn.Conv2d(32, 16, 1),
            "res3": TFDResidual(16, norm),
            "d3": nn.Conv2d(16, 8, 1),
            "cw": nn.Conv2d(4, 1, 1, bias=False),
            "gate1": GatedSpatialConv(32, 32, norm),
            "gate2": GatedSpatialConv(16, 16, norm),
            "gate3": GatedSpatialConv(8, 8, norm),
            "sa": _ShuffleAttentionParams(4, 2),
            "sa_att": _ShuffleAttentionParams(17, 2),
            "head2": head2,
            "conv2_1": nn.Conv2d(3, 1, 1),
            "conv16": nn.Conv2d(3, 16, 1),
        }
    )


def _crop_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``x`` cut to ``ref``'s height and width (a 2x transposed conv of a ceil-halved feature is
    one pixel larger than its skip for odd sizes; the same tensor otherwise)."""
    return x[..., : ref.shape[-2], : ref.shape[-1]]


@IRSTD_NET_REGISTRY.register()
class ISNet(IRSTDNetInitMixin, nn.Module):
    """
    ISNet (Zhang et al., CVPR 2022, sec. 3), as the authors' code builds it:

    - encoder: :class:`ISNetStem` (to 1/4), three residual stages (ACM's blocks, ``blocks`` each;
      strides 1, 2, 2; widths c1, c2, c3): C1 (1/4), C2 (1/8), C3 (1/16);
    - decoder: ``D2 = stage(TOAA(deconv(C3), C2))``, ``D1 = stage(TOAA(deconv(D2), C1))``, with a
      4x4 transposed conv of stride 2 (with bias) halving the width, a :class:`TOAABlock` and a
      residual stage as deep as the encoder's at that level;
    - shape branch at full resolution (sec. 3, TFD-inspired edge block): side maps
      ``s1, s2, s3`` = 1x1 convs (with bias) of C3, D2, D1 to 1 channel, bilinearly resized to
      the input (align_corners=True); the input's gradient image (:func:`ir_d2.layers.edge_loss.
      gradient_magnitude`, one map per input channel) projected by a 1x1 conv (with bias) to
      ``edge_channels``; three :class:`TFDBlock` gated by s1, s2, s3 in turn; a 1x1 conv (no
      bias) to the edge logits ``z``;
    - head: D1 bilinearly resized to the input (align_corners=False), reweighted by the edge map
      ``F = sigmoid(z) * D1 + D1``, then ACM's FCN head (conv3x3 -> norm -> ReLU -> dropout 0.1
      -> conv1x1) to the mask logits.

    Eval mode returns the (N, 1, H, W) mask logits; training mode ``{"logits": mask logits,
    "edge": z}`` (the code returns ``sigmoid(z)``; the edge loss takes the logits,
    :func:`ir_d2.layers.edge_loss.isnet_edge_loss`).

    Any input size works: a transposed conv's output is cut to its skip's size (a no-op for
    sizes that are multiples of 16, the only ones the code takes).

    Sizes at 256x256 (fvcore, one multiply-add = one flop): the defaults have 1,090,671
    parameters (1,090,395 with a 1-channel input): SGEM's Table 1 1.09 M, which counts the
    authors' model's ``parameters()``, 103,709 of them in never-called modules
    (``unused_modules``; without them 986,962 / 986,686); and 31.27 GFLOPs (31.26 with 1
    channel) against SGEM's 30.63 and BasicIRSTD's thop count with 1 channel, 0.966 M and 30.62
    GFLOPs: thop sees only registered layers that run, so it misses the never-called modules
    and the weights applied functionally (the gated convs' 1x1 convs at full resolution, 0.81
    GFLOPs, and the DCNs'), and counts a BatchNorm as 2 flops per element.

    Args:
        in_channels: channels of the input image (``MODEL.IRSTD.IN_CHANNELS``; the code: 3,
            BasicIRSTD: 1). The gradient image has as many channels.
        channels: widths (stem, stage 1, stage 2, stage 3) (``MODEL.IRSTD.CHANNELS``; default
            8, 16, 32, 64).
        blocks: residual blocks per stage (``MODEL.IRSTD.BLOCKS``; default 4 each).
        edge_channels: width of the shape branch (``MODEL.IRSTD.ISNET.EDGE_CHANNELS``; the code:
            64). It runs at full resolution and makes most of the FLOPs.
        deform_impl: :class:`ModulatedDeformConv2d`'s ``impl`` (``MODEL.IRSTD.ISNET.
            DEFORM_IMPL``).
        unused_modules: also build the authors' never-called modules
            (:func:`authors_unused_modules`), frozen (``requires_grad`` False: they get no
            gradient in the code either), so that the parameter count is the authors' model's
            (``MODEL.IRSTD.ISNET.UNUSED_MODULES``). They do not change the output.
        authors_init: initialise as the code's ``weight_init`` (applied to the whole net after
            construction): every ``nn.Conv2d`` weight ~ N(0, 0.02) (biases kept), every
            BatchNorm weight ~ N(1, 0.02) and bias ~ N(0, 1) (the code's ``normal_(m.bias,
            0)``: std 1); transposed convs, the gated convs' and the DCNs' own weights keep their
            construction-time initialisation, as in the code (``MODEL.IRSTD.ISNET.
            AUTHORS_INIT``). False keeps torch's. ``MODEL.IRSTD.INIT`` "xavier" is applied on
            top by the builder.
        norm: the norm of every BatchNorm of the code (``MODEL.IRSTD.NORM``), the input one
            included.
    """

    def __init__(
        self,
        in_channels: int = 3,
        *,
        channels: Optional[Sequence[int]] = None,
        blocks: Optional[Sequence[int]] = None,
        edge_channels: int = 64,
        deform_impl: str = "auto",
        unused_modules: bool = True,
        authors_init: bool = True,
        norm: NormSpec = "BN",
    ):
        super().__init__()
        if edge_channels <= 0:
            raise ValueError(f"MODEL.IRSTD.ISNET.EDGE_CHANNELS must be > 0, got {edge_channels}.")
        if deform_impl not in DEFORM_IMPLS:
            raise ValueError(
                f"MODEL.IRSTD.ISNET.DEFORM_IMPL must be one of {DEFORM_IMPLS}, got {deform_impl!r}."
            )
        c = acm_widths(channels, ISNET_WIDTHS)
        b = acm_blocks(blocks, ISNET_BLOCKS)
        c0, c1, c2, c3 = c
        self.set_in_channels(in_channels)
        self.channels = c
        self.blocks = b
        self.edge_channels = edge_channels
        # encoder
        self.stem = ISNetStem(in_channels, c0, c1, norm)
        self.layer1 = residual_stage(c1, c1, b[0], 1, norm)
        self.layer2 = residual_stage(c1, c2, b[1], 2, norm)
        self.layer3 = residual_stage(c2, c3, b[2], 2, norm)
        # decoder
        self.deconv2 = nn.ConvTranspose2d(c3, c2, 4, 2, 1)
        self.toaa2 = TOAABlock(c2, deform_impl=deform_impl)
        self.uplayer2 = residual_stage(c2, c2, b[1], 1, norm)
        self.deconv1 = nn.ConvTranspose2d(c2, c1, 4, 2, 1)
        self.toaa1 = TOAABlock(c1, deform_impl=deform_impl)
        self.uplayer1 = residual_stage(c1, c1, b[0], 1, norm)
        # shape branch
        self.side = nn.ModuleList([nn.Conv2d(ch, 1, 1) for ch in (c3, c2, c1)])
        self.grad_proj = nn.Conv2d(in_channels, edge_channels, 1)
        self.tfd = nn.ModuleList([TFDBlock(edge_channels, norm) for _ in range(3)])
        self.edge_out = nn.Conv2d(edge_channels, 1, 1, bias=False)
        self.head = FCNHead(c1, norm)
        self.unused = authors_unused_modules(c1, norm) if unused_modules else None
        if authors_init:
            self.authors_init()
        if self.unused is not None:
            self.unused.requires_grad_(False)

    @classmethod
    def from_config(cls, cfg) -> dict:
        """Constructor arguments from ``cfg.MODEL.IRSTD`` and ``cfg.MODEL.IRSTD.ISNET``."""
        isnet = cfg.MODEL.IRSTD.ISNET
        return {
            **staged_net_args(cfg),
            "edge_channels": isnet.EDGE_CHANNELS,
            "deform_impl": isnet.DEFORM_IMPL,
            "unused_modules": isnet.UNUSED_MODULES,
            "authors_init": isnet.AUTHORS_INIT,
        }

    def authors_init(self) -> None:
        """The code's ``weight_init`` (see the class's ``authors_init`` argument)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, _BatchNorm) and m.affine:
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.normal_(m.bias, 0.0, 1.0)

    def output_heads(self) -> List[nn.Conv2d]:
        """The 1x1 conv that produces the mask logits."""
        return [self.head.logits]

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, Dict[str, torch.Tensor]]:
        self.check_input(x)
        size = x.shape[-2:]
        grad = gradient_magnitude(x)
        c1 = self.layer1(self.stem(x))
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        d2 = self.uplayer2(self.toaa2(_crop_to(self.deconv2(c3), c2), c2))
        d1 = self.uplayer1(self.toaa1(_crop_to(self.deconv1(d2), c1), c1))
        u = self.grad_proj(grad)
        for tfd, side, feat in zip(self.tfd, self.side, (c3, d2, d1)):
            s = F.interpolate(side(feat), size=size, mode="bilinear", align_corners=True)
            u = tfd(u, s)
        edge_logits = self.edge_out(u)
        d1 = F.interpolate(d1, size=size, mode="bilinear", align_corners=False)
        logits = self.head(torch.sigmoid(edge_logits) * d1 + d1)
        if self.training:
            return {"logits": logits, "edge": edge_logits}
        return logits

    def extra_repr(self) -> str:
        return f"channels={self.channels}, blocks={self.blocks}, edge_channels={self.edge_channels}"
