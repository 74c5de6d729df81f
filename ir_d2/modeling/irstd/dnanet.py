"""
DNANet (Li et al., "Dense Nested Attention Network for Infrared Small Target Detection", IEEE TIP
2023), and the SIRST-5K authors' released net, which is DNANet with deeper stages; pure torch.

DNANet is the baseline that both small-target papers measure themselves against (SGEM Table 1,
SIRST-5K Tables I-II), and its training script is the recipe both inherit. The structure follows
the authors' released code (``model/model_DNANet.py`` of github.com/YeRen123455/Infrared-Small-
Target-Detection) layer for layer, so the parameter counts are theirs and one of their
checkpoints maps onto this module's weights one to one.
"""

from functools import partial
from typing import List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from ir_d2.layers.norm import NormSpec

from .aff import AFFBlock
from .build import IRSTD_NET_REGISTRY, staged_net_args
from .unet import NUM_LEVELS, IRSTDNetInitMixin, unet_channels

__all__ = ["DNANet", "SIRST5KNet", "resize_aligned"]


def resize_aligned(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """
    Bilinear resampling of ``x`` to ``ref``'s spatial size with ``align_corners=True``: DNANet's
    ``nn.Upsample(scale_factor=2 / 4 / 8 / 16 / 0.5, align_corners=True)``. With corners aligned
    the sampling grid depends only on the input and output sizes, so on frames whose sides are
    multiples of 16 this is exactly the code's fixed-factor resampling; other sizes work too.
    """
    if x.shape[-2:] == ref.shape[-2:]:
        return x
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=True)


