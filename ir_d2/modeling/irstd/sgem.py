"""
Semantic Gap Elimination Module (SGEM) and the SGEM U-Net, pure torch.

Paper: Deng & Yang, "High-Precision and Fast Inference for Infrared Small Target Detection through
Semantic Gap Reduction", ACSS 2025, sec. 3 (eqs. 1-3) and fig. 1: the U-Net's encoder-3 ->
decoder-2 skip is replaced by a cross-attention between encoder-3 (E3) and decoder-1 (D1).
"""

import torch
from torch import nn

from ir_d2.layers.norm import NormSpec, conv_norm

from .build import IRSTD_NET_REGISTRY
from .unet import UNet, upsample_to

__all__ = ["SGEM", "SGEMUNet", "sgem_attention"]

# 0-based level of E3 / of the decoder node D2 that reads the SGEM output (1/4 resolution)
SGEM_LEVEL = 2


def sgem_attention(q: torch.Tensor, k: torch.Tensor, mix: nn.Module) -> torch.Tensor:
    """
    Eqs. 1-3 of Deng & Yang 2025 after the 1x1 convolutions: ``Matrix = Softmax(Conv1x1(Q (x) K))``.

    ``Q = Lin(Conv1x1(E3))`` and ``K = Lin(Conv1x1(D1))`` (eqs. 1-2) arrive here already
    linearised, i.e. flattened to (N, C, HW) matrices (we read "Lin" as this flattening; a learned
    linear layer after a 1x1 conv would be a second per-pixel linear map with no effect on what
    can be learned). The paper leaves open what ``(x)`` multiplies; we use the *channel* affinity
    ``Q K^T / HW``, a (N, C, C) matrix costing O(HW C^2), linear in the number of pixels, instead
    of a (HW x HW) pixel affinity. Dividing by HW keeps the softmax temperature independent of
    the frame size. ``Conv1x1`` (eq. 3) is ``mix``, a 1x1 convolution over the affinity seen as
    C maps (one per query channel) of size C x 1; the softmax runs over the key channels.

    Args:
        q, k: (N, C, HW) with the same HW (K is resized to Q's resolution beforehand).
        mix: the eq. 3 convolution, ``nn.Conv2d(C, C, 1)``.

    Returns:
        the (N, C, C) attention matrix, each row summing to 1.
    """
    affinity = torch.bmm(q, k.transpose(1, 2)) / q.shape[-1]
    return torch.softmax(mix(affinity.unsqueeze(-1)).squeeze(-1), dim=-1)


class SGEM(nn.Module):
    """
    Semantic Gap Elimination Module (Deng & Yang 2025, eqs. 1-3, fig. 1).

    Shapes, for E3 of (N, Ce, H, W) (1/4 resolution) and D1 of (N, Cd, H', W') (1/8 resolution):

    1. ``Q = flatten(query(E3))``: (N, Ce, HW) (eq. 1);
    2. ``K = flatten(up(key(D1)))``: (N, Ce, HW); the 1x1 conv maps Cd -> Ce channels and K is
       bilinearly up-sampled to E3's H x W, so the attention runs at the skip's resolution (the
       paper does not say at which resolution; the finer one keeps the few pixels of a small
       target) (eq. 2);
    3. ``Matrix = sgem_attention(Q, K)``: (N, Ce, Ce) (eq. 3);
    4. ``Matrix @ flatten(E3)``: (N, Ce, HW), reshaped to (N, Ce, H, W) and "restored to a 3-D
       feature" by a per-channel (depthwise) 3x3 convolution and BatchNorm (``norm``);
    5. residual: ``out = E3 + restored``, (N, Ce, H, W), which feeds decoder level 2 (D2) in place
       of E3.

    With ``zero_init`` (ours, ``MODEL.IRSTD.SGEM_ZERO_INIT``; off in the paper row) the BatchNorm
    of step 4 starts with zero weight, so at initialisation SGEM is the identity and the SGEM
    U-Net computes the plain U-Net.
    """

    def __init__(
        self, enc_channels: int, dec_channels: int, zero_init: bool = False, norm: NormSpec = "BN"
    ):
        super().__init__()
        self.enc_channels = enc_channels
        self.dec_channels = dec_channels
        self.query = nn.Conv2d(enc_channels, enc_channels, 1)
        self.key = nn.Conv2d(dec_channels, enc_channels, 1)
        self.mix = nn.Conv2d(enc_channels, enc_channels, 1)
        self.restore = nn.Sequential(
            *conv_norm(enc_channels, enc_channels, 3, norm, groups=enc_channels)
        )
        if zero_init and (
            len(self.restore) == 1 or getattr(self.restore[1], "weight", None) is None
        ):
            raise ValueError(
                f"MODEL.IRSTD.SGEM_ZERO_INIT needs a norm with a weight, got {norm!r} "
                "(MODEL.IRSTD.NORM)."
            )
        if zero_init:
            nn.init.zeros_(self.restore[1].weight)

    def forward(self, enc: torch.Tensor, dec: torch.Tensor) -> torch.Tensor:
        if enc.shape[1] != self.enc_channels or dec.shape[1] != self.dec_channels:
            raise ValueError(
                f"SGEM({self.enc_channels}, {self.dec_channels}) got E3 {tuple(enc.shape)} and "
                f"D1 {tuple(dec.shape)}."
            )
        n, c, h, w = enc.shape
        q = self.query(enc).flatten(2)
        k = upsample_to(self.key(dec), enc).flatten(2)
        matrix = sgem_attention(q, k, self.mix)
        attended = torch.bmm(matrix, enc.flatten(2)).view(n, c, h, w)
        return enc + self.restore(attended)

    def extra_repr(self) -> str:
        return f"enc_channels={self.enc_channels}, dec_channels={self.dec_channels}"


@IRSTD_NET_REGISTRY.register()
class SGEMUNet(UNet):
    """
    The U-Net (:class:`UNet`) whose encoder-3 -> decoder-2 skip is an :class:`SGEM` between E3
    (``enc2``, 1/4 resolution) and D1 (``dec3``, 1/8 resolution) (Deng & Yang 2025, fig. 1).

    The paper widens the first stage (8.69 M parameters, 15.92 GFLOPs at 256x256); set the widths
    with ``channels`` (``MODEL.IRSTD.CHANNELS``). Arguments as :class:`UNet`, ``node`` included,
    plus the keyword-only ``zero_init`` of :class:`SGEM` (``MODEL.IRSTD.SGEM_ZERO_INIT``).
    """

    def __init__(self, *args, zero_init: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.sgem = SGEM(
            self.channels[SGEM_LEVEL],
            self.channels[SGEM_LEVEL + 1],
            zero_init=zero_init,
            norm=self.norm,
        )

    @classmethod
    def from_config(cls, cfg) -> dict:
        return {**super().from_config(cfg), "zero_init": cfg.MODEL.IRSTD.SGEM_ZERO_INIT}

    def skip(self, level: int, enc: torch.Tensor, deeper: torch.Tensor) -> torch.Tensor:
        if level == SGEM_LEVEL:
            return self.sgem(enc, deeper)
        return enc
