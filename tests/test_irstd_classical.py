"""The classical detectors of SIRST-5K's Table I (white top-hat, Max-Median) as IRSTD nets."""

import cv2
import numpy as np
import pytest
import torch
from conftest import ir_cfg

import ir_d2  # noqa: F401  (registration)
from ir_d2.modeling import IRSTD_NET_REGISTRY, build_irstd_net
from ir_d2.modeling.irstd.classical import (
    MaxMedian,
    TopHat,
    adaptive_threshold_logits,
    ellipse_element,
    max_median_response,
    white_tophat_response,
)


@pytest.mark.parametrize("size", range(1, 22))
def test_the_element_is_opencvs_ellipse(size):
    expected = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)).astype(bool)
    np.testing.assert_array_equal(ellipse_element(size).numpy(), expected)


@pytest.mark.parametrize("size", [3, 5, 9, 13])
def test_white_tophat_equals_opencv(size):
    frame = (np.random.default_rng(size).random((37, 45)) * 255).astype(np.float32)
    frame[10:13, 20:22] += 300  # a small bright target
    expected = cv2.morphologyEx(
        frame, cv2.MORPH_TOPHAT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    )
    got = white_tophat_response(torch.from_numpy(frame)[None, None], ellipse_element(size))
    np.testing.assert_allclose(got[0, 0].numpy(), expected, atol=1e-4)


def _max_median_loop(frame: np.ndarray, size: int) -> np.ndarray:
    """Deshpande et al.'s filter pixel by pixel: the largest of the medians along the four lines
    through the pixel inside the window (edge pixels replicated), subtracted from the pixel."""
    n = size // 2
    padded = np.pad(frame, n, mode="edge")
    out = np.empty_like(frame)
    for y in range(frame.shape[0]):
        for x in range(frame.shape[1]):
            cy, cx = y + n, x + n
            lines = [
                [padded[cy, cx + d] for d in range(-n, n + 1)],
                [padded[cy + d, cx] for d in range(-n, n + 1)],
                [padded[cy + d, cx + d] for d in range(-n, n + 1)],
                [padded[cy + d, cx - d] for d in range(-n, n + 1)],
            ]
            out[y, x] = frame[y, x] - max(np.median(v) for v in lines)
    return out


@pytest.mark.parametrize("size", [3, 5, 7])
def test_max_median_equals_a_pixel_loop(size):
    frame = (np.random.default_rng(size).random((11, 14)) * 100).astype(np.float32)
    got = max_median_response(torch.from_numpy(frame)[None, None], size)[0, 0].numpy()
    np.testing.assert_allclose(got, _max_median_loop(frame, size), atol=1e-5)
    with pytest.raises(ValueError, match="MODEL.IRSTD.CLASSICAL.KERNEL"):
        max_median_response(torch.zeros(1, 1, 4, 4), 4)


def test_adaptive_threshold_logits_are_positive_exactly_above_mean_plus_k_std():
    r = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    logits = adaptive_threshold_logits(r, 1.5)
    for i in range(2):
        thr = r[i].mean() + 1.5 * r[i].std(unbiased=False)
        assert torch.equal(logits[i] > 0, r[i] > thr)


@pytest.mark.parametrize("net", ["TopHat", "MaxMedian"])
def test_detectors_are_registered_nets_built_from_their_configs(net):
    name = {
        "TopHat": "irstd_tophat_nudt_sirst.yaml",
        "MaxMedian": "irstd_max_median_nudt_sirst.yaml",
    }
    cfg = ir_cfg(f"IRSTD/{name[net]}")
    model = build_irstd_net(cfg)
    assert type(model) is IRSTD_NET_REGISTRY.get(net) and not list(model.parameters())
    assert (
        model.kernel == cfg.MODEL.IRSTD.CLASSICAL.KERNEL and model.k == cfg.MODEL.IRSTD.CLASSICAL.K
    )


@pytest.mark.parametrize("cls", [TopHat, MaxMedian])
def test_a_bright_point_is_found_and_normalisation_changes_nothing(cls):
    """A gray frame with one bright 2x2 target: the detector marks it and little else, and an
    increasing affine change of the gray values (what PIXEL_MEAN / STD do) gives the same mask."""
    rng = np.random.default_rng(0)
    gray = rng.normal(80, 3, (48, 64)).astype(np.float32)
    gray[20:22, 30:32] = 160
    x = torch.from_numpy(gray)[None, None].expand(1, 3, 48, 64)
    net = cls(3, kernel=5, k=6.0)
    mask = net(x) > 0
    assert mask[0, 0, 20:22, 30:32].all() and mask.sum() <= 8
    assert torch.equal(net((x - 120.0) / 57.0) > 0, mask)
    with pytest.raises(ValueError, match="MODEL.IRSTD.IN_CHANNELS"):
        net(torch.zeros(1, 1, 8, 8))
