"""
Reference implementations that the library no longer ships, kept to test it against (and for
benchmarks/bench_losses.py).

``ir_mask_loss_plain``: Wang & Ren 2025, eq. 18, as the plain sum of the per-term functions
(``F.binary_cross_entropy_with_logits``, :func:`ir_d2.layers.dice_loss`,
:func:`ir_d2.layers.lovasz_softmax_loss` / :func:`ir_d2.layers.lovasz_hinge_loss`) through
autograd: ``ir_d2.layers.ir_mask_loss``'s path before the fused pass (``_CompoundMaskLoss``) became
its only one. Same signature and return value as ``ir_mask_loss``.
"""

from functools import partial

import torch
import torch.nn.functional as F

from ir_d2.layers import dice_loss, lovasz_hinge_loss, lovasz_softmax_loss

__all__ = ["ir_mask_loss_plain"]


def ir_mask_loss_plain(
    logits,
    targets,
    *,
    bce_weight=1.0,
    dice_weight=1.0,
    lovasz_weight=0.1,
    dice_smooth=1.0,
    lovasz="softmax",
    lovasz_classes="present",
):
    """Eq. 18 term by term: ``(total, parts)`` as ``ir_mask_loss`` returns them (a zero-weight
    term computed without gradient, for ``parts`` only)."""
    if logits.numel() == 0:
        zero = logits.sum() * 0
        return zero, dict.fromkeys(("bce", "dice", "lovasz"), zero.detach())
    targets = targets.to(dtype=torch.float32)
    if lovasz == "softmax":
        lovasz_fn = partial(lovasz_softmax_loss, classes=lovasz_classes)
    else:
        lovasz_fn = lovasz_hinge_loss
    terms = {
        "bce": (bce_weight, lambda: F.binary_cross_entropy_with_logits(logits, targets)),
        "dice": (dice_weight, lambda: dice_loss(logits, targets, dice_smooth)),
        "lovasz": (lovasz_weight, lambda: lovasz_fn(logits, targets)),
    }
    total, parts = None, {}
    for name, (weight, fn) in terms.items():
        if weight == 0:
            with torch.no_grad():
                parts[name] = fn()
            continue
        value = fn()
        parts[name] = value.detach()
        total = weight * value if total is None else total + weight * value
    if total is None:
        total = logits.sum() * 0
    return total, parts
