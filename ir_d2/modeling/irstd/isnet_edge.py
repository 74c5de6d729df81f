"""
The shape branch's blocks of ISNet (:mod:`.isnet`), pure torch: the Taylor-finite-difference
(TFD) -inspired edge block, its residual unit and its gated convolution.

Paper: Zhang, Zhang, Yang, Bai, Zhang & Guo, "ISNet: Shape Matters for Infrared Small Target
Detection", CVPR 2022, sec. 3 (TFD-inspired edge block), written from the authors' code
(github.com/RuiZhang97/ISNet: ``model/ISNet.py``, ``model/my_functionals/GatedSpatialConv.py``,
``model/network/Resnet.py``); the gated convolution is Gated-SCNN's (Takikawa et al., ICCV 2019,
eq. 1). The paper's text was not at hand: the blocks are named by title, not by equation number.
"""

import torch
import torch.nn.functional as F
from torch import nn

from ir_d2.layers.norm import NormSpec

from .acm_backbone import acm_conv_norm, norm_layer

__all__ = ["GatedSpatialConv", "TFDBlock", "TFDResidual"]


class GatedSpatialConv(nn.Module):
    """
    The gated convolution of the TFD-inspired edge block (sec. 3; the code's
    ``GatedSpatialConv2d``, from Gated-SCNN, Takikawa et al., ICCV 2019, eq. 1)::

        alpha = sigmoid(norm(conv1x1(ReLU(conv1x1(norm([u; s]))))))   # (N, 1, H, W)
        out   = W * (u * (1 + alpha))                                   # W: 1x1, no bias

    ``u``: (N, C, H, W) edge-stream feature, ``s``: (N, 1, H, W) gating map (a side output's
    logits). The gate's two 1x1 convs (C+1 -> C+1 -> 1) have biases; ``W`` is a plain weight
    (not an ``nn.Conv2d``: the code's ``_ConvNd``) with Xavier-normal initialisation.
    """

    def __init__(self, in_channels: int, out_channels: int, norm: NormSpec = "BN"):
        super().__init__()
        c = in_channels + 1
        self.gate = nn.Sequential(
            norm_layer(norm, c),
            nn.Conv2d(c, c, 1),
            nn.ReLU(),
            nn.Conv2d(c, 1, 1),
            norm_layer(norm, 1),
            nn.Sigmoid(),
        )
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 1, 1))
        nn.init.xavier_normal_(self.weight)

    def forward(self, u: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        alpha = self.gate(torch.cat([u, s], dim=1))
        return F.conv2d(u * (alpha + 1), self.weight)


class TFDResidual(nn.Module):
    """
    The residual unit of the TFD-inspired edge block (the code's ``BasicBlock1``)::

        du  = norm(conv3x3(ReLU(norm(conv3x3(u)))))      # convs without bias
        returns (ReLU(u + du), ReLU(du))

    i.e. the next state and the (rectified) difference, the two quantities the TFD relation
    combines.
    """

    def __init__(self, channels: int, norm: NormSpec = "BN"):
        super().__init__()
        self.body = nn.Sequential(
            *acm_conv_norm(channels, channels, 3, norm),
            nn.ReLU(inplace=True),
            *acm_conv_norm(channels, channels, 3, norm),
        )

    def forward(self, u: torch.Tensor):
        du = self.body(u)
        return torch.relu(u + du), torch.relu(du)


class TFDBlock(nn.Module):
    """
    The Taylor-finite-difference-inspired edge block (sec. 3, TFD-inspired edge block; the code's
    ``TFD``): two residual units and a gated conv, combined as the code's finite-difference
    relation::

        u1, du0 = R1(u0)
        _,  u2  = R2(u1)                  # u2: the second unit's rectified difference
        u3 = 3 * du0 + u2 + G(u2, s)

    ``R1``, ``R2``: :class:`TFDResidual`; ``G``: :class:`GatedSpatialConv` gated by the side map
    ``s`` (N, 1, H, W). Width ``channels`` in and out.
    """

    def __init__(self, channels: int, norm: NormSpec = "BN"):
        super().__init__()
        self.res1 = TFDResidual(channels, norm)
        self.res2 = TFDResidual(channels, norm)
        self.gate = GatedSpatialConv(channels, channels, norm)

    def forward(self, u0: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        u1, du0 = self.res1(u0)
        _, u2 = self.res2(u1)
        return 3 * du0 + u2 + self.gate(u2, s)
