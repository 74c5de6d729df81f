"""IRSTDMetrics: IoU, nIoU, Pd, Fa, F1 as BasicIRSTD defines them."""

import math
from collections import deque

import numpy as np
import pytest
from conftest import shared_data_dir
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from scipy import ndimage

from ir_d2.evaluation import IRSTDMetrics, connected_components, connected_targets, match_targets


# ------------------------------------------------------------------ independent re-implementation
def _label8(mask):
    """Pure-Python 8-connected labelling, components numbered by raster order of first pixel."""
    h, w = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    comps = []
    for r, c in zip(*np.nonzero(mask)):  # np.nonzero is in raster order
        if seen[r, c]:
            continue
        pixels, queue = [], deque([(r, c)])
        seen[r, c] = True
        while queue:
            y, x = queue.popleft()
            pixels.append((y, x))
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < h and 0 <= xx < w and mask[yy, xx] and not seen[yy, xx]:
                        seen[yy, xx] = True
                        queue.append((yy, xx))
        comps.append(pixels)
    return comps


def _reference(preds, gts, threshold=0.5, distance=3.0):
    """The metric definitions, written independently of ir_d2 (lists, loops, list deletion)."""
    inter = union = tp_fp = tp_fn = 0
    nious, matched, targets, fa, pixels = [], 0, 0, 0, 0
    for pred, gt in zip(preds, gts):
        p = pred if pred.dtype == bool else pred > threshold
        g = gt.astype(bool)
        i, u = int((p & g).sum()), int((p | g).sum())
        inter, union = inter + i, union + u
        tp_fp, tp_fn = tp_fp + int(p.sum()), tp_fn + int(g.sum())
        nious.append(i / u if u else 0.0)
        pixels += g.size
        pred_comps = [
            (np.mean([q[0] for q in c]), np.mean([q[1] for q in c]), len(c)) for c in _label8(p)
        ]
        gt_comps = _label8(g)
        targets += len(gt_comps)
        remaining = list(pred_comps)  # BasicIRSTD: delete a predicted component once matched
        for comp in gt_comps:
            cy, cx = np.mean([q[0] for q in comp]), np.mean([q[1] for q in comp])
            for k, (py, px, _) in enumerate(remaining):
                if math.sqrt((py - cy) ** 2 + (px - cx) ** 2) < distance:
                    matched += 1
                    del remaining[k]
                    break
        fa += sum(a for _, _, a in remaining)  # by identity, never by area value
    precision = inter / tp_fp if tp_fp else 0.0
    recall = inter / tp_fn if tp_fn else 0.0
    return {
        "IoU": 100 * inter / union if union else 0.0,
        "nIoU": 100 * float(np.mean(nious)),
        "Pd": 100 * matched / targets if targets else float("nan"),
        "Fa": 1e6 * fa / pixels,
        "F1": 100 * 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
    }


def _run(preds, gts, **kwargs):
    m = IRSTDMetrics(**kwargs)
    for p, g in zip(preds, gts):
        m.update(p, g)
    return m.compute()


def _assert_same(got, expected):
    for k, v in expected.items():
        if math.isnan(v):
            assert math.isnan(got[k]), k
        else:
            assert got[k] == pytest.approx(v, rel=1e-9, abs=1e-9), k


def _square(shape, top, left, size):
    m = np.zeros(shape, dtype=bool)
    m[top : top + size, left : left + size] = True
    return m


# ------------------------------------------------------------------------- hand-made answers
def test_perfect_frame():
    gt = _square((20, 30), 5, 5, 3)
    r = _run([gt * 0.9], [gt])
    assert r == {"IoU": 100.0, "nIoU": 100.0, "Pd": 100.0, "Fa": 0.0, "F1": 100.0}


def test_a_miss():
    gt = _square((20, 30), 2, 2, 3) | _square((20, 30), 10, 20, 2)  # areas 9 and 4
    pred = _square((20, 30), 2, 2, 3).astype(np.float32)
    r = _run([pred], [gt])
    assert r["Pd"] == 50.0 and r["Fa"] == 0.0
    assert r["IoU"] == pytest.approx(100 * 9 / 13)
    assert r["nIoU"] == pytest.approx(100 * 9 / 13)
    recall = 9 / 13
    assert r["F1"] == pytest.approx(100 * 2 * recall / (1 + recall))


