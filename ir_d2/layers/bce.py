"""Binary cross-entropy for small-target segmentation, pure torch (no detectron2 import)."""

from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["binary_cross_entropy_loss"]


def binary_cross_entropy_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    valid: Optional[torch.Tensor] = None,
    per_image: bool = False,
) -> torch.Tensor:
    """
    Binary cross-entropy averaged over the pixels: UIU-Net's loss (Wu et al., TIP 2022, sec.
    III-D; the authors' ``muti_bce_loss_fusion`` applies ``nn.BCELoss(size_average=True)`` to each
    sigmoid output), computed from the logits (``binary_cross_entropy_with_logits``, the same
    value without the sigmoid's saturation)::

        loss = -mean(t * log(sigmoid(x)) + (1 - t) * log(1 - sigmoid(x)))

    Args:
        logits: (N, 1, H, W) or (N, H, W) raw scores.
        targets: as many elements as ``logits``, values in [0, 1].
        valid: optional mask of the pixels that count (0 on ImageList's padding): the mean runs
            over the valid pixels only.
        per_image: False: the mean over every valid pixel of the batch (the code's); True: an (N,)
            tensor of per-image means (for the SIRST-5K negative-sample loss).

    Returns:
        a float32 scalar, or an (N,) tensor with ``per_image``.
    """
    if targets.numel() != logits.numel():
        raise ValueError(
            f"binary_cross_entropy_loss: targets {tuple(targets.shape)} do not match logits "
            f"{tuple(logits.shape)}."
        )
    logits = logits.float()
    targets = targets.reshape(logits.shape).to(logits.dtype)
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    if valid is None:
        valid = torch.ones_like(loss)
    elif valid.numel() != logits.numel():
        raise ValueError(
            f"binary_cross_entropy_loss: valid {tuple(valid.shape)} does not match logits "
            f"{tuple(logits.shape)}."
        )
    valid = valid.reshape(logits.shape).to(loss.dtype)
    dims = tuple(range(1, loss.dim())) if per_image else tuple(range(loss.dim()))
    return (loss * valid).sum(dim=dims) / valid.sum(dim=dims).clamp(min=1.0)
