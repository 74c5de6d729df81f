"""
ACM, pure torch.

Paper: Dai, Wu, Zhou & Barnard, "Asymmetric Contextual Modulation for Infrared Small Target
Detection", WACV 2021 (arXiv 2009.14530), sec. 3: a residual backbone (a stem, then three stages
of basic residual blocks; :mod:`.acm_backbone`) whose coarse and fine features are fused by the
asymmetric contextual modulation (ACM) module (:mod:`.acm_fusion`), i.e. a top-down global
channel attention (from the deep feature onto the shallow one) plus a bottom-up point-wise
channel attention (from the shallow feature onto the deep one), in a U-Net or an FPN.

Structure, layer for layer and bias for bias, from the authors' MXNet code
(github.com/YimianDai/open-acm: ``model/segmentation.py`` ``ASKCResUNet`` / ``ASKCResNetFPN``,
``train_dentist.py``).
"""

from typing import List, Optional, Sequence

import torch
from torch import nn

from ir_d2.layers.norm import NormSpec

from .acm_backbone import FCNHead, acm_encoder, residual_stage
from .acm_fusion import AsymBiFusion
from .build import IRSTD_NET_REGISTRY, staged_net_args
from .unet import IRSTDNetInitMixin, upsample_to

__all__ = ["ACM", "ACM_ARCHS"]

#: The two ACM architectures of the authors' code: "unet" (``ASKCResUNet``) and "fpn"
#: (``ASKCResNetFPN``).
ACM_ARCHS = ("unet", "fpn")


@IRSTD_NET_REGISTRY.register()
class ACM(IRSTDNetInitMixin, nn.Module):
    """
    ACM (Dai et al., WACV 2021, sec. 3): the :class:`~.acm_backbone.ResidualEncoder` with the
    down-sampling stem (stages at 1/4, 1/8, 1/16 of the input: C1, C2, C3), a decoder fusing the
    scales with :class:`AsymBiFusion`, an :class:`FCNHead` at 1/4 and a bilinear resize of the
    logits to the input's size. ``arch`` (``MODEL.IRSTD.ACM.ARCH``) picks one of the two decoders
    of the paper and of the authors' code:

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
        self.arch = arch
        c = acm_encoder(self, in_channels, channels, blocks, 3, downsample=True, norm=norm)
        if arch == "unet":
            self.deconv2 = nn.ConvTranspose2d(c[3], c[2], 4, 2, 1)
            self.fuse2 = AsymBiFusion(c[2], reduction=reduction, norm=norm)
            self.up2 = residual_stage(c[2], c[2], self.blocks[1], 1, norm)
            self.deconv1 = nn.ConvTranspose2d(c[2], c[1], 4, 2, 1)
            self.fuse1 = AsymBiFusion(c[1], reduction=reduction, norm=norm)
            self.up1 = residual_stage(c[1], c[1], self.blocks[0], 1, norm)
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
