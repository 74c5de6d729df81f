"""Mask losses of the Mask R-CNN paper (Wang & Ren 2025, eqs. 13-18): ir_d2.layers.mask_losses,
and its fused eq. 18 against the plain sum of its terms (tests/reference_losses.py)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_losses import ir_mask_loss_plain

from ir_d2.layers import dice_loss, ir_mask_loss, lovasz_hinge_loss, lovasz_softmax_loss
from ir_d2.layers.mask_losses import _SORT_CHUNK, _row_blocks, _sort_block


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
    """_sort_block (non-negative float32 errors, as _lovasz_terms passes) against torch's
    stable row-wise float sort: the same indices, ties included."""
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
    # (1, 0, 0): the BCE (to float32 rounding); the zero-weight parts are still reported
    total, parts = ir_mask_loss(logits, targets, bce_weight=1.0, dice_weight=0, lovasz_weight=0)
    torch.testing.assert_close(total, bce, rtol=1e-6, atol=0)
    torch.testing.assert_close(parts["lovasz"], lov.detach())
    # all weights zero: a zero that back-propagates, a zero gradient
    total, _ = ir_mask_loss(logits, targets, bce_weight=0, dice_weight=0, lovasz_weight=0)
    assert total.item() == 0.0 and total.requires_grad
    (grad,) = torch.autograd.grad(total, logits)
    assert torch.equal(grad, torch.zeros_like(logits))


def _mask_case(name, dtype):
    """Logits and targets of one edge case of ``test_ir_mask_loss_equals_its_terms_summed``."""
    g = torch.Generator().manual_seed(sum(map(ord, name)))
    shape = {"single_pixel": (3, 1, 1), "one_roi": (1, 5, 9), "large": (48, 28, 28)}.get(
        name, (6, 7, 7)
    )
    scale = 30.0 if name == "saturated" else 4.0
    logits = torch.randn(shape, generator=g) * scale
    targets = (torch.rand(shape, generator=g) > 0.6).float()
    if name == "empty":
        targets.zero_()
    elif name == "all_ones":
        targets.fill_(1)
    elif name == "one_pixel_on":
        targets.zero_().view(len(targets), -1)[:, 3] = 1
    elif name == "soft":
        targets = torch.rand(shape, generator=g)
    elif name == "mixed":  # an empty ROI, a full one, the rest random
        targets[0], targets[1] = 0, 1
    return logits.to(dtype), targets.to(dtype)


@pytest.mark.parametrize(
    "case",
    [
        "mixed",
        "empty",
        "all_ones",
        "one_pixel_on",
        "single_pixel",
        "one_roi",
        "large",
        "soft",
        "saturated",
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ir_mask_loss_equals_its_terms_summed(case, dtype):
    """The library's one eq. 18 (the fused pass, hand-written gradient) against the plain sum of
    the per-term functions through autograd (reference_losses.ir_mask_loss_plain), in value,
    parts and gradient, to 1e-6 (values relative to max(1, |value|): saturated logits give losses
    near 20, where float32's spacing is 2e-6)."""
    logits, targets = _mask_case(case, dtype)
    for weights, lovasz, classes in [
        ((1.0, 1.0, 0.1), "softmax", "present"),
        ((1.0, 1.0, 0.1), "softmax", "all"),
        ((1.0, 1.0, 0.1), "hinge", "present"),
        ((0.7, 1.3, 0.4), "softmax", "present"),
        ((0.0, 1.0, 0.0), "softmax", "present"),
        ((0.0, 0.0, 2.0), "hinge", "present"),
        ((1.0, 0.0, 0.0), "softmax", "present"),
    ]:
        kwargs = dict(zip(("bce_weight", "dice_weight", "lovasz_weight"), weights))
        kwargs.update(lovasz=lovasz, lovasz_classes=classes, dice_smooth=1.0)
        results = []
        for fn in (ir_mask_loss, ir_mask_loss_plain):
            x = logits.clone().requires_grad_()
            total, parts = fn(x, targets, **kwargs)
            (grad,) = torch.autograd.grad(total, x)
            assert grad.dtype == dtype
            results.append((total.item(), {k: v.item() for k, v in parts.items()}, grad))
        (total, parts, grad), (ref_total, ref_parts, ref_grad) = results
        where = (case, weights, lovasz, classes)
        assert abs(total - ref_total) <= 1e-6 * max(1.0, abs(ref_total)), where
        for k, ref in ref_parts.items():
            assert abs(parts[k] - ref) <= 1e-6 * max(1.0, abs(ref)), (where, k)
        torch.testing.assert_close(grad, ref_grad, rtol=0, atol=1e-6, msg=str(where))


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
    # no grad: same values; targets that require grad: refused (no gradient w.r.t. them)
    g = torch.Generator().manual_seed(13)
    logits = torch.randn(5, 8, 8, generator=g, requires_grad=True)
    targets = (torch.rand(5, 8, 8, generator=g) > 0.5).float()
    with torch.no_grad():
        total_ng, parts_ng = ir_mask_loss(logits, targets)
    total, parts = ir_mask_loss(logits, targets)
    assert torch.equal(total_ng, total.detach()) and not total_ng.requires_grad
    with pytest.raises(ValueError, match="targets must not require grad"):
        ir_mask_loss(logits, targets.clone().requires_grad_())
    # a loss reused after retain_graph back-propagates the same gradient twice
    total, _ = ir_mask_loss(logits, targets)
    total.backward(retain_graph=True)
    first = logits.grad.clone()
    total.backward()
    torch.testing.assert_close(logits.grad, 2 * first)
