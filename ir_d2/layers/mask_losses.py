# -*- coding: utf-8 -*-
"""
Mask losses of Wang & Ren, "Attention-Based Mask R-CNN Enhancement for Infrared Image Target
Segmentation", Symmetry 17(7):1099, 2025 (sec. 3.4, eqs. 13-18): Dice (eq. 14), Lovasz-Softmax
(eqs. 15-17; the Lovasz hinge as an option) and their sum with BCE (eq. 18, :func:`ir_mask_loss`).
Pure torch.

They take per-ROI logits of shape (R, ...) and binary targets of the same shape and average over
ROIs; with R == 0 they return ``logits.sum() * 0`` so that the graph still back-propagates.
"""

from typing import Dict, Optional, Tuple

import torch

__all__ = [
    "LOVASZ_CLASSES",
    "LOVASZ_KINDS",
    "dice_loss",
    "ir_mask_loss",
    "lovasz_hinge_loss",
    "lovasz_softmax_loss",
]


def _per_roi(logits: torch.Tensor, targets: torch.Tensor, name: str):
    if logits.shape != targets.shape:
        raise ValueError(
            f"{name}: logits and targets must have the same shape, got "
            f"{tuple(logits.shape)} and {tuple(targets.shape)}"
        )
    r = len(logits)
    return logits.float().reshape(r, -1), targets.float().reshape(r, -1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """
    Dice loss (Wang & Ren 2025, eq. 14), per ROI
    ``1 - (2 sum(p y) + s) / (sum p + sum y + s)`` with ``p = sigmoid(logits)``, then the mean over
    ROIs. ``logits`` and ``targets`` have shape (R, ...); targets are in {0, 1} (soft targets in
    [0, 1] also work). R == 0 gives ``logits.sum() * 0``.
    """
    if logits.numel() == 0:
        return logits.sum() * 0
    x, y = _per_roi(logits, targets, "dice_loss")
    num, den = _dice_fraction(x.sigmoid(), y, smooth)
    return (1 - num / den.clamp(min=1e-7)).mean()  # the clamp: s = 0 and empty masks


def _dice_fraction(p: torch.Tensor, y: torch.Tensor, smooth: float):
    """Per row of the (R, P) probabilities ``p`` and targets ``y``, the numerator
    ``2 sum(p y) + s`` and the unclamped denominator ``sum p + sum y + s`` of eq. 14, each (R,)
    (the dot products as one batched product)."""
    num = 2 * torch.bmm(p.unsqueeze(1), y.unsqueeze(2)).view(len(p)) + smooth
    return num, p.sum(dim=1) + y.sum(dim=1) + smooth


def _lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """
    Row-wise gradient of the Lovasz extension of the Jaccard loss w.r.t. the sorted errors
    (Berman et al., CVPR 2018, eq. 8 / Alg. 1): ``g_k = Delta_J(M_k) - Delta_J(M_{k-1})`` with
    ``M_k`` the first k pixels and ``Delta_J(M) = |M| / |F u M|`` (F the foreground). With
    ``c_k`` the foreground pixels among the first k, ``|F u M_k| = |F| + k - c_k`` (>= 1), so
    ``Delta_J(M_k) = k / (|F| + k - c_k)``; the reference's ``1 - |F \\ M| / |F u M|`` is the
    same value.
    """
    k = torch.arange(1, gt_sorted.shape[1] + 1, device=gt_sorted.device, dtype=gt_sorted.dtype)
    union = gt_sorted.cumsum(dim=1).neg_().add_(k).add_(gt_sorted.sum(dim=1, keepdim=True))
    jaccard = torch.div(k, union, out=union)
    grad = torch.empty_like(jaccard)
    grad[:, :1] = jaccard[:, :1]
    torch.sub(jaccard[:, 1:], jaccard[:, :-1], out=grad[:, 1:])
    return grad


def _lovasz_softmax_grad(gt_sorted: torch.Tensor, classes: str) -> torch.Tensor:
    """
    Row-wise ``w_fg g^fg + w_bg g^bg`` for the binary Lovasz-Softmax (eqs. 16-17): the Jaccard-loss
    increments of the foreground (labels ``gt_sorted``) and of the background (``1 - gt_sorted``),
    weighted by the mean over the classes (``classes``: "present" in the row, or "all"). One
    cumulative sum serves both: with ``c_k`` the foreground pixels among the first k of P and
    ``F = c_P``, ``Delta_fg(M_k) = k / (F + k - c_k)`` and ``Delta_bg(M_k) = k / (P - F + c_k)``;
    as the increments are differences, the weighted sum is the difference of the weighted sum.
    Equal to ``w_fg * _lovasz_grad(y) + w_bg * _lovasz_grad(1 - y)``.
    """
    rows, p = gt_sorted.shape
    k = torch.arange(1, p + 1, device=gt_sorted.device, dtype=gt_sorted.dtype)
    cum = gt_sorted.cumsum(dim=1)
    fg = cum[:, -1:].clone()  # F (a copy: cum is overwritten below)
    if classes == "present":
        w_fg = gt_sorted.amax(dim=1, keepdim=True)  # 1 if the row has a foreground pixel
        w_bg = 1 - gt_sorted.amin(dim=1, keepdim=True)  # 1 if it has a background pixel
        count = w_fg + w_bg
        w_fg, w_bg = w_fg.div_(count), w_bg.div_(count)
    else:
        w_fg = w_bg = 0.5
    union_bg = torch.add(cum, p).sub_(fg)  # P - F + c_k, >= 1
    jaccard = torch.div(k, union_bg, out=union_bg).mul_(w_bg)
    union_fg = cum.neg_().add_(k).add_(fg)  # F + k - c_k, >= 1
    jaccard.add_(torch.div(k, union_fg, out=union_fg).mul_(w_fg))
    grad = torch.empty_like(jaccard)
    grad[:, :1] = jaccard[:, :1]
    torch.sub(jaccard[:, 1:], jaccard[:, :-1], out=grad[:, 1:])
    return grad


# torch's CPU sort radix-sorts 1-D integer tensors of at least 32768 elements (GRAIN_SIZE); rows are
# sorted in blocks of about this many elements, small enough to stay in cache
_SORT_CHUNK = 1 << 16


def _row_blocks(r: int, p: int, device: torch.device):
    """``(r0, r1)`` bounds of blocks of rows of an (R, P) tensor with about ``_SORT_CHUNK``
    elements each (at least 32768, below which torch's CPU sort is a comparison sort; the last
    block takes the remainder) on the CPU, one block elsewhere."""
    blocks = min(r, max(1, (r * p) // _SORT_CHUNK)) if device.type == "cpu" else 1
    step = r // blocks
    return [(i * step, (i + 1) * step if i < blocks - 1 else r) for i in range(blocks)]


def _sort_block(errors: torch.Tensor) -> torch.Tensor:
    """
    The (R * P,) indices into ``errors.view(-1)`` that sort each row of the contiguous float32
    ``errors`` (R, P), all ``>= +0.0``, in decreasing order, row after row; ties keep their index
    order. For such floats the int32 bit pattern keeps the order, so the int64 keys
    ``(row << 32) + ~bits(error)`` sort 1-D (torch's radix sort, several times faster on the CPU
    than a row-wise float sort). Callers sort blocks of ``_row_blocks``: on the CPU their buffers
    stay in cache, about 1.5x faster than one sort of all keys. (Any other bit pattern, e.g. -0.0,
    still sorts within its row, after the others.)
    """
    rows = (torch.arange(errors.shape[0], device=errors.device) << 32).unsqueeze(1) - 1
    keys = torch.sub(rows, errors.view(torch.int32)).view(-1)  # (row << 32) - 1 - bits
    return torch.sort(keys, stable=True, out=(keys, torch.empty_like(keys)))[1]


#: The errors eqs. 15-17 sort: "softmax" (the paper's, on probabilities) or "hinge" (on logits).
LOVASZ_KINDS = ("softmax", "hinge")
#: The classes Lovasz-Softmax averages over per ROI: those "present" in its target, or "all".
LOVASZ_CLASSES = ("present", "all")


def _lovasz_terms(
    f: torch.Tensor,
    y: torch.Tensor,
    out: Optional[torch.Tensor] = None,
    kind: str = "softmax",
    classes: str = "present",
    probs: Optional[torch.Tensor] = None,
):
    """
    Eqs. 15-17 of Wang & Ren 2025 (see :func:`lovasz_softmax_loss`, :func:`lovasz_hinge_loss`) on
    contiguous float32 logits ``f`` and targets ``y`` (R, P): returns the SUM over rows of the
    per-ROI loss and, when ``out`` (an (R, P) buffer) is given, writes into it the derivative of
    that sum w.r.t. ``f``, the increments ``g`` taken as constants (as the reference does).

    Block by block of rows (``_row_blocks``), so every buffer but ``out`` stays small: binarised
    targets ``y_b = [y > 0.5]``; the errors, all ``>= +0.0``, so one sort per block
    (``_sort_block``) orders every row;

    - "hinge": ``m = relu(1 - f s) = relu(1 + f - 2 f y_b)``, ``s = 2 y_b - 1``; the loss is
      ``sum_k m_(k) g_k`` with ``g = _lovasz_grad(y_b sorted)``;
    - "softmax": with ``p = sigmoid(f)`` the foreground probability and ``1 - p`` the
      background's, the errors of both classes are the same ``e = |y_b - p|`` (eq. 15), so one
      sort serves both; the loss is the mean over the classes (``classes``: those present in the
      ROI's target, or both) of ``sum_k e_(k) g^c_k``, ``g^fg = _lovasz_grad(y_b sorted)`` and
      ``g^bg = _lovasz_grad(1 - y_b sorted)`` (eqs. 16-17); ``de/df = sign(p - y_b) p (1 - p)``.
      ``probs``, when given, is ``sigmoid(f)`` already computed (the compound loss shares it);
      it is read, never changed.
    """
    r, n = f.shape
    total = f.new_zeros(())
    for r0, r1 in _row_blocks(r, n, f.device):
        fb, yb = f[r0:r1], y[r0:r1]
        labels = torch.gt(yb, 0.5, out=torch.empty_like(yb))
        if kind == "hinge":
            errors = torch.add(fb, 1).addcmul_(fb, labels, value=-2).clamp_min_(0)
        else:
            prob = fb.sigmoid() if probs is None else probs[r0:r1]
            diff = torch.sub(prob, labels)  # p - y_b: its sign is de/dp
            errors = diff.abs()
        order = _sort_block(errors)
        sorted_labels = labels.view(-1).index_select(0, order).view(r1 - r0, n)
        sorted_errors = errors.view(-1).index_select(0, order)
        if kind == "hinge":
            grad = _lovasz_grad(sorted_labels)
        else:
            grad = _lovasz_softmax_grad(sorted_labels, classes)
        grad = grad.view(-1)
        total += torch.dot(sorted_errors, grad)
        if out is None:
            continue
        if kind == "hinge":  # d m / d f = -s [m > 0], -s = 1 - 2 y_b
            grad.mul_(sorted_errors.sign_()).mul_(sorted_labels.view(-1).mul_(-2).add_(1))
            out[r0:r1].view(-1).scatter_(0, order, grad)
        else:  # d e / d f = sign(p - y_b) p (1 - p), at the pixels
            dest = out[r0:r1]
            dest.view(-1).scatter_(0, order, grad)
            dest.mul_(diff.sign_()).mul_(prob)
            dest.addcmul_(dest, prob, value=-1)  # x p (1 - p), prob left as it is
    return total


class _LovaszLoss(torch.autograd.Function):
    """:func:`lovasz_softmax_loss` / :func:`lovasz_hinge_loss` on (R, P) float32 logits and
    targets, the backward pass being the derivative of ``_lovasz_terms`` (no gradient w.r.t. the
    targets)."""

    @staticmethod
    def forward(ctx, f, y, kind, classes):
        r = f.shape[0]
        grad = torch.empty_like(f) if ctx.needs_input_grad[0] else None
        loss = _lovasz_terms(f, y, out=grad, kind=kind, classes=classes) / r
        if grad is not None:
            ctx.save_for_backward(grad.div_(r))
        return loss

    @staticmethod
    def backward(ctx, g):
        (grad,) = ctx.saved_tensors
        return grad * g, None, None, None


def _check_lovasz(kind: str, classes: str) -> None:
    if kind not in LOVASZ_KINDS:
        raise ValueError(f"MODEL.ROI_MASK_HEAD.LOVASZ must be one of {LOVASZ_KINDS}, got {kind!r}")
    if classes not in LOVASZ_CLASSES:
        raise ValueError(
            f"MODEL.ROI_MASK_HEAD.LOVASZ_CLASSES must be one of {LOVASZ_CLASSES}, got {classes!r}"
        )


def lovasz_softmax_loss(
    logits: torch.Tensor, targets: torch.Tensor, classes: str = "present"
) -> torch.Tensor:
    """
    Lovasz-Softmax loss of Wang & Ren 2025, eqs. 15-17 (Berman, Triki & Blaschko, "The
    Lovasz-Softmax loss", CVPR 2018, eqs. 8-10 and Alg. 1), on binary mask logits, per ROI, then
    the mean over ROIs.

    Per ROI (an m x m mask, P pixels) and class c in {background, foreground}, with
    ``p_i(fg) = sigmoid(f_i)`` and ``p_i(bg) = 1 - sigmoid(f_i)``: the errors are
    ``m_i(c) = 1 - p_i(c)`` where pixel i is of class c, else ``p_i(c)`` (eq. 15); sorted in
    decreasing order, they are weighted by the increments ``g_k(c)`` of the Jaccard loss of class
    c (``_lovasz_grad``, eq. 16) and summed, ``loss(c) = sum_k m_(k)(c) g_k(c)``; the ROI's loss
    is the mean of ``loss(c)`` over the classes (eq. 17). ``classes``: "present" (default, the
    reference implementation's) averages over the classes that occur in the ROI's target; "all"
    over both (an absent class then adds its largest error, ``g = [1, 0, ...]``). The paper says
    "averaged over the classes" without saying which, hence the option
    (``MODEL.ROI_MASK_HEAD.LOVASZ_CLASSES``).

    Targets are binarised at 0.5. Bounded: each ROI's loss is in [0, 1]. Vectorised as
    :func:`lovasz_hinge_loss` (chunked integer sorts, no loop over ROIs, one sort for both
    classes, whose errors are equal) with the gradient written directly, ``g`` a constant (as in
    the reference). R == 0 gives ``logits.sum() * 0``.
    """
    _check_lovasz("softmax", classes)
    if logits.numel() == 0:
        return logits.sum() * 0
    f, y = _per_roi(logits, targets, "lovasz_softmax_loss")
    return _LovaszLoss.apply(f.contiguous(), y.contiguous(), "softmax", classes)


def lovasz_hinge_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """
    Lovasz hinge loss (Berman, Triki & Blaschko, "The Lovasz-Softmax loss", CVPR 2018, eq. 9 with
    the hinge errors of sec. 3.1) on logits, per ROI, then the mean over ROIs (the reference's
    ``per_image=True`` mode with one ROI as one image). Not the paper's eqs. 15-17, which take
    their errors on probabilities (:func:`lovasz_softmax_loss`); kept as an option
    (``MODEL.ROI_MASK_HEAD.LOVASZ: "hinge"``). Unbounded, and 2-7x the softmax form on typical
    ROIs, so it changes the balance that the 0.1 weight of eq. 18 sets.

    Per ROI: signs ``s = 2y - 1``, hinge errors ``m = 1 - f * s``, sorted in decreasing order;
    ``loss = sum_k relu(m_(k)) * g_k`` with ``g`` the Jaccard-loss increments of ``_lovasz_grad``
    (a constant for the gradient, as in the reference). Vectorised (``_lovasz_terms``): the
    (R, P) errors are sorted row-wise by chunked 1-D integer sorts (``_sort_block``), no loop over
    ROIs, and the gradient is written directly (no gradient w.r.t. the targets). An ROI with an
    empty target mask gets ``relu(max error)``, as in the reference. R == 0 gives
    ``logits.sum() * 0``.
    """
    if logits.numel() == 0:
        return logits.sum() * 0
    f, y = _per_roi(logits, targets, "lovasz_hinge_loss")
    return _LovaszLoss.apply(f.contiguous(), y.contiguous(), "hinge", "present")


class _CompoundMaskLoss(torch.autograd.Function):
    """
    Eq. 18 in one pass: ``(total, bce, dice, lovasz)`` from (R, P) float32 logits ``x`` and
    targets ``y``, ``total`` the weighted sum of the terms with a non-zero weight (the only
    differentiable output, no gradient w.r.t. ``y``). The sigmoid is shared by BCE and Dice, the
    derivative of ``total`` is accumulated in place in one buffer during the forward pass
    (backward is one product), and few (R, P) buffers are allocated: fresh large buffers cost
    more than the arithmetic here. The same values as ``F.binary_cross_entropy_with_logits``,
    :func:`dice_loss` and :func:`lovasz_softmax_loss` / :func:`lovasz_hinge_loss`
    (``_lovasz_terms``) up to float rounding: BCE is computed as
    ``sum(relu(x) - x y - log(sigmoid(|x|)))`` with ``sum relu(x) = (sum x + sum |x|) / 2``,
    within ~1e-7 of torch's ``log1p`` form, which is not vectorised on the CPU.
    """

    @staticmethod
    def forward(ctx, x, y, smooth, weights, lovasz_kind, lovasz_classes):
        r, n = x.shape
        w_bce, w_dice, w_lovasz = weights
        need_grad = ctx.needs_input_grad[0]
        p = x.sigmoid()
        buf = x.abs()
        relu_sum = (x.sum() + buf.sum()) / 2
        bce = (relu_sum - torch.dot(x.view(-1), y.view(-1)) - buf.sigmoid_().log_().sum()) / (r * n)
        # eq. 14 as dice_loss, den_raw >= 1e-7 where the clamp passes the gradient
        num, den_raw = _dice_fraction(p, y, smooth)
        den = den_raw.clamp(min=1e-7)
        dice = (1 - num / den).mean()
        out = buf if need_grad and w_lovasz != 0 else None
        lovasz = _lovasz_terms(x, y, out, lovasz_kind, lovasz_classes, probs=p) / r
        total = None
        for weight, value in zip(weights, (bce, dice, lovasz)):
            if weight != 0:
                total = weight * value if total is None else total + weight * value
        if total is None:  # all weights 0: a zero whose gradient is zero
            total = x.new_zeros(())
        if need_grad:
            # d total / dx = w_lovasz d Lovasz + w_bce (p - y) / N + w_dice d Dice / dp p (1 - p),
            # d Dice / dp = (num / den^2 - 2 y / den) / R, per ROI
            grad = buf.mul_(w_lovasz / r) if out is not None else buf.zero_()
            if w_bce != 0:
                grad.add_(p, alpha=w_bce / (r * n)).sub_(y, alpha=w_bce / (r * n))
            if w_dice != 0:
                q = p.addcmul_(p, p, value=-1)  # p (1 - p), in place of p
                grad.addcmul_(q, (num * (den_raw >= 1e-7) / den.square() * (w_dice / r))[:, None])
                grad.addcmul_(q.mul_(y), (-2 * w_dice / r / den)[:, None])
            ctx.save_for_backward(grad)
        parts = (bce, dice, lovasz)
        ctx.mark_non_differentiable(*parts)
        return (total, *parts)

    @staticmethod
    def backward(ctx, g, *_):
        (grad,) = ctx.saved_tensors
        return grad * g, None, None, None, None, None


def ir_mask_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    bce_weight: float = 1.0,
    dice_weight: float = 1.0,
    lovasz_weight: float = 0.1,
    dice_smooth: float = 1.0,
    lovasz: str = "softmax",
    lovasz_classes: str = "present",
) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """
    The mask loss of Wang & Ren 2025, eq. 18:
    ``L_mask = w_bce * BCE + w_dice * Dice + w_lovasz * Lovasz`` (paper: 1, 1, 0.1) on per-ROI
    logits (R, M, M) and binary targets of the same shape. BCE is the mean binary cross-entropy
    over all pixels (eq. 13, as detectron2's ``mask_rcnn_loss``); Dice (eq. 14,
    :func:`dice_loss`) and Lovasz are per-ROI means. ``lovasz``: "softmax" (eqs. 15-17,
    :func:`lovasz_softmax_loss` with ``lovasz_classes``) or "hinge" (:func:`lovasz_hinge_loss`).

    Returns ``(total, parts)``, ``parts`` the detached unweighted ``{"bce", "dice", "lovasz"}``
    values (for logging). A term with weight 0 is left out of ``total`` (it is still computed,
    for ``parts``); all weights 0 give a zero that back-propagates.

    The three terms come from one fused pass (``_CompoundMaskLoss``: shared sigmoid, the gradient
    written during the forward pass): equal to ``F.binary_cross_entropy_with_logits``,
    :func:`dice_loss` and the Lovasz function up to float32 rounding (a test compares value and
    gradient with their sum). The loss has no gradient w.r.t. ``targets``, which must not require
    one. R == 0 gives ``logits.sum() * 0`` and zero parts.
    """
    _check_lovasz(lovasz, lovasz_classes)
    if targets.requires_grad:
        raise ValueError("ir_mask_loss: targets must not require grad (no gradient w.r.t. them)")
    if logits.numel() == 0:
        zero = logits.sum() * 0
        return zero, dict.fromkeys(("bce", "dice", "lovasz"), zero.detach())
    x, y = _per_roi(logits, targets, "ir_mask_loss")
    weights = (float(bce_weight), float(dice_weight), float(lovasz_weight))
    total, *values = _CompoundMaskLoss.apply(
        x.contiguous(), y.contiguous(), float(dice_smooth), weights, lovasz, lovasz_classes
    )
    return total, dict(zip(("bce", "dice", "lovasz"), values))