@IRSTD_NET_REGISTRY.register()
class DNANet(IRSTDNetInitMixin, nn.Module):
    """
    DNANet (Li et al. 2023): 5 levels of widths ``c0..c4`` (16, 32, 64, 128, 256 in the paper),
    ``X(i, j)`` the node of level ``i`` and column ``j``, each a stage of residual channel +
    spatial attention blocks (``Res_CBAM_block``: :class:`AFFBlock` in the code's layout; one
    block at level 0, ``blocks[i - 1]`` at level ``i``; the paper's ResNet-18 setting is 2 each):

    - the dense nested interactive module (sec. III-B, eq. 1): ``X(i, 0)`` reads the 2x2 max-pool
      of ``X(i-1, 0)``; ``X(i, j)``, j >= 1, reads ``[X(i, 0..j-1), up(X(i+1, j-1)),
      down(X(i-1, j))]`` (the last one below level 0 only), ``up`` / ``down`` being bilinear
      resampling with aligned corners (:func:`resize_aligned`);
    - the feature pyramid fusion (sec. III-D, eq. 7): ``X(4, 0)``, ``X(3, 1)``, ``X(2, 2)``,
      ``X(1, 3)`` each projected to ``c0`` by a 1x1 conv, up-sampled to full resolution and
      concatenated with ``X(0, 4)``, then fused by one more block;
    - heads: a 1x1 conv on the fused map; with ``deep_supervision`` (the authors' training) also
      on ``X(0, 1)``, ``X(0, 2)``, ``X(0, 3)``, and the output is the list of the four logit maps,
      all at full resolution, the fused one last (the code's ``final1..final4``).

    The channel and spatial attention of eqs. 2-6 (CSAM) are the blocks' own, as in the code.
    Widths 16..256 with deep supervision give 4,696,888 parameters for a 3-channel input (the
    code's 4.70 M; SGEM Table 1 and SIRST-5K Table II print 4.70 M).

    Where ir_d2 departs from the code: the 2x2 max pool uses ceil mode and the resampling goes to
    the reference node's size rather than by a fixed factor, which changes nothing on sides that
    are multiples of 16 (the code's only valid input) and lets other sizes through.

    Args:
        in_channels: channels of the input image (``MODEL.IRSTD.IN_CHANNELS``).
        base_channels: c0 when ``channels`` is not given; level i has ``base * 2**i``.
        channels: the 5 widths (``MODEL.IRSTD.CHANNELS``; the code's ``nb_filter``).
        blocks: blocks per node at levels 1-4 (``MODEL.IRSTD.BLOCKS``; the code's
            ``num_blocks``: ResNet-10 [1, 1, 1, 1], ResNet-18 [2, 2, 2, 2], ResNet-34 [3, 4, 6, 3]).
        deep_supervision: return the four logit maps (``MODEL.IRSTD.DEEP_SUPERVISION``).
        reduction: channel-attention reduction of the blocks (``MODEL.IRSTD.AFF_REDUCTION``).
        norm: norm of every block (``MODEL.IRSTD.NORM``).
    """

    DEFAULT_BLOCKS = (2, 2, 2, 2)

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 16,
        *,
        channels: Optional[Sequence[int]] = None,
        blocks: Optional[Sequence[int]] = None,
        deep_supervision: bool = False,
        reduction: int = 16,
        norm: NormSpec = "BN",
    ):
        super().__init__()
        c = unet_channels(base_channels, channels)
        blocks = tuple(int(b) for b in (blocks or self.DEFAULT_BLOCKS))
        if len(blocks) != NUM_LEVELS - 1 or min(blocks) < 1:
            raise ValueError(
                f"MODEL.IRSTD.BLOCKS must list {NUM_LEVELS - 1} counts >= 1 for "
                f"{type(self).__name__}, got {list(blocks)}."
            )
        self.set_in_channels(in_channels)
        self.channels = c
        self.blocks = blocks
        self.deep_supervision = deep_supervision
        block = partial(AFFBlock, reduction=reduction, norm=norm, code_layout=True)

        def stage(cin, cout, level):
            n = blocks[level - 1] if level > 0 else 1
            return nn.Sequential(block(cin, cout), *[block(cout, cout) for _ in range(n - 1)])

        self.pool = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.nodes = nn.ModuleDict()
        for i in range(NUM_LEVELS):
            self.nodes[f"{i}_0"] = stage(in_channels if i == 0 else c[i - 1], c[i], i)
        for j in range(1, NUM_LEVELS):
            for i in range(NUM_LEVELS - j):
                cin = j * c[i] + c[i + 1] + (c[i - 1] if i > 0 else 0)
                self.nodes[f"{i}_{j}"] = stage(cin, c[i], i)
        # projections of X(4,0), X(3,1), X(2,2), X(1,3), deep to shallow
        self.project = nn.ModuleList(
            [nn.Conv2d(c[k], c[0], 1) for k in range(NUM_LEVELS - 1, 0, -1)]
        )
        self.fuse = stage(NUM_LEVELS * c[0], c[0], 0)
        n_heads = NUM_LEVELS - 1 if deep_supervision else 1
        self.heads = nn.ModuleList([nn.Conv2d(c[0], 1, 1) for _ in range(n_heads)])

    @classmethod
    def from_config(cls, cfg) -> dict:
        """Constructor arguments from ``cfg.MODEL.IRSTD``."""
        ir = cfg.MODEL.IRSTD
        return {
            **staged_net_args(cfg),
            "base_channels": ir.BASE_CHANNELS,
            "deep_supervision": ir.DEEP_SUPERVISION,
            "reduction": ir.AFF_REDUCTION,
        }

    def output_heads(self) -> List[nn.Conv2d]:
        """The logit convs, the fused map's first."""
        return [self.heads[-1], *self.heads[:-1]]

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, List[torch.Tensor]]:
        self.check_input(x)
        last = NUM_LEVELS - 1
        feats = {}
        for i in range(NUM_LEVELS):
            feats[(i, 0)] = self.nodes[f"{i}_0"](x if i == 0 else self.pool(feats[(i - 1, 0)]))
        # the code's order of evaluation is irrelevant: each node depends on computed ones only
        for j in range(1, NUM_LEVELS):
            for i in range(NUM_LEVELS - j):
                ref = feats[(i, 0)]
                inputs = [feats[(i, k)] for k in range(j)]
                inputs.append(resize_aligned(feats[(i + 1, j - 1)], ref))
                if i > 0:
                    inputs.append(resize_aligned(feats[(i - 1, j)], ref))
                feats[(i, j)] = self.nodes[f"{i}_{j}"](torch.cat(inputs, 1))
        top = feats[(0, last)]
        coarse = [feats[(k, last - k)] for k in range(last, 0, -1)]  # X(4,0) ... X(1,3)
        parts = [resize_aligned(p(f), top) for p, f in zip(self.project, coarse)]
        fused = self.fuse(torch.cat([*parts, top], 1))
        if not self.deep_supervision:
            return self.heads[0](fused)
        maps = [feats[(0, j)] for j in range(1, last)] + [fused]
        return [h(m) for h, m in zip(self.heads, maps)]

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, blocks={self.blocks}, "
            f"deep_supervision={self.deep_supervision}"
        )


@IRSTD_NET_REGISTRY.register()
class SIRST5KNet(DNANet):
    """
    The network behind SIRST-5K's figures (Lu et al. 2024, Tables II-V): the authors' released
    ``Net`` (``model/model.py`` of github.com/luy0222/SIRST-5K, trained by its ``train.py`` with
    ``--backbone resnet_34 --channel_size three --deep_supervision True``), which is DNANet's
    dense nested net of residual channel + spatial attention nodes (the paper's AFF blocks,
    eqs. 5-6) with the feature fusion of eq. 7 over five scales, at widths 16..256 and ResNet-34
    stage depths [3, 4, 6, 3]. With deep supervision (four full-resolution heads, the code's
    default) it has 8,792,702 parameters for a 3-channel input: Table II's 8.79 M.

    The paper's text describes a U-Net whose nodes are AFF blocks; that reading is
    :class:`ir_d2.modeling.AFFUNet` (8.41 M at width 32), kept as its own configs
    (``irstd_aff_unet_*``). Arguments as :class:`DNANet`, with ``blocks`` defaulting to
    [3, 4, 6, 3].
    """

    DEFAULT_BLOCKS = (3, 4, 6, 3)
