"""Norm layers by name, in pure torch (no detectron2 import)."""

import math
from typing import Callable, Optional, Union

from torch import nn

__all__ = ["get_norm"]

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
