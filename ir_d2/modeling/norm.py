"""
Norm names of a detectron2 config for ir_d2's pure-torch blocks (the BNSA block, the small-target
nets), which take a name or a ``channels -> nn.Module`` callable (:func:`ir_d2.layers.get_norm`).
"""

import functools

from detectron2.layers import get_norm as d2_get_norm

from ir_d2.layers.norm import NormSpec

__all__ = ["resolve_norm"]

#: names ir_d2's pure-torch get_norm builds itself ("GN" with a group count that divides the
#: channels, where detectron2's always uses 32 groups)
_PURE = ("", "BN", "GN", "SyncBN")


def resolve_norm(name: str, key: str) -> NormSpec:
    """
    ``name`` (the value of config ``key``) as a norm for ir_d2's blocks: "", "BN", "GN" and
    "SyncBN" as ir_d2 builds them; every other detectron2 norm ("naiveSyncBN", "nnSyncBN",
    "FrozenBN", ...) through detectron2's own ``get_norm``, so it means what it means everywhere
    else in a detectron2 config. "SyncBN" is torch's SyncBatchNorm (CUDA only once several
    processes train); "naiveSyncBN" is detectron2's all-reduce version, which also synchronises
    CPU processes (gloo). An unknown name raises, naming ``key``.
    """
    if name in _PURE:
        return name
    try:
        d2_get_norm(name, 8)
    except (KeyError, ValueError) as e:
        raise ValueError(
            f"{key} = {name!r} is not a norm; use one of 'BN', 'GN', 'SyncBN', 'naiveSyncBN', "
            f"'nnSyncBN', 'FrozenBN' or '' (none). ({e})"
        ) from None
    return functools.partial(d2_get_norm, name)
