"""
Norm names of a detectron2 config for ir_d2's blocks (the BNSA block, the small-target nets).
"""

from ir_d2.layers.norm import NormSpec, get_norm

__all__ = ["resolve_norm"]


def resolve_norm(name: str, key: str) -> NormSpec:
    """
    ``name`` (the value of config ``key``), checked to be a norm :func:`ir_d2.layers.get_norm`
    builds, that is one of detectron2's (so "FrozenBN", "naiveSyncBN", ... mean what they mean
    everywhere else in a detectron2 config). "SyncBN" is torch's SyncBatchNorm (CUDA only once
    several processes train); "naiveSyncBN" is detectron2's all-reduce version, which also
    synchronises CPU processes (gloo). An unknown name raises, naming ``key``.
    """
    try:
        get_norm(name, 8)
    except ValueError as e:
        raise ValueError(
            f"{key} = {name!r} is not a norm; use one of 'BN', 'GN', 'SyncBN', 'naiveSyncBN', "
            f"'nnSyncBN', 'FrozenBN' or '' (none). ({e})"
        ) from None
    return name