def test_a_false_alarm():
    gt = _square((100, 100), 10, 10, 2)
    pred = gt | _square((100, 100), 60, 60, 2) | _square((100, 100), 80, 20, 1)  # +4 +1 px
    r = _run([pred], [gt])
    assert r["Pd"] == 100.0
    assert r["Fa"] == pytest.approx(5 / 10_000 * 1e6)  # 500 x 1e-6
    assert r["IoU"] == pytest.approx(100 * 4 / 9)


def test_two_targets_in_one_blob_match_one_target():
    gt = np.zeros((20, 20), dtype=bool)
    gt[10, 10] = gt[10, 13] = True  # two 1-pixel targets, 3 px apart
    pred = np.zeros((20, 20), dtype=bool)
    pred[9:12, 9:15] = True  # one blob over both, centroid (10, 11.5): 1.5 px from each
    r = _run([pred], [gt])
    assert r["Pd"] == 50.0  # one-to-one: the blob is taken by the first target
    assert r["Fa"] == 0.0  # and, matched, it is no false alarm
    assert r["IoU"] == pytest.approx(100 * 2 / 18)


def test_empty_frame():
    empty = np.zeros((10, 10), dtype=bool)
    r = _run([empty.astype(np.float32)], [empty])
    assert r["IoU"] == 0.0 and r["nIoU"] == 0.0 and r["Fa"] == 0.0 and r["F1"] == 0.0
    assert math.isnan(r["Pd"])  # no GT target: Pd is undefined
    # beside a perfect frame, the empty one halves nIoU but leaves IoU, Pd and F1 alone
    gt = _square((10, 10), 3, 3, 2)
    r = _run([gt, empty], [gt, empty])
    assert r == {"IoU": 100.0, "nIoU": 50.0, "Pd": 100.0, "Fa": 0.0, "F1": 100.0}
    # a false alarm on an empty frame: Fa over the pixels of both frames
    alarm = _square((10, 10), 0, 0, 2)
    r = _run([gt, alarm], [gt, empty])
    assert r["Fa"] == pytest.approx(4 / 200 * 1e6) and r["Pd"] == 100.0


def test_unmatched_component_with_a_matched_area_counts_as_false_alarm():
    # DNANet / BasicIRSTD find the unmatched components by area value: equal areas hide one
    gt = _square((30, 30), 2, 2, 2)
    pred = gt | _square((30, 30), 20, 20, 2)  # same area 4, far away
    r = _run([pred], [gt])
    assert r["Fa"] == pytest.approx(4 / 900 * 1e6)


def test_strict_threshold_and_distance():
    gt = _square((12, 12), 4, 4, 1)
    prob = np.zeros((12, 12))
    prob[4, 4] = 0.5
    assert _run([prob], [gt])["Pd"] == 0.0  # 0.5 is not above the threshold 0.5
    pred = np.zeros((12, 12), dtype=bool)
    pred[4, 7] = True  # centroid exactly 3 px away: not closer than 3
    r = _run([pred], [gt])
    assert r["Pd"] == 0.0 and r["Fa"] == pytest.approx(1e6 / 144)
    assert _run([pred], [gt], distance=3.01)["Pd"] == 100.0


def test_gt_in_label_order_takes_first_free_prediction():
    gt = np.zeros((10, 20), dtype=bool)
    gt[2, 5] = gt[4, 7] = True  # labels 1 (row 2) then 2 (row 4)
    pred = np.zeros((10, 20), dtype=bool)
    pred[3, 6] = True  # 1.41 px from both
    _, gc, _ = connected_components(gt)
    _, pc, _ = connected_components(pred)
    assert list(match_targets(gc, pc)) == [0]  # taken by GT 1, the first in raster order


