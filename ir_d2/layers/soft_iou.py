"""Soft-IoU loss for binary small-target segmentation, pure torch (no detectron2 import)."""

from typing import Optional

import torch

__all__ = ["soft_iou_loss"]


def soft_iou_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    smooth: float = 1.0,
    valid: Optional[torch.Tensor] = None,
    per_image: bool = False,
) -> torch.Tensor:
    """
    Soft-IoU loss, SGEM (Deng & Yang 2025) eq. 4 = SIRST-5K (Lu et al. 2024) eq. 8::

        p = sigmoid(logits)
        loss = 1 - (sum(p * t) + s) / (sum(p) + sum(t) - sum(p * t) + s)

    The sums run over the whole batch (every pixel of every image), as in DNANet's and
    BasicIRSTD's ``SoftIoULoss``, not per image: a batch whose frames are all empty still gives a
    loss that pushes the probabilities down, and the smoothing ``s`` keeps it finite.

    Args:
        logits: (N, 1, H, W) or (N, H, W) raw scores (before the sigmoid).
        targets: the same number of elements as ``logits``, values in [0, 1] (a {0, 1} mask or a
            soft one); reshaped to ``logits``' shape.
        smooth: s > 0 (``MODEL.IRSTD.SOFT_IOU_SMOOTH``).
        valid: optional mask of the pixels that count, same number of elements; pixels where it
            is 0 (the padding that ImageList adds) are left out of every sum.
        per_image: False: one loss over the whole batch (the papers' form). True: the sums run
            over each image separately and an (N,) tensor of per-image losses is returned (what
            the SIRST-5K negative-sample loss combines over a group of variants).

    Returns:
        a scalar float32 tensor in [0, 1) (whatever the logits' dtype, so mixed precision sums in
        float32), or an (N,) tensor with ``per_image``.
    """
    if smooth <= 0:
        raise ValueError(
            f"soft_iou_loss needs smooth > 0 (MODEL.IRSTD.SOFT_IOU_SMOOTH), got {smooth}."
        )
    if targets.numel() != logits.numel():
        raise ValueError(
            f"soft_iou_loss: targets {tuple(targets.shape)} do not match logits "
            f"{tuple(logits.shape)}."
        )
    probs = torch.sigmoid(logits.float())  # float32 under autocast too: sums over whole batches
    targets = targets.reshape(logits.shape).to(probs.dtype)
    if valid is not None:
        if valid.numel() != logits.numel():
            raise ValueError(
                f"soft_iou_loss: valid {tuple(valid.shape)} does not match logits "
                f"{tuple(logits.shape)}."
            )
        valid = valid.reshape(logits.shape).to(probs.dtype)
        probs = probs * valid
        targets = targets * valid
    dims = tuple(range(1, probs.dim())) if per_image else tuple(range(probs.dim()))
    inter = (probs * targets).sum(dim=dims)
    union = probs.sum(dim=dims) + targets.sum(dim=dims) - inter
    return 1.0 - (inter + smooth) / (union + smooth)
