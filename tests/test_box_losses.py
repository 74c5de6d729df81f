"""Box-regression losses of the Mask R-CNN paper (Wang & Ren 2025, eqs. 5-12):
ir_d2.layers.box_losses."""

import math

import pytest
import torch
from detectron2.layers import ciou_loss as d2_ciou_loss
from hypothesis import given, settings
from hypothesis import strategies as st

from ir_d2.layers import (
    IOU_LOSS_TYPES,
    ciou_loss,
    eiou_loss,
    focal_ciou_loss,
    focal_eiou_loss,
    focal_iou,
    focal_siou_loss,
    iou_box_loss,
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