def test_connected_targets_xy_area_score():
    prob = np.zeros((10, 12))
    prob[2:4, 7:10] = 0.8  # rows 2-3, cols 7-9
    prob[3, 8] = 0.95
    prob[8, 0] = prob[9, 1] = 0.7  # diagonal neighbours: one 8-connected target
    targets = connected_targets(prob, 0.5)
    assert targets == [
        {"centroid": (8.0, 2.5), "area": 6, "score": pytest.approx(0.95)},
        {"centroid": (0.5, 8.5), "area": 2, "score": pytest.approx(0.7)},
    ]
    assert connected_targets(np.zeros((3, 3))) == []


def test_roc_thresholds_and_bool_predictions():
    gt = _square((20, 20), 2, 2, 2) | _square((20, 20), 12, 12, 2)
    prob = np.zeros((20, 20))
    prob[2:4, 2:4] = 0.9
    prob[12:14, 12:14] = 0.4
    prob[17, 2] = 0.2  # a faint false alarm
    m = IRSTDMetrics(threshold=0.5, roc_thresholds=(0.1, 0.3, 0.5, 0.95))
    m.update(prob, gt)
    r = m.compute()
    assert [r[f"Pd@{t}"] for t in (0.1, 0.3, 0.5, 0.95)] == [100.0, 100.0, 50.0, 0.0]
    assert [r[f"Fa@{t}"] for t in (0.1, 0.3, 0.5, 0.95)] == pytest.approx([2500.0, 0, 0, 0])
    assert r["Pd"] == r["Pd@0.5"] and r["Fa"] == r["Fa@0.5"]
    roc = m.roc()
    np.testing.assert_array_equal(roc["thresholds"], [0.1, 0.3, 0.5, 0.95])
    np.testing.assert_array_equal(roc["Pd"], [100.0, 100.0, 50.0, 0.0])
    # a bool mask is the same at every threshold
    m = IRSTDMetrics(roc_thresholds=(0.1, 0.9))
    m.update(prob > 0.5, gt)
    r = m.compute()
    assert r["Pd@0.1"] == r["Pd@0.9"] == r["Pd"] == 50.0


def test_each_distinct_mask_is_labelled_once(monkeypatch):
    import ir_d2.evaluation.irstd_metrics as metrics_module

    calls = []

    def counting(mask):
        calls.append(mask)
        return connected_components(mask)

    monkeypatch.setattr(metrics_module, "connected_components", counting)
    gt = _square((20, 20), 2, 2, 2)
    prob = gt * 0.9 + 0.2 * _square((20, 20), 12, 12, 2)
    m = IRSTDMetrics(threshold=0.5, roc_thresholds=(0.1, 0.5))
    m.update(prob, gt)
    assert len(calls) == 3  # the GT, then 0.5 (main and ROC alike) and 0.1
    calls.clear()
    m.update(prob > 0.5, gt)  # a bool pred is one mask at every threshold
    assert len(calls) == 2
    r = m.compute()
    assert r["Pd"] == r["Pd@0.5"] == 100.0 and r["Fa"] == r["Fa@0.5"] == 0.0
    assert r["Fa@0.1"] == pytest.approx(4 / 800 * 1e6)  # the faint square in the first frame


def test_merge_equals_one_pass_and_accepts_shapes():
    rng = np.random.default_rng(0)
    gts = [rng.random((16, 16)) > 0.9 for _ in range(6)]
    preds = [rng.random((16, 16)) for _ in range(6)]
    a, b, whole = IRSTDMetrics(), IRSTDMetrics(), IRSTDMetrics()
    for i, (p, g) in enumerate(zip(preds, gts)):
        (a if i % 2 else b).update(p[None], g.astype(np.uint8) * 255)  # 1xHxW, 0/255
        whole.update(p, g)
    assert a.merge(b).compute() == pytest.approx(whole.compute())
    with pytest.raises(ValueError, match="differ"):
        IRSTDMetrics().merge(IRSTDMetrics(distance=2.0))


