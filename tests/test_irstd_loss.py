"""Soft-IoU loss (SGEM eq. 4, SIRST-5K eq. 8)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ir_d2.layers import soft_iou_loss


def _np_soft_iou(logits, targets, smooth=1.0):
    """Independent NumPy form: 1 - (I + s) / (U + s) with U = |P| + |T| - I over all pixels."""
    p = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
    t = np.asarray(targets, dtype=np.float64).reshape(p.shape)
    inter = float((p * t).sum())
    union = float(p.sum() + t.sum() - inter)
    return 1.0 - (inter + smooth) / (union + smooth)


def test_closed_form_at_zero_logits():
    # p = 1/2 everywhere; k of n pixels are targets: I = k/2, U = n/2 + k/2
    n, k = 64, 5
    targets = torch.zeros(1, 1, 8, 8)
    targets.view(-1)[:k] = 1
    loss = soft_iou_loss(torch.zeros(1, 1, 8, 8), targets)
    expected = 1 - (k / 2 + 1) / (n / 2 + k / 2 + 1)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_batch_sums_not_per_image_mean():
    torch.manual_seed(0)
    logits = torch.randn(3, 1, 6, 7)
    targets = (torch.rand(3, 6, 7) > 0.7).float()
    targets[1] = 0  # an empty frame
    batch = soft_iou_loss(logits, targets).item()
    assert batch == pytest.approx(_np_soft_iou(logits.numpy(), targets.numpy()), rel=1e-6)
    per_image = soft_iou_loss(logits, targets, per_image=True)
    assert per_image.shape == (3,)
    for i in range(3):
        expected = _np_soft_iou(logits[i].numpy(), targets[i].numpy())
        assert per_image[i].item() == pytest.approx(expected, rel=1e-6)
    # the batch form is not the mean of the per-image losses
    assert abs(per_image.mean().item() - batch) > 1e-3


def test_padding_is_excluded():
    torch.manual_seed(1)
    logits = torch.randn(1, 1, 5, 9)
    targets = (torch.rand(1, 5, 9) > 0.6).float()
    padded_logits = torch.full((1, 1, 8, 16), 7.0)  # junk in the padding
    padded_logits[..., :5, :9] = logits
    padded_targets = torch.ones(1, 8, 16)  # junk in the padding
    padded_targets[:, :5, :9] = targets
    valid = torch.zeros(1, 8, 16)
    valid[:, :5, :9] = 1
    expected = soft_iou_loss(logits, targets)
    got = soft_iou_loss(padded_logits, padded_targets, valid=valid)
    torch.testing.assert_close(got, expected)
    assert abs(soft_iou_loss(padded_logits, padded_targets).item() - expected.item()) > 1e-2


def test_gradient_raises_target_logits_and_lowers_background():
    logits = torch.zeros(1, 1, 4, 4, requires_grad=True)
    targets = torch.zeros(1, 1, 4, 4)
    targets[..., 1, 2] = 1
    soft_iou_loss(logits, targets).backward()
    g = logits.grad[0, 0]
    assert g[1, 2] < 0  # descending the loss increases the target's logit
    assert (g[targets[0, 0] == 0] > 0).all()


def test_bad_arguments_name_the_problem():
    with pytest.raises(ValueError, match="SOFT_IOU_SMOOTH"):
        soft_iou_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 2), smooth=0.0)
    with pytest.raises(ValueError, match="targets"):
        soft_iou_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 3, 2))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 3),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    smooth=st.floats(0.01, 10.0),
    scale=st.floats(0.0, 20.0),
    seed=st.integers(0, 2**16),
    density=st.floats(0.0, 1.0),
)
def test_matches_numpy_and_stays_in_range(n, h, w, smooth, scale, seed, density):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, 1, h, w, generator=g, dtype=torch.float64) * scale
    targets = (torch.rand(n, h, w, generator=g, dtype=torch.float64) < density).double()
    loss = soft_iou_loss(logits, targets, smooth)
    # the loss sums in float32 whatever the input dtype, so it matches float64 numpy to float32's
    # precision (a sum of at most 243 terms in [0, 1])
    assert loss.dtype == torch.float32
    assert 0.0 <= loss.item() < 1.0
    assert loss.item() == pytest.approx(_np_soft_iou(logits, targets, smooth), abs=1e-6)
    # a perfect, confident prediction has (almost) no loss; the opposite one the most
    perfect = soft_iou_loss((targets * 2 - 1).unsqueeze(1) * 40, targets, smooth)
    wrong = soft_iou_loss((1 - targets * 2).unsqueeze(1) * 40, targets, smooth)
    assert perfect.item() == pytest.approx(0.0, abs=1e-6)
    assert wrong.item() == pytest.approx(1 - smooth / (n * h * w + smooth), abs=1e-6)
    assert perfect.item() <= loss.item() + 1e-6 and loss.item() <= wrong.item() + 1e-6


# ----------------------------------------------------------------------- binary cross-entropy
def _np_bce(logits, targets):
    """Independent NumPy form of UIU-Net's BCELoss on sigmoid outputs, mean over pixels."""
    p = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
    t = np.asarray(targets, dtype=np.float64).reshape(p.shape)
    return float(-(t * np.log(p) + (1 - t) * np.log(1 - p)).mean())


@settings(max_examples=40)
@given(
    n=st.integers(1, 3),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    scale=st.floats(0.0, 8.0),
    seed=st.integers(0, 2**16),
)
def test_bce_matches_numpy_and_leaves_padding_out(n, h, w, scale, seed):
    from ir_d2.layers import binary_cross_entropy_loss

    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, 1, h, w, generator=g, dtype=torch.float64) * scale
    targets = (torch.rand(n, h, w, generator=g) < 0.3).double()
    loss = binary_cross_entropy_loss(logits, targets)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(_np_bce(logits, targets), rel=1e-5, abs=1e-6)
    per_image = binary_cross_entropy_loss(logits, targets, per_image=True)
    expected = [_np_bce(logits[i], targets[i]) for i in range(n)]
    assert per_image.tolist() == pytest.approx(expected, rel=1e-5, abs=1e-6)
    # a padded copy (extra columns of wild logits, valid = 0 there) gives the same loss
    pad = torch.full((n, 1, h, 3), 30.0, dtype=torch.float64)
    padded = torch.cat([logits, pad], dim=-1)
    valid = torch.cat([torch.ones(n, h, w), torch.zeros(n, h, 3)], dim=-1)
    padded_targets = torch.cat([targets, torch.zeros(n, h, 3, dtype=torch.float64)], dim=-1)
    got = binary_cross_entropy_loss(padded, padded_targets, valid=valid)
    assert got.item() == pytest.approx(loss.item(), rel=1e-5, abs=1e-6)


def test_bce_at_zero_logits_is_log_2():
    from ir_d2.layers import binary_cross_entropy_loss

    loss = binary_cross_entropy_loss(torch.zeros(2, 1, 4, 4), torch.rand(2, 4, 4))
    assert loss.item() == pytest.approx(np.log(2.0), rel=1e-6)
    with pytest.raises(ValueError, match="targets"):
        binary_cross_entropy_loss(torch.zeros(1, 1, 4, 4), torch.zeros(5))
