"""
The attentions and the fusion module of ACM, pure torch; ALCNet (:mod:`.alcnet`) reuses the
point-wise channel attention.

Paper: Dai, Wu, Zhou & Barnard, "Asymmetric Contextual Modulation for Infrared Small Target
Detection", WACV 2021 (arXiv 2009.14530), sec. 3: the asymmetric contextual modulation (ACM)
module, a top-down global channel attention (from the deep feature onto the shallow one) plus a
bottom-up point-wise channel attention (from the shallow feature onto the deep one). Structure
from the authors' MXNet code (github.com/YimianDai/open-acm: ``model/fusion.py``
``AsymBiChaFuse`` / ``AsymBiChaFuseReduce``).
"""

from typing import Optional

import torch
from torch import nn

from ir_d2.layers.norm import NormSpec

from .acm_backbone import acm_conv_norm

__all__ = ["AsymBiFusion", "GlobalChannelAttention", "PointwiseChannelAttention"]


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
