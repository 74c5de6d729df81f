"""
A DNANet-class dense nested U-Net, pure torch: the baseline that SGEM (Deng & Yang 2025, Table 1)
compares with, for FPS and learning comparisons (``benchmarks/bench_irstd.py``,
``benchmarks/gpu_check.py``). Not DNANet itself: see :class:`NestedUNet`.
"""

from functools import partial
from typing import List, Optional, Sequence, Union

import torch
from torch import nn

from ir_d2.layers.norm import NormSpec

from .aff import AFFBlock, global_fusion
from .build import IRSTD_NET_REGISTRY
from .unet import NUM_LEVELS, IRSTDNetInitMixin, UNet, unet_channels, upsample_to

__all__ = ["NestedUNet"]


@IRSTD_NET_REGISTRY.register()
class NestedUNet(IRSTDNetInitMixin, nn.Module):
    """
    A DNANet-class dense nested U-Net (Li et al., "Dense Nested Attention Network for Infrared
    Small Target Detection", TIP 2022): 5 levels of widths ``c0..c4`` (DNANet's 16, 32, 64, 128,
    256 by default); node X(i, j) (level i, column j) is a stage of residual channel + spatial
    attention blocks (:class:`AFFBlock`, DNANet's Res_CBAM; ``blocks[i-1]`` of them below level
    0, one at level 0) over ``[X(i, 0..j-1), up(X(i+1, j-1)), down(X(i-1, j))]``: UNet++-style
    dense nested skips with the extra down-sampled input of DNANet's interactive module. The
    head reads the fusion of X(4,0), X(3,1), X(2,2), X(1,3) (each projected to ``c0`` by a 1x1
    conv and up-sampled) with X(0,4), in one more stage; with ``deep_supervision`` (on in DNANet)
    there are also heads on X(0, 1..3) and the output is their list, the fused one last.

    What differs from DNANet: the skip inputs are bilinearly resized to the node's size rather
    than pooled or up-sampled by fixed factors (so odd sizes work), and there is no separate
    channel-spatial attention on the fused features (DNANet's CSAM) beyond the blocks' own. With
    the default widths it has 4.69 M parameters and 14.07 GFLOPs at 256x256 (fvcore) against
    DNANet's 4.70 M / 14.28 in SGEM's Table 1.

    Args:
        in_channels: channels of the input image (``MODEL.IRSTD.IN_CHANNELS``).
        base_channels: c0 when ``channels`` is not given; level i has ``base * 2**i``.
        channels: the 5 widths (``MODEL.IRSTD.CHANNELS``).
        deep_supervision: return the list of 4 logit maps (``MODEL.IRSTD.DEEP_SUPERVISION``).
        blocks: attention blocks per node at levels 1-4 (DNANet: 2 each).
        reduction: channel-attention reduction of the blocks (``MODEL.IRSTD.AFF_REDUCTION``).
        norm: norm of every block (``MODEL.IRSTD.NORM``).
    """

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 16,
        *,
        channels: Optional[Sequence[int]] = None,
        deep_supervision: bool = False,
        blocks: Sequence[int] = (2, 2, 2, 2),
        reduction: int = 16,
        norm: NormSpec = "BN",
    ):
        super().__init__()
        if in_channels <= 0:
            raise ValueError(f"MODEL.IRSTD.IN_CHANNELS must be > 0, got {in_channels}.")
        c = unet_channels(base_channels, channels)
        if len(blocks) != NUM_LEVELS - 1 or min(blocks) < 1:
            raise ValueError(f"NestedUNet blocks must list 4 counts >= 1, got {list(blocks)}.")
        self.in_channels = in_channels
        self.channels = c
        self.deep_supervision = deep_supervision
        block = partial(AFFBlock, reduction=reduction, norm=norm)

        def stage(cin, cout, n):
            return nn.Sequential(block(cin, cout), *[block(cout, cout) for _ in range(n - 1)])

        def n_blocks(i):
            return blocks[i - 1] if i > 0 else 1

        self.pool = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.nodes = nn.ModuleDict()
        for i in range(NUM_LEVELS):
            cin = in_channels if i == 0 else c[i - 1]
            self.nodes[f"{i}_0"] = stage(cin, c[i], n_blocks(i))
        for j in range(1, NUM_LEVELS):
            for i in range(NUM_LEVELS - j):
                cin = j * c[i] + c[i + 1] + (c[i - 1] if i > 0 else 0)
                self.nodes[f"{i}_{j}"] = stage(cin, c[i], n_blocks(i))
        self.project = nn.ModuleList(
            [nn.Conv2d(c[k], c[0], 1) for k in range(NUM_LEVELS - 1, 0, -1)]
        )
        self.fuse = stage(NUM_LEVELS * c[0], c[0], 1)
        self.heads = nn.ModuleList([nn.Conv2d(c[0], 1, 1) for _ in range(NUM_LEVELS - 1)])

    @classmethod
    def from_config(cls, cfg) -> dict:
        """Constructor arguments from ``cfg.MODEL.IRSTD``: the U-Net's, plus the blocks'
        channel-attention reduction (``AFF_REDUCTION``)."""
        return {**UNet.from_config(cfg), "reduction": cfg.MODEL.IRSTD.AFF_REDUCTION}

    def output_heads(self) -> List[nn.Conv2d]:
        return [self.heads[-1], *self.heads[:-1]]

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, List[torch.Tensor]]:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"NestedUNet expects an (N, {self.in_channels}, H, W) tensor "
                f"(MODEL.IRSTD.IN_CHANNELS), got {tuple(x.shape)}."
            )
        last = NUM_LEVELS - 1
        feats = {}
        for i in range(NUM_LEVELS):
            y = x if i == 0 else self.pool(feats[(i - 1, 0)])
            feats[(i, 0)] = self.nodes[f"{i}_0"](y)
        for j in range(1, NUM_LEVELS):
            for i in range(NUM_LEVELS - j):
                ref = feats[(i, 0)]
                inputs = [feats[(i, k)] for k in range(j)]
                inputs.append(upsample_to(feats[(i + 1, j - 1)], ref))
                if i > 0:
                    inputs.append(upsample_to(feats[(i - 1, j)], ref))
                feats[(i, j)] = self.nodes[f"{i}_{j}"](torch.cat(inputs, 1))
        top = feats[(0, last)]
        coarse = [feats[(k, last - k)] for k in range(last, 0, -1)]  # deep to shallow
        fused = global_fusion(coarse, top, self.project, self.fuse)
        if not self.deep_supervision:
            return self.heads[-1](fused)
        maps = [feats[(0, j)] for j in range(1, last)] + [fused]
        return [h(m) for h, m in zip(self.heads, maps)]

    def extra_repr(self) -> str:
        return f"channels={self.channels}, deep_supervision={self.deep_supervision}"
