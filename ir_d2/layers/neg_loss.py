"""The SIRST-5K negative-sample loss (Lu et al. 2024), pure torch (no detectron2 import)."""

from typing import Sequence, Union

import torch

__all__ = ["negative_sample_loss", "NEG_LOSS_MODES"]

NEG_LOSS_MODES = ("none", "sum", "min", "min_literal")


def negative_sample_loss(
    losses: torch.Tensor, group_ids: Union[torch.Tensor, Sequence[int]], mode: str = "sum"
) -> torch.Tensor:
    """
    Combine per-sample losses over groups of rotated variants of one frame (Lu et al. 2024,
    SIRST-5K, sec. III-D): the negative augmentation (eq. 4) turns a frame into a group of
    variants sharing one label, and the per-sample Soft-IoU losses (eq. 8) of a group become

    - ``"sum"``: their sum, ``L_neg = sum_k L_SoftIoU(f(I_k), Y)`` (eq. 9);
    - ``"min"``: their minimum, Algorithm 2 read as its evident intent (a running minimum), so
      each frame's update follows its variant the net already handles best;
    - ``"min_literal"``: Algorithm 2 read literally: going through the variants in order, the kept
      loss becomes ``L_i`` whenever ``L_i < L_{i-1}`` (each loss compared with its predecessor,
      not with the kept one), so the result is the last variant that is below its predecessor,
      or the first variant if none is: ``[0.9, 0.5, 0.7, 0.6]`` gives 0.6 where ``"min"`` gives
      0.5;
    - ``"none"``: no grouping, the plain mean over all samples. (``IRSTDSegmentor`` with
      ``MODEL.IRSTD.NEG_LOSS: "none"`` does not come here: it uses the batch Soft-IoU, one
      intersection over one union for the whole batch, as DNANet and BasicIRSTD do.)

    The per-group values are then averaged over the groups of the batch, so ``"sum"`` scales with
    the group size as eq. 9 does. The authors' public training script (``train.py``) only has the
    plain Soft-IoU loss (``"none"``).

    Args:
        losses: (N,) per-sample losses.
        group_ids: (N,) integer group of each sample (any values; equal values form a group).
        mode: one of :data:`NEG_LOSS_MODES` (``MODEL.IRSTD.NEG_LOSS``).

    Returns:
        a scalar tensor, differentiable with respect to ``losses`` (for "min", the gradient goes
        to the minimal sample(s) of each group, split equally between ties).
    """
    if mode not in NEG_LOSS_MODES:
        raise ValueError(f"MODEL.IRSTD.NEG_LOSS must be one of {NEG_LOSS_MODES}, got {mode!r}")
    if losses.dim() != 1 or losses.numel() == 0:
        raise ValueError(f"losses must be a non-empty 1-D tensor, got shape {tuple(losses.shape)}")
    group_ids = torch.as_tensor(group_ids, device=losses.device)
    if group_ids.shape != losses.shape:
        raise ValueError(
            f"group_ids {tuple(group_ids.shape)} must match losses {tuple(losses.shape)}"
        )
    if mode == "none":
        return losses.mean()
    groups, inverse = torch.unique(group_ids, return_inverse=True)
    n_groups = groups.numel()
    if mode == "sum":
        per_group = losses.new_zeros(n_groups).index_add(0, inverse, losses)
    elif mode == "min_literal":
        per_group = torch.stack(
            [_algorithm2_literal(losses[inverse == g]) for g in range(n_groups)]
        )
    else:
        per_group = losses.new_full((n_groups,), float("inf")).scatter_reduce(
            0, inverse, losses, reduce="amin", include_self=True
        )
    return per_group.mean()


def _algorithm2_literal(group: torch.Tensor) -> torch.Tensor:
    """SIRST-5K Algorithm 2 as written, on one group's losses in order: the last ``L_i`` with
    ``L_i < L_{i-1}``, else ``L_0``."""
    below = (group[1:] < group[:-1]).nonzero()
    return group[int(below[-1]) + 1] if below.numel() else group[0]
