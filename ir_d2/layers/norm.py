"""Norm layers by name: detectron2's ``get_norm`` (imported when a name is built, so the blocks
import without detectron2), with GroupNorm's group count fitted to narrow layers."""

import math
from typing import Callable, List, Optional, Union

from torch import nn

__all__ = ["get_norm", "conv_norm"]

NormSpec = Union[str, Callable[[int], Optional[nn.Module]], None]


def get_norm(norm: NormSpec, channels: int) -> Optional[nn.Module]:
    """
    detectron2's ``detectron2.layers.get_norm``: a norm layer for ``channels`` channels from a
    name ("BN", "SyncBN", "FrozenBN", "naiveSyncBN", "nnSyncBN", "LN", ...; "" / None: no norm)
    or a callable ``channels -> nn.Module``; an unknown name raises ValueError. One difference:
    "GN" takes ``gcd(32, channels)`` groups where detectron2 takes 32, which the narrow
    small-target nets (8 or 16 channels) cannot divide.
    """
    if norm is None or norm == "":
        return None
    if norm == "GN":
        return nn.GroupNorm(math.gcd(32, channels), channels)
    from detectron2.layers import get_norm as d2_get_norm

    try:
        return d2_get_norm(norm, channels)
    except KeyError:
        raise ValueError(
            f"Unknown norm {norm!r}: expected 'BN', 'GN', 'SyncBN', 'naiveSyncBN', 'FrozenBN', "
            "'' or a callable."
        ) from None


def conv_norm(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    norm: NormSpec = "BN",
    groups: int = 1,
) -> List[nn.Module]:
    """A k x k convolution ("same" padding; a bias only without a norm) and the norm if any: the
    conv-norm pair of the small-target nets, the SGEM module and the BNSA block."""
    layer_norm = get_norm(norm, out_channels)
    conv = nn.Conv2d(
        in_channels,
        out_channels,
        kernel_size,
        padding=kernel_size // 2,
        groups=groups,
        bias=layer_norm is None,
    )
    return [conv, *([layer_norm] if layer_norm is not None else [])]
