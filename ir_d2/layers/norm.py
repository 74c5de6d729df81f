"""Norm layers by name, in pure torch (no detectron2 import)."""

import math
from typing import Callable, List, Optional, Union

from torch import nn

__all__ = ["get_norm", "conv_norm"]

NormSpec = Union[str, Callable[[int], Optional[nn.Module]], None]


def get_norm(norm: NormSpec, channels: int) -> Optional[nn.Module]:
    """
    Build a 2-D norm layer for ``channels`` channels.

    Args:
        norm: "BN", "GN" (32 groups, or the largest divisor of ``channels`` below 32, as detectron2
            uses 32), "SyncBN", "" / None (no norm, returns None), or a callable
            ``channels -> nn.Module`` (for instance ``functools.partial(detectron2.layers.get_norm,
            "FrozenBN")``), used as is.
    """
    if norm is None or norm == "":
        return None
    if callable(norm):
        return norm(channels)
    if norm == "BN":
        return nn.BatchNorm2d(channels)
    if norm == "GN":
        return nn.GroupNorm(math.gcd(32, channels), channels)
    if norm == "SyncBN":
        return nn.SyncBatchNorm(channels)
    raise ValueError(f"Unknown norm {norm!r}: expected 'BN', 'GN', 'SyncBN', '' or a callable.")


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
