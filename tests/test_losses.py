"""Box and mask losses of the Mask R-CNN paper: ir_d2.layers.losses."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from detectron2.layers import ciou_loss as d2_ciou_loss
from hypothesis import given, settings
from hypothesis import strategies as st

from ir_d2.layers import (
    IOU_LOSS_TYPES,
    ciou_loss,
    dice_loss,
    eiou_loss,
    focal_ciou_loss,
    focal_eiou_loss,
    focal_iou,
    focal_siou_loss,
    iou_box_loss,
    ir_mask_loss,
    lovasz_hinge_loss,
    lovasz_softmax_loss,
    siou_loss,
)

BOX_LOSSES = {
    "ciou": ciou_loss,
    "siou": siou_loss,
    "eiou": eiou_loss,
    "focal_ciou": focal_ciou_loss,
    "focal_siou": focal_siou_loss,
    "focal_eiou": focal_eiou_loss,
}


def _random_boxes(n, seed, lo=1.0, hi=40.0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 60
    wh = lo + torch.rand(n, 2, generator=g) * (hi - lo)
    return torch.cat([xy, xy + wh], dim=1)


# ----------------------------------------------------------------------------- independent refs
def _geometry(p, g):
    """Plain-Python float64 geometry of one pair of XYXY boxes."""
    w, h, wg, hg = p[2] - p[0], p[3] - p[1], g[2] - g[0], g[3] - g[1]
    iw = max(0.0, min(p[2], g[2]) - max(p[0], g[0]))
    ih = max(0.0, min(p[3], g[3]) - max(p[1], g[1]))
    iou = iw * ih / (w * h + wg * hg - iw * ih)
    dx = (g[0] + g[2]) / 2 - (p[0] + p[2]) / 2
    dy = (g[1] + g[3]) / 2 - (p[1] + p[3]) / 2
    cw = max(p[2], g[2]) - min(p[0], g[0])
    ch = max(p[3], g[3]) - min(p[1], g[1])
    return w, h, wg, hg, iou, dx, dy, cw, ch


def _siou_ref(p, g):
    """SIoU exactly as Gevorgyan 2022 / Wang & Ren eq. 7 write it: x = |dy| / sigma."""
    w, h, wg, hg, iou, dx, dy, cw, ch = _geometry(p, g)
    sigma = math.hypot(dx, dy)
    lam = 1 - 2 * math.sin(math.asin(abs(dy) / sigma) - math.pi / 4) ** 2
    gamma = 2 - lam
    delta = sum(1 - math.exp(-gamma * r) for r in ((dx / cw) ** 2, (dy / ch) ** 2))
    omega = sum(
        (1 - math.exp(-o)) ** 4 for o in (abs(w - wg) / max(w, wg), abs(h - hg) / max(h, hg))
    )
    return 1 - iou + (delta + omega) / 2, iou


def _eiou_ref(p, g):
    w, h, wg, hg, iou, dx, dy, cw, ch = _geometry(p, g)
    loss = 1 - iou + (dx**2 + dy**2) / (cw**2 + ch**2)
    return loss + (w - wg) ** 2 / cw**2 + (h - hg) ** 2 / ch**2, iou


def _ref(fn, boxes1, boxes2):
    out = [fn(p, g) for p, g in zip(boxes1.double().tolist(), boxes2.double().tolist())]
    f64 = torch.float64
    return torch.tensor([o[0] for o in out], dtype=f64), torch.tensor(
        [o[1] for o in out], dtype=f64
    )


# ----------------------------------------------------------------------------- box closed forms
@pytest.mark.parametrize("name", list(BOX_LOSSES))
def test_identical_boxes_give_zero(name):
    boxes = _random_boxes(32, seed=1)
    loss = BOX_LOSSES[name](boxes, boxes.clone())
    assert loss.shape == (32,)
    torch.testing.assert_close(loss, torch.zeros(32), atol=1e-5, rtol=0)


def test_siou_hand_computed_cases():
    pred = torch.tensor([[0.0, 0, 2, 2], [0, 0, 2, 2], [0, 0, 4, 2]])
    gt = torch.tensor([[1.0, 1, 3, 3], [2, 0, 4, 2], [1, 0, 3, 2]])
    expected = torch.tensor(
        [
            # 45 deg: Lambda = 1, gamma = 1, C = 3x3, IoU = 1/7, equal shapes
            1 - 1 / 7 + (1 - math.exp(-1 / 9)),
            # horizontal: Lambda = 0, gamma = 2, rho_x = (2/4)^2, IoU = 0
            1 + (1 - math.exp(-0.5)) / 2,
            # coincident centres: Delta = 0, omega_w = 2/4, IoU = 1/2
            0.5 + (1 - math.exp(-0.5)) ** 4 / 2,
        ]
    )
    torch.testing.assert_close(siou_loss(pred, gt), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("base,ref", [("siou", _siou_ref), ("eiou", _eiou_ref)])
def test_siou_eiou_match_independent_formulas(base, ref):
    b1, b2 = _random_boxes(200, seed=2), _random_boxes(200, seed=3)
    expected, iou = _ref(ref, b1, b2)
    torch.testing.assert_close(BOX_LOSSES[base](b1, b2).double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        BOX_LOSSES["focal_" + base](b1, b2, gamma=0.5).double(),
        iou.sqrt() * expected,
        rtol=1e-5,
        atol=1e-5,
    )


def test_ciou_matches_detectron2():
    b1, b2 = _random_boxes(200, seed=4), _random_boxes(200, seed=5)
    expected = d2_ciou_loss(b1, b2)
    torch.testing.assert_close(ciou_loss(b1, b2), expected, rtol=1e-5, atol=1e-5)
    iou = torch.tensor([_geometry(p, g)[4] for p, g in zip(b1.tolist(), b2.tolist())])
    torch.testing.assert_close(
        focal_ciou_loss(b1, b2, gamma=0.5), iou.sqrt() * expected, rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("name", ["focal_siou", "focal_ciou", "focal_eiou"])
def test_focal_weight_is_detached(name):
    b1 = _random_boxes(64, seed=6).requires_grad_()
    b2 = _random_boxes(64, seed=7)
    base = BOX_LOSSES[name.removeprefix("focal_")]
    iou = torch.tensor([_geometry(p, g)[4] for p, g in zip(b1.tolist(), b2.tolist())])
    weight = iou.float() ** 0.3
    (g_focal,) = torch.autograd.grad(BOX_LOSSES[name](b1, b2, gamma=0.3).sum(), b1)
    (g_base,) = torch.autograd.grad((weight * base(b1, b2)).sum(), b1)
    torch.testing.assert_close(g_focal, g_base, rtol=1e-4, atol=1e-6)
    # gamma = 0 is the plain loss
    torch.testing.assert_close(BOX_LOSSES[name](b1, b2, gamma=0.0), base(b1, b2))


def test_focal_iou_function():
    loss = torch.tensor([2.0, 3.0, 1.0], requires_grad=True)
    iou = torch.tensor([0.25, 1.0, 0.0], requires_grad=True)
    out = focal_iou(loss, iou, gamma=0.5)
    torch.testing.assert_close(out, torch.tensor([1.0, 3.0, 0.0]))
    out.sum().backward()
    assert iou.grad is None
    torch.testing.assert_close(loss.grad, torch.tensor([0.5, 1.0, 0.0]))
    with pytest.raises(ValueError, match="gamma"):
        focal_iou(loss, iou, gamma=-1.0)


def test_reductions_dispatch_and_errors():
    b1, b2 = _random_boxes(10, seed=8), _random_boxes(10, seed=9)
    for name in IOU_LOSS_TYPES:
        per_box = iou_box_loss(name, b1, b2)
        torch.testing.assert_close(iou_box_loss(name, b1, b2, reduction="sum"), per_box.sum())
        torch.testing.assert_close(iou_box_loss(name, b1, b2, reduction="mean"), per_box.mean())
        torch.testing.assert_close(per_box, BOX_LOSSES[name](b1, b2))
    empty = torch.zeros(0, 4, requires_grad=True)
    for fn in BOX_LOSSES.values():
        for reduction in ("sum", "mean"):
            out = fn(empty, empty.detach(), reduction=reduction)
            assert out.item() == 0.0
            out.backward()
    with pytest.raises(ValueError, match="reduction"):
        siou_loss(b1, b2, reduction="max")
    with pytest.raises(ValueError, match="same shape"):
        eiou_loss(b1, b2[:3])
    with pytest.raises(ValueError, match="unknown IoU box loss"):
        iou_box_loss("giou", b1, b2)


def test_box_losses_rise_with_misalignment():
    gt = torch.tensor([[10.0, 10, 30, 30]]).repeat(5, 1)
    shift = torch.tensor([0.0, 2, 5, 10, 20])[:, None]
    pred = gt + torch.cat([shift, shift * 0.5, shift, shift * 0.5], dim=1)
    for name in ("ciou", "siou", "eiou"):  # the focal ones fall back to 0 as IoU -> 0
        values = BOX_LOSSES[name](pred, gt)
        assert (values[1:] > values[:-1]).all(), name


# ----------------------------------------------------------------------------- box edge cases
_coord = st.floats(0.0, 5000.0, allow_nan=False, width=32)
_size = st.one_of(
    st.just(0.0), st.floats(0.0, 2.0**-10, width=32), st.floats(0.0, 5000.0, width=32)
)


@st.composite
def _box_pairs(draw):
    """A predicted and a GT box: zero-width/-height, tiny, huge, identical, coincident centres."""
    x, y, w, h = draw(_coord), draw(_coord), draw(_size), draw(_size)
    pred = [x, y, x + w, y + h]
    kind = draw(st.sampled_from(["free", "identical", "same_centre"]))
    if kind == "identical":
        gt = list(pred)
    else:
        wg, hg = draw(_size), draw(_size)
        cx, cy = (x + w / 2, y + h / 2) if kind == "same_centre" else (draw(_coord), draw(_coord))
        gt = [cx - wg / 2, cy - hg / 2, cx + wg / 2, cy + hg / 2]
    return pred, gt


@settings(max_examples=60, deadline=None)
@given(
    pairs=st.lists(_box_pairs(), min_size=1, max_size=6),
    dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]),
)
def test_box_losses_finite_on_degenerate_boxes(pairs, dtype):
    pred = torch.tensor([p for p, _ in pairs], dtype=dtype, requires_grad=True)
    gt = torch.tensor([g for _, g in pairs], dtype=dtype)
    for name, fn in BOX_LOSSES.items():
        loss = fn(pred, gt)
        assert loss.dtype == torch.float32
        assert torch.isfinite(loss).all(), (name, pairs)
        assert (loss >= -1e-6).all(), (name, pairs)
        (grad,) = torch.autograd.grad(loss.sum(), pred)
        assert torch.isfinite(grad).all(), (name, pairs)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_sub_pixel_boxes_keep_a_finite_low_precision_gradient(dtype):
    # zero-size boxes 6e-8 apart: with eps 1e-7 the distance terms' gradient (~1e7) overflows
    # float16; the dtype's machine epsilon as eps keeps it finite
    pred = torch.zeros(1, 4, dtype=dtype, requires_grad=True)
    gt = torch.tensor([[0.0, 5.96e-8, 0.0, 5.96e-8]], dtype=dtype)
    for name, fn in BOX_LOSSES.items():
        (grad,) = torch.autograd.grad(fn(pred, gt).sum(), pred)
        assert torch.isfinite(grad).all(), name
        pred32 = pred.detach().float().requires_grad_()
        (grad32,) = torch.autograd.grad(fn(pred32, gt.float()).sum(), pred32)
        assert torch.isfinite(grad32).all(), name  # float32 keeps eps 1e-7: a large, finite grad
    # the float32 gradient itself is too large for float16: the reason for the raised eps
    pred32 = torch.zeros(1, 4, requires_grad=True)
    (grad32,) = torch.autograd.grad(siou_loss(pred32, gt.float()).sum(), pred32)
    assert grad32.abs().max() > torch.finfo(torch.float16).max


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_box_losses_half_precision(dtype):
    b1, b2 = _random_boxes(50, seed=10), _random_boxes(50, seed=11)
    # far-apart centres and large sizes that overflow fp16 squares (300^2 * 2 > 65504)
    b1 = torch.cat([b1, torch.tensor([[0.0, 0, 300, 300], [0, 0, 0, 0]])])
    b2 = torch.cat([b2, torch.tensor([[500.0, 500, 800, 900], [0, 0, 0, 0]])])
    for name, fn in BOX_LOSSES.items():
        x = b1.to(dtype).requires_grad_()
        low = fn(x, b2.to(dtype))
        # the same rounded inputs in float32, with the eps a low-precision input gets
        eps = max(1e-7, torch.finfo(dtype).eps)
        full = fn(b1.to(dtype).float(), b2.to(dtype).float(), eps=eps)
        torch.testing.assert_close(low, full, rtol=0, atol=0)
        low.sum().backward()
        assert torch.isfinite(x.grad).all(), name


# ----------------------------------------------------------------------------- dice
def test_dice_closed_form_and_reference():
    # logits 0 -> p = 1/2; an all-ones target of P pixels: 1 - (P + s) / (1.5 P + s)
    p, s = 49, 1.0
    out = dice_loss(torch.zeros(3, 7, 7), torch.ones(3, 7, 7), smooth=s)
    torch.testing.assert_close(out, torch.tensor(1 - (p + s) / (1.5 * p + s)))
    # near-perfect prediction -> ~0; perfectly wrong -> ~1
    t = (torch.rand(4, 9, 9, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    assert dice_loss((2 * t - 1) * 50, t).item() < 1e-3
    assert dice_loss((1 - 2 * t) * 50, t, smooth=1e-6).item() > 0.999
    # against numpy, ROI by ROI
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(6, 5, 5)) * 3
    targets = (rng.random((6, 5, 5)) > 0.6).astype(np.float64)
    prob = 1 / (1 + np.exp(-logits))
    ref = np.mean(
        [1 - (2 * (a * b).sum() + 1) / (a.sum() + b.sum() + 1) for a, b in zip(prob, targets)]
    )
    got = dice_loss(torch.from_numpy(logits).float(), torch.from_numpy(targets))
    assert got.item() == pytest.approx(ref, rel=1e-5)


# ----------------------------------------------------------------------------- lovasz
def _lovasz_loop(logits, targets):
    """Berman et al.'s definition written directly: per ROI, the Lovasz extension of the Jaccard
    loss Delta_J(M) = |M| / |F u M| at the hinge errors, pixel by pixel in decreasing error."""
    losses = []
    for f, y in zip(logits.reshape(len(logits), -1), targets.reshape(len(targets), -1)):
        foreground = set(np.flatnonzero(y.detach().numpy() > 0.5).tolist())
        errors = 1 - f * (2 * y - 1)
        loss, previous, mispredicted = f.sum() * 0, 0.0, set()
        for k in torch.argsort(errors.detach(), descending=True).tolist():
            mispredicted.add(k)
            jaccard = len(mispredicted) / len(foreground | mispredicted)
            loss = loss + torch.relu(errors[k]) * (jaccard - previous)
            previous = jaccard
        losses.append(loss)
    return torch.stack(losses).mean()


def test_lovasz_matches_direct_loop_values_and_gradients():
    g = torch.Generator().manual_seed(3)
    logits = (torch.randn(7, 6, 6, generator=g) * 2).double().requires_grad_()
    targets = (torch.rand(7, 6, 6, generator=g) > 0.6).double()
    targets[0] = 0  # an empty mask
    targets[1] = 1  # a full mask
    ours = lovasz_hinge_loss(logits, targets)
    ref = _lovasz_loop(logits, targets)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    (g_ours,) = torch.autograd.grad(ours, logits)
    (g_ref,) = torch.autograd.grad(_lovasz_loop(logits, targets), logits)
    torch.testing.assert_close(g_ours.double(), g_ref, rtol=1e-5, atol=1e-6)


def _lovasz_softmax_eqs(logits, targets, classes="present"):
    """Wang & Ren eqs. 15-17 written from the paper in float64 NumPy, one ROI and one class at a
    time: errors m_i(c) = 1 - p_i(c) on the pixels of class c, p_i(c) elsewhere (eq. 15), with
    p(fg) = sigmoid(f), p(bg) = 1 - p(fg); sorted decreasingly; weighted by the increments of the
    Jaccard loss Delta(M) = 1 - |F minus M| / |F u M| of the first k pixels (eq. 16); the mean
    over the classes (eq. 17: present ones, or both), then over the ROIs."""
    logits = np.asarray(logits, np.float64).reshape(len(logits), -1)
    targets = np.asarray(targets).reshape(len(targets), -1) > 0.5
    per_roi = []
    for f, y in zip(logits, targets):
        p_fg = 1 / (1 + np.exp(-f))
        values = []
        for p_c, is_c in ((1 - p_fg, ~y), (p_fg, y)):
            if classes == "present" and not is_c.any():
                continue
            m = np.where(is_c, 1 - p_c, p_c)
            order = np.argsort(-m, kind="stable")
            deltas = []
            for k in range(len(m) + 1):
                taken = np.zeros(len(m), bool)
                taken[order[:k]] = True
                union = (is_c | taken).sum()
                deltas.append(1 - (is_c & ~taken).sum() / union if union else 0.0)
            values.append(float(np.dot(m[order], np.diff(deltas))))
        per_roi.append(np.mean(values))
    return float(np.mean(per_roi))


def _lovasz_softmax_autograd(logits, targets, classes="present"):
    """The same loss as a per-ROI torch loop (float64) whose increments are constants, for the
    gradient."""
    losses = []
    for f, t in zip(logits.reshape(len(logits), -1), targets.reshape(len(targets), -1)):
        y = (t > 0.5).double()
        p = torch.sigmoid(f)
        values = []
        for p_c, y_c in ((1 - p, 1 - y), (p, y)):
            if classes == "present" and y_c.sum() == 0:
                continue
            m = (y_c - p_c).abs()
            order = torch.argsort(m.detach(), descending=True, stable=True)
            ys = y_c[order]
            k = torch.arange(1, len(ys) + 1, dtype=torch.float64)
            jaccard = k / (ys.sum() + k - ys.cumsum(0))
            grad = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
            values.append((m[order] * grad).sum())
        losses.append(torch.stack(values).mean())
    return torch.stack(losses).mean()


@pytest.mark.parametrize("classes", ["present", "all"])
def test_lovasz_softmax_equals_eqs_15_to_17_and_its_gradient(classes):
    g = torch.Generator().manual_seed(11)
    logits = torch.randn(9, 7, 7, generator=g) * 3
    targets = (torch.rand(9, 7, 7, generator=g) > 0.55).float()
    targets[0] = 0  # background only: one class present
    targets[1] = 1  # foreground only
    ours = lovasz_softmax_loss(logits.clone().requires_grad_(), targets, classes=classes)
    ref = _lovasz_softmax_eqs(logits.numpy(), targets.numpy(), classes)
    assert ours.item() == pytest.approx(ref, abs=1e-6)
    x = logits.clone().requires_grad_()
    (g_ours,) = torch.autograd.grad(lovasz_softmax_loss(x, targets, classes=classes), x)
    x64 = logits.double().requires_grad_()
    (g_ref,) = torch.autograd.grad(_lovasz_softmax_autograd(x64, targets.double(), classes), x64)
    torch.testing.assert_close(g_ours.double(), g_ref, rtol=1e-5, atol=1e-7)


def test_lovasz_softmax_is_bounded_and_smaller_than_the_hinge():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(64, 28, 28, generator=g) * 4
    targets = torch.zeros(64, 28, 28)
    targets[:, 6:22, 8:20] = 1  # a typical ROI: a blob in the middle
    soft = lovasz_softmax_loss(logits, targets)
    hinge = lovasz_hinge_loss(logits, targets)
    assert 0 <= soft.item() <= 1 and hinge.item() > 2 * soft.item()
    # closed forms: a perfect, confident prediction costs ~0; a fully wrong one ~1 per class
    perfect = (2 * targets - 1) * 30
    assert lovasz_softmax_loss(perfect, targets).item() < 1e-6
    assert lovasz_softmax_loss(-perfect, targets).item() == pytest.approx(1.0, abs=1e-5)
    # all-background target with "all": the foreground class adds its largest error, max p
    zero_t = torch.zeros(1, 2, 2)
    x = torch.tensor([[[0.0, 1.0], [-1.0, -2.0]]])
    p = torch.sigmoid(x).flatten()
    fg_all = p.max()
    bg = _lovasz_softmax_eqs(x.numpy(), zero_t.numpy(), "present")
    got = lovasz_softmax_loss(x, zero_t, classes="all").item()
    assert got == pytest.approx((bg + fg_all.item()) / 2, abs=1e-6)
    assert lovasz_softmax_loss(x, zero_t).item() == pytest.approx(bg, abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 5),
    st.integers(1, 9),
    st.floats(0.0, 20.0),
    st.integers(0, 2**16),
    st.sampled_from(["present", "all"]),
)
def test_lovasz_softmax_edge_cases_are_finite_and_in_range(r, side, scale, seed, classes):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(r, side, side, generator=g) * scale).requires_grad_()
    targets = (torch.rand(r, side, side, generator=g) > 0.5).float()
    loss = lovasz_softmax_loss(logits, targets, classes=classes)
    (grad,) = torch.autograd.grad(loss, logits)
    assert torch.isfinite(loss) and 0.0 <= loss.item() <= 1.0 + 1e-6
    assert torch.isfinite(grad).all()
    ref = _lovasz_softmax_eqs(logits.detach().numpy(), targets.numpy(), classes)
    assert loss.item() == pytest.approx(ref, abs=1e-5)


def test_block_sort_orders_every_row():
    """_sort_block (non-negative float32 errors, as _lovasz_hinge_terms passes) against torch's
    stable row-wise float sort: the same indices, ties included."""
    from ir_d2.layers.losses import _sort_block

    g = torch.Generator().manual_seed(8)
    scale = 10.0 ** torch.randint(-6, 6, (9, 1), generator=g)
    errors = (torch.randn(9, 50, generator=g) * scale).clamp_min(0)  # half of them tie at 0
    errors[1, :6] = torch.tensor([float("inf"), 3.4e38, 1e-40, 1e-45, 1.0, 1.0])  # subnormals
    errors[2] = 1.5  # a constant row
    perm = _sort_block(errors).view(9, 50) - torch.arange(9)[:, None] * 50
    assert torch.equal(perm, errors.sort(dim=1, descending=True, stable=True).indices)


def test_lovasz_closed_forms():
    # one pixel: the plain hinge relu(1 - f s)
    f = torch.tensor([[0.3], [-2.0], [0.5], [3.0]])
    y = torch.tensor([[1.0], [0.0], [0.0], [1.0]])
    torch.testing.assert_close(lovasz_hinge_loss(f, y), torch.tensor([0.7, 0.0, 1.5, 0.0]).mean())
    # margins >= 1 everywhere: zero loss
    t = (torch.rand(5, 8, 8, generator=torch.Generator().manual_seed(4)) > 0.5).float()
    assert lovasz_hinge_loss((2 * t - 1) * 1.5, t).item() == 0.0
    # invariant to a permutation of the pixels of each ROI
    logits = torch.randn(5, 64, generator=torch.Generator().manual_seed(5))
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(
        lovasz_hinge_loss(logits, t.reshape(5, 64)),
        lovasz_hinge_loss(logits[:, perm], t.reshape(5, 64)[:, perm]),
    )


def test_empty_roi_batches_back_propagate():
    for fn in (dice_loss, lovasz_hinge_loss, lambda x, y: ir_mask_loss(x, y)[0]):
        logits = torch.zeros(0, 28, 28, requires_grad=True)
        out = fn(logits, torch.zeros(0, 28, 28))
        assert out.item() == 0.0
        out.backward()
        assert logits.grad.shape == logits.shape
    _, parts = ir_mask_loss(torch.zeros(0, 28, 28), torch.zeros(0, 28, 28))
    assert [v.item() for v in parts.values()] == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="same shape"):
        dice_loss(torch.zeros(2, 4, 4), torch.zeros(2, 4, 5))


@settings(max_examples=40, deadline=None)
@given(
    scale=st.sampled_from([0.0, 1.0, 30.0, 1e4]),
    density=st.sampled_from([0.0, 0.3, 1.0]),
    seed=st.integers(0, 1000),
    dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]),
)
def test_mask_losses_finite(scale, density, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(4, 7, 7, generator=g) * scale).to(dtype).requires_grad_()
    targets = (torch.rand(4, 7, 7, generator=g) < density).float()
    total, parts = ir_mask_loss(logits.float(), targets)
    for value in [total, *parts.values()]:
        assert torch.isfinite(value)
    for fn in (dice_loss, lovasz_hinge_loss):
        out = fn(logits, targets)
        assert torch.isfinite(out) and 0 <= out.item()
        (grad,) = torch.autograd.grad(out, logits)
        assert torch.isfinite(grad).all()


# ----------------------------------------------------------------------------- compound loss
def test_ir_mask_loss_combines_the_three_terms():
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(10, 14, 14, generator=g, requires_grad=True)
    targets = (torch.rand(10, 14, 14, generator=g) > 0.5).float()
    bce = F.binary_cross_entropy_with_logits(logits, targets)
    dice, lov = dice_loss(logits, targets, 2.0), lovasz_softmax_loss(logits, targets)
    total, parts = ir_mask_loss(
        logits, targets, bce_weight=0.5, dice_weight=2.0, lovasz_weight=0.1, dice_smooth=2.0
    )
    torch.testing.assert_close(total, 0.5 * bce + 2.0 * dice + 0.1 * lov)
    torch.testing.assert_close(torch.stack(list(parts.values())), torch.stack([bce, dice, lov]))
    assert not any(p.requires_grad for p in parts.values())
    # the hinge on request, and the classes option reaches the softmax form
    _, parts_h = ir_mask_loss(logits, targets, lovasz="hinge")
    torch.testing.assert_close(parts_h["lovasz"], lovasz_hinge_loss(logits, targets).detach())
    _, parts_a = ir_mask_loss(logits, targets, lovasz_classes="all")
    torch.testing.assert_close(
        parts_a["lovasz"], lovasz_softmax_loss(logits, targets, classes="all").detach()
    )
    with pytest.raises(ValueError, match="LOVASZ"):
        ir_mask_loss(logits, targets, lovasz="jaccard")
    # (1, 0, 0): exactly the BCE; the zero-weight parts are still reported
    total, parts = ir_mask_loss(logits, targets, bce_weight=1.0, dice_weight=0, lovasz_weight=0)
    assert torch.equal(total, bce)
    torch.testing.assert_close(parts["lovasz"], lov.detach())
    # all weights zero: a zero that back-propagates
    total, _ = ir_mask_loss(logits, targets, bce_weight=0, dice_weight=0, lovasz_weight=0)
    assert total.item() == 0.0 and total.requires_grad


# ----------------------------------------------------------------------------- fused / blocked
def _row_sort_lovasz(logits, targets):
    """Per-ROI Lovasz hinge with a row-wise float sort (torch.sort(dim=1)), for any R * P."""
    f, y = logits.reshape(len(logits), -1), (targets.reshape(len(targets), -1) > 0.5).double()
    errors = 1 - f * (2 * y - 1)
    sorted_errors, perm = errors.sort(dim=1, descending=True)
    gt = y.gather(1, perm)
    union = gt.sum(1, keepdim=True) + (1 - gt).cumsum(1)
    jaccard = 1 - (gt.sum(1, keepdim=True) - gt.cumsum(1)) / union
    grad = torch.cat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], dim=1)
    return (torch.relu(sorted_errors) * grad).sum(1).mean()


def test_lovasz_sorted_in_several_blocks():
    from ir_d2.layers.losses import _SORT_CHUNK, _row_blocks

    g = torch.Generator().manual_seed(11)
    r, side = 3 * _SORT_CHUNK // 784 + 5, 28  # 3 blocks of rows on the CPU, the last one larger
    blocks = _row_blocks(r, side * side, torch.device("cpu"))
    assert len(blocks) == 3 and blocks[-1][1] == r and all(b > a for a, b in blocks)
    assert all((b - a) * side * side >= 32768 for a, b in blocks)  # torch's radix-sort size
    assert _row_blocks(3, 200_000, torch.device("cpu")) == [(0, 1), (1, 2), (2, 3)]  # a row each
    logits = (torch.randn(r, side, side, generator=g) * 3).double().requires_grad_()
    targets = (torch.rand(r, side, side, generator=g) > 0.7).double()
    targets[0], targets[-1] = 0, 1
    ours, ref = lovasz_hinge_loss(logits, targets), _row_sort_lovasz(logits, targets)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    (g_ours,) = torch.autograd.grad(ours, logits)
    (g_ref,) = torch.autograd.grad(_row_sort_lovasz(logits, targets), logits)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize(
    "weights", [(1.0, 1.0, 0.1), (0.7, 1.3, 0.4), (0.0, 1.0, 0.0), (0.0, 0.0, 2.0), (1.0, 0.0, 0.1)]
)
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("kind", ["softmax", "hinge"])
def test_fused_mask_loss_values_and_gradients(weights, soft, kind):
    """ir_mask_loss's one-pass path (hand-written gradients) against autograd through
    independent formulas: torch's BCE, the Dice of eq. 14 written out, the per-ROI
    Lovasz-Softmax loop or the row-sort Lovasz hinge."""
    g = torch.Generator().manual_seed(12)
    logits = (torch.randn(9, 11, 11, generator=g) * 4).requires_grad_()
    targets = torch.rand(9, 11, 11, generator=g)
    targets = targets if soft else (targets > 0.6).float()
    targets[0] = 0
    logits.data[1] = -200.0  # saturated sigmoid: BCE's log form must stay finite and exact
    wb, wd, wl = weights
    total, parts = ir_mask_loss(
        logits,
        targets,
        bce_weight=wb,
        dice_weight=wd,
        lovasz_weight=wl,
        dice_smooth=0.5,
        lovasz=kind,
    )
    x = logits.double()
    p, y = x.sigmoid().reshape(9, -1), targets.double().reshape(9, -1)
    lovasz_ref = _lovasz_softmax_autograd if kind == "softmax" else _row_sort_lovasz
    ref = {
        "bce": F.binary_cross_entropy_with_logits(x, targets.double()),
        "dice": (1 - (2 * (p * y).sum(1) + 0.5) / (p.sum(1) + y.sum(1) + 0.5)).mean(),
        "lovasz": lovasz_ref(x, targets.double()),
    }
    for name in ref:
        assert parts[name].item() == pytest.approx(ref[name].item(), rel=2e-6, abs=1e-7), name
        assert not parts[name].requires_grad
    ref_total = sum(w * ref[k] for w, k in zip(weights, ref) if w != 0)
    assert total.item() == pytest.approx(ref_total.item(), rel=2e-6)
    (g_ours,) = torch.autograd.grad(total, logits)
    (g_ref,) = torch.autograd.grad(ref_total, logits)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-4, atol=1e-9)


def test_fused_mask_loss_edge_cases():
    # Dice's clamped denominator (smooth 0, empty target, p ~ 0): autograd's gradient
    logits = torch.full((2, 4, 4), -30.0, requires_grad=True)
    targets = torch.zeros(2, 4, 4)
    total, _ = ir_mask_loss(
        logits, targets, bce_weight=0, dice_weight=1, lovasz_weight=0, dice_smooth=0.0
    )
    (g_ours,) = torch.autograd.grad(total, logits)
    (g_ref,) = torch.autograd.grad(dice_loss(logits, targets, smooth=0.0), logits)
    torch.testing.assert_close(g_ours, g_ref)
    # no grad: same values; targets that require grad: the per-term path, with their gradient
    g = torch.Generator().manual_seed(13)
    logits = torch.randn(5, 8, 8, generator=g, requires_grad=True)
    targets = (torch.rand(5, 8, 8, generator=g) > 0.5).float()
    with torch.no_grad():
        total_ng, parts_ng = ir_mask_loss(logits, targets)
    total, parts = ir_mask_loss(logits, targets)
    assert torch.equal(total_ng, total.detach()) and not total_ng.requires_grad
    soft = targets.clone().requires_grad_()
    total_t, parts_t = ir_mask_loss(logits, soft)
    torch.testing.assert_close(total_t, total)
    (g_t,) = torch.autograd.grad(total_t, soft)
    assert torch.isfinite(g_t).all() and g_t.abs().sum() > 0
    # a loss reused after retain_graph back-propagates the same gradient twice
    total, _ = ir_mask_loss(logits, targets)
    total.backward(retain_graph=True)
    first = logits.grad.clone()
    total.backward()
    torch.testing.assert_close(logits.grad, 2 * first)