def test_bad_inputs():
    m = IRSTDMetrics()
    with pytest.raises(ValueError, match="original size"):
        m.update(np.zeros((4, 5)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match=r"\{0, 1\} mask"):
        m.update(np.full((4, 4), 255, dtype=np.uint8), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="NaN"):
        m.update(np.full((4, 4), np.nan), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="HxW"):
        m.update(np.zeros((2, 4, 4)), np.zeros((2, 4, 4)))


# ------------------------------------------------------------------ real SIRST masks, perturbed
def _perturb(gt, rng):
    """A prediction made from a real mask: targets kept, dilated, eroded, shifted or dropped,
    false alarms added (some with the area of a kept target), soft probabilities."""
    labels, n = ndimage.label(gt, structure=np.ones((3, 3)))
    pred = np.zeros(gt.shape, dtype=bool)
    for k in range(1, n + 1):
        comp = labels == k
        action = rng.integers(0, 5)
        if action == 1:
            comp = ndimage.binary_dilation(comp, iterations=int(rng.integers(1, 3)))
        elif action == 2:
            comp = ndimage.binary_erosion(comp) if comp.sum() > 4 else comp
        elif action == 3:
            comp = np.roll(comp, tuple(rng.integers(-4, 5, size=2)), axis=(0, 1))
        elif action == 4:
            continue  # a miss
        pred |= comp
    h, w = gt.shape
    for _ in range(rng.integers(0, 4)):  # false alarms
        s = int(rng.integers(1, 5))
        y, x = rng.integers(0, h - s), rng.integers(0, w - s)
        pred[y : y + s, x : x + s] = True
    prob = np.where(pred, rng.uniform(0.3, 1.0, gt.shape), rng.uniform(0.0, 0.45, gt.shape))
    return prob


def test_against_reference_on_real_sirst_masks():
    root = shared_data_dir("sirst")
    names = (root / "50_50" / "test.txt").read_text().split()[:40]
    rng = np.random.default_rng(0)
    gts, preds = [], []
    for name in names:
        gt = np.asarray(Image.open(root / "masks" / f"{name}_pixels0.png").convert("L")) > 127
        gts.append(gt)
        preds.append(_perturb(gt, rng))
    assert sum(len(_label8(g)) for g in gts) >= 40  # real targets, several per frame at times
    for threshold in (0.5, 0.35):
        got = _run(preds, gts, threshold=threshold)
        _assert_same(got, _reference(preds, gts, threshold=threshold))
    got = _run(preds, gts)
    assert 0 < got["Pd"] < 100 and got["Fa"] > 0 and 0 < got["IoU"] < 100
    # the unperturbed masks score perfectly
    assert _run([g.astype(float) for g in gts], gts) == {
        "IoU": 100.0,
        "nIoU": 100.0,
        "Pd": 100.0,
        "Fa": 0.0,
        "F1": 100.0,
    }


@settings(max_examples=80, deadline=None)
@given(
    gt=arrays(bool, st.tuples(st.integers(1, 12), st.integers(1, 12))),
    seed=st.integers(0, 2**16),
    distance=st.sampled_from([1.0, 1.5, 3.0, 5.0]),
)
def test_random_masks_match_reference(gt, seed, distance):
    rng = np.random.default_rng(seed)
    prob = rng.random(gt.shape)
    got = _run([prob, gt.astype(float)], [gt, gt], distance=distance)
    _assert_same(got, _reference([prob, gt.astype(float)], [gt, gt], distance=distance))
    assert 0 <= got["IoU"] <= 100 and 0 <= got["nIoU"] <= 100 and 0 <= got["F1"] <= 100
    # Fa never exceeds the predicted pixels
    assert got["Fa"] * 2 * gt.size / 1e6 <= (prob > 0.5).sum() + 1e-9
    # labelling order and centroids equal the pure-Python labelling
    labels, centroids, areas = connected_components(gt)
    comps = _label8(gt)
    assert len(comps) == len(areas)
    for k, comp in enumerate(comps, start=1):
        assert all(labels[p] == k for p in comp)
        assert areas[k - 1] == len(comp)
        assert centroids[k - 1] == pytest.approx(np.mean(comp, axis=0))
