"""SIRST-5K synthesis, online augmentation, negative-sample loss and offline tool."""

import subprocess
import sys
import uuid
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import REPO_ROOT, ir_cfg, shared_data_dir
from hypothesis import given, settings
from hypothesis import strategies as st

from ir_d2.data.io import IRDataError, read_ir_image, read_ir_mask
from ir_d2.data.sirst5k import NoiseBank, SIRST5KAugmentation
from ir_d2.data.synthesis import (
    n2n_displace,
    negative_augment,
    patch_box,
    sample_noise_patches,
    target_centers,
    to_gray,
)
from ir_d2.layers import negative_sample_loss
from ir_d2.tools import synthesize_sirst5k

FAST = settings(max_examples=60, deadline=None)


def _nudt_frames(n):
    root = shared_data_dir("nudt-sirst")
    names = sorted((root / "images").glob("*.png"))[:n]
    return [(p, root / "masks" / p.name) for p in names]


# ----------------------------------------------------------------------------- eq. 1
def _block_stats(gray, b):
    """Mean and variance of the b x b blocks of ``gray`` by reshaping (independent of the loops)."""
    h, w = gray.shape
    blocks = gray.reshape(h // b, b, w // b, b).transpose(0, 2, 1, 3).reshape(h // b, w // b, -1)
    mean = blocks.sum(-1) / blocks.shape[-1]
    var = ((blocks - mean[..., None]) ** 2).sum(-1) / blocks.shape[-1]
    return mean, var


def test_noise_regions_are_exactly_the_eq1_regions():
    rng = np.random.default_rng(0)
    # 8 x 8 blocks of 8 x 8 pixels with block-wise levels and spreads, some flat, some black
    levels = rng.integers(0, 200, (8, 8))
    spreads = rng.integers(0, 25, (8, 8))
    levels[0, 0], spreads[0, 0] = 0, 0  # black and flat: Mean = Var = 0
    levels[0, 1], spreads[0, 1] = 50, 0  # flat: Var = 0
    img = np.zeros((64, 64), np.uint8)
    for i in range(8):
        for j in range(8):
            noise = rng.integers(-spreads[i, j], spreads[i, j] + 1, (8, 8))
            img[i * 8 : i * 8 + 8, j * 8 : j * 8 + 8] = np.clip(levels[i, j] + noise, 0, 255)
    sigma, mu = 60.0, 120.0
    patches, index = sample_noise_patches(
        [img], grid=8, max_var=sigma, max_mean=mu, return_index=True
    )
    mean, var = _block_stats(img.astype(np.float64), 8)
    expected = np.argwhere((var > 0) & (var < sigma) & (mean > 0) & (mean < mu))
    assert 0 < len(expected) < 64  # the test image exercises both outcomes
    assert [(y // 8, x // 8) for _, y, x in index] == [tuple(e) for e in expected]
    for p, (f, y, x) in zip(patches, index):
        assert f == 0 and p.shape == (8, 8) and p.dtype == np.uint8
        np.testing.assert_array_equal(p, img[y : y + 8, x : x + 8])
        assert 0 < p.var() < sigma and 0 < p.mean() < mu
    assert (0, 0) not in {(y, x) for _, y, x in index}  # flat black region
    assert (0, 8) not in {(y, x) for _, y, x in index}  # flat region


def test_noise_regions_on_real_frames_satisfy_eq1_and_keep_channels():
    frames = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p, _ in _nudt_frames(6)]
    assert frames[0].ndim == 3  # NUDT-SIRST frames are RGB with R = G = B
    patches, index = sample_noise_patches(
        frames, grid=8, max_var=100, max_mean=100, return_index=True
    )
    assert len(patches) > 0
    for p in patches:
        assert p.shape == (32, 32, 3)
        g = p[..., 0].astype(np.float64)
        assert 0 < g.var() < 100 and 0 < g.mean() < 100
    # independent count with reshaped block statistics
    count = 0
    for frame in frames:
        mean, var = _block_stats(frame[..., 0].astype(np.float64), 32)
        count += int(((var > 0) & (var < 100) & (mean > 0) & (mean < 100)).sum())
    assert count == len(patches)
    # gray frames give the same regions
    gray_index = sample_noise_patches([f[..., 0] for f in frames], return_index=True)[1]
    assert gray_index == index


@FAST
@given(
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    grid=st.integers(1, 10),
    seed=st.integers(0, 2**16),
)
def test_noise_regions_tile_the_frame(h, w, grid, seed):
    img = np.random.default_rng(seed).integers(1, 255, (h, w)).astype(np.uint8)
    patches, index = sample_noise_patches([img], grid, max_var=1e9, max_mean=1e9, return_index=True)
    # every kept region is the pixel block it claims, has Var > 0, and regions never overlap
    covered = np.zeros((h, w), int)
    for p, (_, y, x) in zip(patches, index):
        np.testing.assert_array_equal(p, img[y : y + p.shape[0], x : x + p.shape[1]])
        assert p.var() > 0
        covered[y : y + p.shape[0], x : x + p.shape[1]] += 1
    assert covered.max() <= 1
    if h >= grid and w >= grid:
        # grid x grid regions of sizes differing by at most one pixel
        sizes = {p.shape for p in patches}
        assert all(
            h // grid <= a <= -(-h // grid) and w // grid <= b <= -(-w // grid) for a, b in sizes
        )


def test_noise_sampling_rejects_bad_grid():
    with pytest.raises(ValueError, match="INPUT.SIRST5K.GRID"):
        sample_noise_patches([np.ones((8, 8))], grid=0)


# ----------------------------------------------------------------------------- eqs. 2-3
def _blend_fraction(n, i, alpha):
    """round-half-even of alpha * n + (1 - alpha) * i, in exact rational arithmetic."""
    return round(Fraction(alpha) * int(n) + (1 - Fraction(alpha)) * int(i))


@pytest.mark.parametrize("alpha", [0.25, 0.5, 0.75, 0.125])
def test_blend_formula_exact_same_size(alpha):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (9, 7), dtype=np.uint8)
    noise = rng.integers(0, 256, (9, 7), dtype=np.uint8)
    out = n2n_displace(img, noise, alpha)
    assert out.dtype == np.uint8 and out.shape == img.shape
    expected = np.vectorize(lambda n, i: _blend_fraction(n, i, alpha))(noise, img)
    np.testing.assert_array_equal(out, expected)


def test_blend_with_constant_patch_of_any_size_and_channels():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    img3 = np.repeat(img[..., None], 3, axis=2)
    expected = np.vectorize(lambda i: _blend_fraction(200, i, 0.25))(img)
    for noise in (np.full((4, 4), 200, np.uint8), np.full((50, 3, 3), 200, np.uint8)):
        np.testing.assert_array_equal(n2n_displace(img, noise, 0.25), expected)
        out3 = n2n_displace(img3, noise, 0.25)
        assert out3.shape == img3.shape
        for c in range(3):
            np.testing.assert_array_equal(out3[..., c], expected)


def test_blend_limits_dtypes_and_resize():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    noise = rng.integers(0, 256, (5, 5), dtype=np.uint8)
    np.testing.assert_array_equal(n2n_displace(img, noise, 0.0), img)
    np.testing.assert_array_equal(n2n_displace(img, np.full((2, 2), 7, np.uint8), 1.0), 7)
    # float frames: no rounding
    f = rng.random((6, 6)).astype(np.float32)
    nf = rng.random((6, 6)).astype(np.float32)
    out = n2n_displace(f, nf, 0.1)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(
        out, (0.1 * nf.astype(np.float64) + 0.9 * f.astype(np.float64)).astype(np.float32)
    )
    # 16-bit frames keep their range
    u16 = np.full((4, 4), 60000, np.uint16)
    np.testing.assert_array_equal(n2n_displace(u16, np.full((4, 4), 65535, np.uint16), 0.5), 62768)
    # the noise is stretched bilinearly: a horizontal ramp stays a non-decreasing ramp
    ramp = np.tile(np.arange(0, 250, 50, dtype=np.uint8), (3, 1))
    stretched = n2n_displace(np.zeros((10, 40), np.uint8), ramp, 1.0)
    assert (np.diff(stretched.astype(int), axis=1) >= 0).all() and stretched[:, -1].min() == 200
    with pytest.raises(ValueError, match="INPUT.SIRST5K.ALPHA"):
        n2n_displace(img, noise, 1.5)


@pytest.mark.parametrize(
    "noise_shape,shape",
    [((5, 7), (20, 30)), ((32, 32), (256, 256)), ((31, 17), (40, 9)), ((1, 5), (6, 6))],
)
def test_noise_resize_is_torch_bilinear(noise_shape, shape):
    """Eq. 2 against an independent resize, torch's bilinear interpolation with pixel centres
    aligned (align_corners=False, as the authors' torchvision Resize); then eq. 3 on float frames
    (no rounding), gray and BGR (the gray noise is added to every channel)."""
    rng = np.random.default_rng(6)
    noise = rng.integers(0, 256, noise_shape, dtype=np.uint8)
    resized = F.interpolate(
        torch.from_numpy(noise.astype(np.float64))[None, None],
        size=shape,
        mode="bilinear",
        align_corners=False,
    )[0, 0].numpy()
    img = rng.random(shape) * 255
    np.testing.assert_allclose(n2n_displace(img, noise, 0.3), 0.3 * resized + 0.7 * img, atol=1e-4)
    img3 = rng.random((*shape, 3)) * 255
    np.testing.assert_allclose(
        n2n_displace(img3, noise, 0.3), 0.3 * resized[..., None] + 0.7 * img3, atol=1e-4
    )


def test_to_gray_uses_bt601():
    bgr = np.array([[[10, 20, 30]]], np.uint8)
    assert to_gray(bgr)[0, 0] == pytest.approx(0.114 * 10 + 0.587 * 20 + 0.299 * 30)
    assert to_gray(np.full((2, 2, 3), 77, np.uint8)).tolist() == [[77, 77], [77, 77]]


# ----------------------------------------------------------------------------- eq. 4
def _rot_ccw(patch, quarter_turns):
    """Counter-clockwise rotation by explicit index formulas (not np.rot90)."""
    s = patch.shape[0]
    out = np.empty_like(patch)
    for i in range(s):
        for j in range(s):
            src = {0: (i, j), 1: (j, s - 1 - i), 2: (s - 1 - i, s - 1 - j), 3: (s - 1 - j, i)}
            out[i, j] = patch[src[quarter_turns % 4]]
    return out


def _frame_with_target(h=16, w=16, center=(6, 9), seed=0):
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    cy, cx = center
    mask[cy, cx] = 1
    return img, mask


def test_paper_rotation_changes_only_the_patch_and_keeps_the_label():
    img, mask = _frame_with_target()
    out = negative_augment(img, mask, size=3, angles=(0, 90, 180, 270))
    assert len(out) == 4
    inside = np.zeros(mask.shape, bool)
    inside[5:8, 8:11] = True
    for k, (im, m) in enumerate(out):
        assert im.dtype == img.dtype and m.dtype == mask.dtype
        np.testing.assert_array_equal(m, mask)  # label unchanged (sec. III-B)
        np.testing.assert_array_equal(im[~inside], img[~inside])
        np.testing.assert_array_equal(im[5:8, 8:11], _rot_ccw(img[5:8, 8:11], k))
    np.testing.assert_array_equal(out[0][0], img)  # angle 0: unchanged
    assert not np.array_equal(out[1][0], img)
    # angle conventions: 360 == 0, -90 == 270, 450 == 90
    same = negative_augment(img, mask, 3, (360, -90, 450))
    for (a, _), (b, _) in zip(same, [out[0], out[3], out[1]]):
        np.testing.assert_array_equal(a, b)


def test_constant_patch_is_not_changed():
    img = np.full((12, 12), 40, np.uint8)
    img[:2] = 200  # texture far from the target
    mask = np.zeros((12, 12), np.uint8)
    mask[6:8, 6:8] = 1
    for mode in ("paper", "code"):
        for im, _ in negative_augment(img, mask, 5, (0, 90, 180, 270), mode):
            np.testing.assert_array_equal(im, img)


def test_code_mode_flips_then_rotates_image_and_mask():
    img, mask = _frame_with_target(40, 40, center=(20, 20))
    mask[19:22, 21] = 1  # a 1 x 3 + 1 target: its mask patch is not symmetric
    ((cy, cx),) = target_centers(mask)
    y0, x0, s = patch_box((cy, cx), 32, mask.shape)
    assert s == 32 and (y0, x0) == (cy - 16, cx - 16)
    out = negative_augment(img, mask, angles=(0, 90), mode="code")  # default size 32
    for k, (im, m) in enumerate(out):
        win = (slice(y0, y0 + s), slice(x0, x0 + s))
        np.testing.assert_array_equal(im[win], _rot_ccw(img[win][:, ::-1], k))
        np.testing.assert_array_equal(m[win], _rot_ccw(mask[win][:, ::-1], k))
        outside = np.ones(mask.shape, bool)
        outside[win] = False
        np.testing.assert_array_equal(im[outside], img[outside])
        assert m.sum() == mask.sum()
    assert not np.array_equal(out[0][1], mask)  # angle 0 is a flip that moves the label


@pytest.mark.parametrize(
    "center,box",
    [
        ((0, 0), (0, 0)),
        ((15, 15), (13, 13)),
        ((0, 9), (0, 8)),
        ((8, 15), (7, 13)),
        ((1, 1), (0, 0)),
    ],
)
def test_targets_at_the_border_get_a_whole_patch(center, box):
    img, mask = _frame_with_target(16, 16, center=center, seed=4)
    assert patch_box(target_centers(mask)[0], 3, mask.shape) == (*box, 3)
    y0, x0 = box
    ((im, m),) = negative_augment(img, mask, 3, (180,))
    np.testing.assert_array_equal(
        im[y0 : y0 + 3, x0 : x0 + 3], img[y0 : y0 + 3, x0 : x0 + 3][::-1, ::-1]
    )
    im[y0 : y0 + 3, x0 : x0 + 3] = img[y0 : y0 + 3, x0 : x0 + 3]
    np.testing.assert_array_equal(im, img)
    np.testing.assert_array_equal(m, mask)


def test_tiny_frames_and_several_targets():
    # a 2 x 5 frame: the 3 x 3 patch shrinks to 2 x 2
    img = np.arange(10, dtype=np.uint8).reshape(2, 5)
    mask = np.zeros((2, 5), np.uint8)
    mask[0, 4] = 1
    ((im, _),) = negative_augment(img, mask, 3, (90,))
    np.testing.assert_array_equal(im[:, 3:], _rot_ccw(img[:, 3:], 1))
    np.testing.assert_array_equal(im[:, :3], img[:, :3])
    # a 1-pixel-high frame: 1 x 1 patches, nothing changes
    line = np.arange(6, dtype=np.uint8)[None]
    for im, _ in negative_augment(line, (line > 3).astype(np.uint8), 3, (90, 180)):
        np.testing.assert_array_equal(im, line)
    # two targets (8-connected: the diagonal pair is one target) rotated each in its own patch
    img = np.random.default_rng(5).integers(0, 256, (20, 20), dtype=np.uint8)
    mask = np.zeros((20, 20), np.uint8)
    mask[3, 3] = mask[4, 4] = 1  # one target, centroid (3.5, 3.5) -> (4, 4)
    mask[15, 12] = 1
    assert target_centers(mask) == [(4, 4), (15, 12)]
    ((im, _),) = negative_augment(img, mask, 3, (270,))
    expected = img.copy()
    expected[3:6, 3:6] = _rot_ccw(img[3:6, 3:6], 3)
    expected[14:17, 11:14] = _rot_ccw(img[14:17, 11:14], 3)
    np.testing.assert_array_equal(im, expected)
    # per target (the authors' file layout): each pair changes one target's patch only
    per = negative_augment(img, mask, 3, (0, 90), per_target=True)
    assert len(per) == 4
    np.testing.assert_array_equal(per[0][0], img)
    assert (per[1][0] != img)[14:17, 11:14].sum() == 0 and (per[1][0] != img).any()
    assert (per[3][0] != img)[3:6, 3:6].sum() == 0 and (per[3][0] != img).any()
    # no target: one unchanged copy per angle
    empty = negative_augment(img, np.zeros_like(mask), 3, (0, 90, 180))
    assert len(empty) == 3 and all(np.array_equal(i, img) for i, _ in empty)
    assert negative_augment(img, np.zeros_like(mask), 3, (90,), per_target=True) == []


@FAST
@given(
    h=st.integers(1, 14),
    w=st.integers(1, 14),
    size=st.integers(1, 6),
    mode=st.sampled_from(["paper", "code"]),
    angle=st.sampled_from([0, 90, 180, 270]),
    seed=st.integers(0, 2**16),
    density=st.floats(0.0, 0.4),
)
def test_rotation_invariants(h, w, size, mode, angle, seed, density):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w), dtype=np.uint8)
    mask = (rng.random((h, w)) < density).astype(np.uint8)
    ((im, m),) = negative_augment(img, mask, size, (angle,), mode)
    boxes = [patch_box(c, size, mask.shape) for c in target_centers(mask)]
    touched = np.zeros((h, w), bool)
    for y0, x0, s in boxes:
        assert 0 <= y0 <= h - s and 0 <= x0 <= w - s and s == min(size, h, w)
        touched[y0 : y0 + s, x0 : x0 + s] = True
    # nothing outside the patches changes; inside, pixels are only moved around
    np.testing.assert_array_equal(im[~touched], img[~touched])
    assert sorted(im.ravel()) == sorted(img.ravel())
    if mode == "paper":
        np.testing.assert_array_equal(m, mask)
        if angle == 0:
            np.testing.assert_array_equal(im, img)
    else:
        np.testing.assert_array_equal(m[~touched], mask[~touched])
        assert m.sum() == mask.sum()


@FAST
@given(h=st.integers(1, 30), w=st.integers(1, 30), seed=st.integers(0, 2**16))
def test_target_centers_are_rounded_component_centroids(h, w, seed):
    rng = np.random.default_rng(seed)
    mask = (rng.random((h, w)) < rng.random() * 0.4).astype(np.uint8)
    # OpenCV's components (its own labelling order), put in raster order of their first pixel
    n, labels, _, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
    first = [np.flatnonzero(labels == k)[0] for k in range(1, n)]
    expected = [
        (int(np.floor(centroids[k][1] + 0.5)), int(np.floor(centroids[k][0] + 0.5)))
        for k in 1 + np.argsort(first)
    ]
    assert target_centers(mask) == expected
    assert target_centers(mask * 255) == expected


def test_negative_augment_errors_name_the_keys():
    img, mask = _frame_with_target()
    with pytest.raises(ValueError, match="INPUT.SIRST5K.ANGLES"):
        negative_augment(img, mask, 3, (45,))
    with pytest.raises(ValueError, match="INPUT.SIRST5K.MODE"):
        negative_augment(img, mask, 3, (90,), mode="flip")
    with pytest.raises(ValueError, match="INPUT.SIRST5K.PATCH_SIZE"):
        negative_augment(img, mask, 0)
    with pytest.raises(ValueError, match="share"):
        negative_augment(img, mask[:5])


# ----------------------------------------------------------------------------- online
def test_noise_bank_from_paths_equals_from_arrays():
    pairs = _nudt_frames(4)
    from_paths = NoiseBank.from_frames([p for p, _ in pairs], grid=8)
    arrays = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p, _ in pairs]
    from_arrays = NoiseBank.from_frames(arrays, grid=8)
    assert len(from_paths) == len(from_arrays) > 0
    for a, b in zip(from_paths.patches, from_arrays.patches):
        assert a.ndim == 2
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="INPUT.SIRST5K.MAX_VAR"):
        NoiseBank.from_frames([np.zeros((16, 16), np.uint8)])
    with pytest.raises(IRDataError, match="nope.png"):
        NoiseBank.from_frames(["nope.png"])


def test_augmentation_closed_form_group_and_determinism():
    img, mask = _frame_with_target(16, 16, center=(8, 8))
    bank = NoiseBank([np.full((4, 4), 100, np.uint8)])
    aug = SIRST5KAugmentation(bank, n2n_prob=1.0, alpha=0.25, negative=True, patch_size=3)
    assert aug.group_size is None  # per target (the paper's): 4 per target, here 1 target
    group = aug(img, mask, np.random.default_rng(0))
    assert len(group) == 4
    blended = np.vectorize(lambda i: _blend_fraction(100, i, 0.25))(img).astype(np.uint8)
    np.testing.assert_array_equal(group[0][0], blended)
    np.testing.assert_array_equal(group[2][0][7:10, 7:10], blended[7:10, 7:10][::-1, ::-1])
    assert all(np.array_equal(m, mask) for _, m in group)

    # no negatives, no N2N: the pair itself, as copies
    plain = SIRST5KAugmentation(None, n2n_prob=0.0)
    ((im, m),) = plain(img, mask, 0)
    np.testing.assert_array_equal(im, img)
    assert im is not img and plain.group_size == 1

    # the same generator seed gives the same output; seeds differ somewhere
    pairs = _nudt_frames(3)
    bank = NoiseBank.from_frames([p for p, _ in pairs])
    aug = SIRST5KAugmentation(bank, n2n_prob=0.5, alpha=0.1)
    frame = read_ir_image(str(pairs[0][0]))[..., 0]
    mask = read_ir_mask(str(pairs[0][1]))
    a = [aug(frame, mask, np.random.default_rng(s))[0][0] for s in range(8)]
    b = [aug(frame, mask, np.random.default_rng(s))[0][0] for s in range(8)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert len({x.tobytes() for x in a}) > 2  # different patches, and frames left alone


def test_from_config_reads_the_keys():
    pairs = _nudt_frames(2)
    cfg = ir_cfg(
        opts=[
            "INPUT.SIRST5K.N2N_PROB", 1.0,
            "INPUT.SIRST5K.ALPHA", 0.3,
            "INPUT.SIRST5K.GRID", 4,
            "INPUT.SIRST5K.MAX_VAR", 400.0,
            "INPUT.SIRST5K.NEGATIVE", True,
            "INPUT.SIRST5K.PATCH_SIZE", 32,
            "INPUT.SIRST5K.ANGLES", [0, 180],
            "INPUT.SIRST5K.MODE", "code",
            "INPUT.SIRST5K.PER_TARGET", False,
        ]
    )  # fmt: skip
    aug = SIRST5KAugmentation.from_config(cfg, [p for p, _ in pairs])
    assert aug.per_target is False
    assert (aug.n2n_prob, aug.alpha, aug.negative, aug.patch_size) == (1.0, 0.3, True, 32)
    assert aug.angles == (0, 180) and aug.mode == "code" and aug.group_size == 2
    assert all(p.shape == (64, 64) for p in aug.noise_bank.patches)
    expected = NoiseBank.from_frames([p for p, _ in pairs], grid=4, max_var=400.0, max_mean=100.0)
    assert len(aug.noise_bank) == len(expected)
    # no N2N: no bank, the frames are not read
    cfg = ir_cfg(opts=["INPUT.SIRST5K.N2N_PROB", 0.0])
    assert SIRST5KAugmentation.from_config(cfg, ["missing.png"]).noise_bank is None
    for key, value in [("ANGLES", [0, 30]), ("MODE", "rot"), ("ALPHA", 2.0), ("N2N_PROB", -1.0)]:
        cfg = ir_cfg(opts=["INPUT.SIRST5K.N2N_PROB", 0.0, f"INPUT.SIRST5K.{key}", value])
        with pytest.raises(ValueError, match=f"INPUT.SIRST5K.{key}"):
            SIRST5KAugmentation.from_config(cfg, [])


# ----------------------------------------------------------------------------- loss
def test_negative_sample_loss_closed_forms_and_gradients():
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], requires_grad=True)
    groups = [7, 7, 2, 2, 2]
    assert negative_sample_loss(losses, groups, "sum").item() == pytest.approx((3 + 12) / 2)
    assert negative_sample_loss(losses, groups, "min").item() == pytest.approx((1 + 3) / 2)
    assert negative_sample_loss(losses, groups, "none").item() == pytest.approx(3.0)
    negative_sample_loss(losses, torch.tensor(groups), "min").backward()
    assert losses.grad.tolist() == [0.5, 0.0, 0.5, 0.0, 0.0]
    losses.grad = None
    negative_sample_loss(losses, groups, "sum").backward()
    assert losses.grad.tolist() == [0.5] * 5
    # Algorithm 2 as written compares each loss with its predecessor: [0.9, 0.5, 0.7, 0.6] keeps
    # 0.5 at the second variant, then 0.6 (0.6 < 0.7); the running minimum keeps 0.5
    alg2 = torch.tensor([0.9, 0.5, 0.7, 0.6], requires_grad=True)
    assert negative_sample_loss(alg2, [0] * 4, "min_literal").item() == pytest.approx(0.6)
    assert negative_sample_loss(alg2, [0] * 4, "min").item() == pytest.approx(0.5)
    negative_sample_loss(alg2, [0] * 4, "min_literal").backward()
    assert alg2.grad.tolist() == [0.0, 0.0, 0.0, 1.0]
    rising = torch.tensor([0.2, 0.3, 0.4])  # no loss below its predecessor: the first one stays
    assert negative_sample_loss(rising, [1] * 3, "min_literal").item() == pytest.approx(0.2)
    with pytest.raises(ValueError, match="MODEL.IRSTD.NEG_LOSS"):
        negative_sample_loss(losses, groups, "max")
    with pytest.raises(ValueError, match="group_ids"):
        negative_sample_loss(losses, groups[:3], "sum")
    with pytest.raises(ValueError, match="non-empty"):
        negative_sample_loss(torch.zeros(0), [], "sum")


@FAST
@given(
    data=st.lists(
        st.tuples(st.floats(0.0, 1.0, allow_nan=False), st.integers(-3, 3)), min_size=1, max_size=12
    ),
    mode=st.sampled_from(["none", "sum", "min", "min_literal"]),
)
def test_negative_sample_loss_matches_a_loop(data, mode):
    values = torch.tensor([v for v, _ in data], dtype=torch.float64)
    ids = [g for _, g in data]
    groups = {}
    for v, g in data:
        groups.setdefault(g, []).append(v)
    if mode == "none":
        expected = sum(v for v, _ in data) / len(data)
    else:

        def literal(vs):  # Algorithm 2 line by line: L <- L_i whenever L_i < L_{i-1}
            kept = vs[0]
            for previous, current in zip(vs, vs[1:]):
                if current < previous:
                    kept = current
            return kept

        agg = {"sum": sum, "min": min, "min_literal": literal}[mode]
        expected = sum(agg(vs) for vs in groups.values()) / len(groups)
    got = negative_sample_loss(values, ids, mode)
    assert got.item() == pytest.approx(expected, abs=1e-12)
    assert got.dim() == 0
    # for non-negative losses the minimum of a group never exceeds its sum
    if mode in ("min", "min_literal"):
        assert got.item() <= negative_sample_loss(values, ids, "sum").item() + 1e-12
        assert got.item() >= negative_sample_loss(values, ids, "min").item() - 1e-12


# ----------------------------------------------------------------------------- offline tool
@pytest.fixture
def tiny_dataset():
    """A throw-away semantic dataset over 4 real NUDT-SIRST frames, unregistered afterwards."""
    from detectron2.data import DatasetCatalog

    pairs = _nudt_frames(4)
    name = f"test_sirst5k_{uuid.uuid4().hex[:8]}"
    dicts = [
        {
            "file_name": str(p),
            "sem_seg_file_name": str(m),
            "height": 256,
            "width": 256,
            "image_id": i,
        }
        for i, (p, m) in enumerate(pairs)
    ]
    DatasetCatalog.register(name, lambda: dicts)
    yield name, pairs
    DatasetCatalog.remove(name)


def _run(name, out, *extra):
    return synthesize_sirst5k.main(["--dataset", name, "--out", str(out), "--no-progress", *extra])


def _files(root):
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_cli_writes_the_sirst_layout(tiny_dataset, tmp_path):
    name, pairs = tiny_dataset
    out = tmp_path / "s5k"
    written = _run(name, out, "--per-image", "2", "--seed", "3")
    stems = [p.stem for p, _ in pairs]
    assert written[:4] == stems and len(written) == 4 + 8
    assert written[4:] == [f"{s}_g{k}" for k in range(2) for s in stems]
    assert (out / "50_50" / "train.txt").read_text().splitlines() == written
    assert sorted(p.stem for p in (out / "images").iterdir()) == sorted(written)
    assert sorted(p.stem for p in (out / "masks").iterdir()) == sorted(written)
    assert not list(tmp_path.glob(".s5k.tmp-*"))  # the temporary folder was renamed
    for (img_path, mask_path), stem in zip(pairs, stems):
        src = cv2.imread(str(img_path), cv2.IMREAD_UNCHANGED)[..., 0]
        src_mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
        orig = cv2.imread(str(out / "images" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(orig, src)  # originals as read (gray)
        np.testing.assert_array_equal(cv2.imread(str(out / "masks" / f"{stem}.png"), 0), src_mask)
        boxes = [patch_box(c, 3, src_mask.shape) for c in target_centers(src_mask)]
        for k in range(2):
            gen = cv2.imread(str(out / "images" / f"{stem}_g{k}.png"), cv2.IMREAD_UNCHANGED)
            gen_mask = cv2.imread(str(out / "masks" / f"{stem}_g{k}.png"), cv2.IMREAD_UNCHANGED)
            assert gen.shape == src.shape and gen.dtype == np.uint8
            assert set(np.unique(gen_mask)) <= {0, 255}
            np.testing.assert_array_equal(gen_mask, src_mask)  # paper mode: label unchanged
            outside = np.ones(src.shape, bool)
            for y0, x0, s in boxes:
                outside[y0 : y0 + s, x0 : x0 + s] = False
            # outside the rotated patches only the N2N blend acts: |I' - I| <= 0.1 * 255 + 0.5
            diff = np.abs(gen.astype(int) - src.astype(int))[outside]
            assert diff.max() <= 26 and diff.any()
    meta = (out / "synthesis.json").read_text()
    assert '"generated": 8' in meta and '"seed": 3' in meta
    # the output registers as any IRSTD folder
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from ir_d2.data import register_irstd

    register_irstd(
        f"{name}_out", str(out / "images"), str(out / "masks"), str(out / "50_50/train.txt")
    )
    try:
        records = DatasetCatalog.get(f"{name}_out")
    finally:
        DatasetCatalog.remove(f"{name}_out")
        MetadataCatalog.remove(f"{name}_out")
    assert [r["image_id"] for r in records] == written
    assert all(
        Path(r["file_name"]).is_file() and Path(r["sem_seg_file_name"]).is_file() for r in records
    )


def test_cli_is_deterministic_and_refuses_to_overwrite(tiny_dataset, tmp_path):
    name, _ = tiny_dataset
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    _run(name, a, "--per-image", "1.5", "--seed", "7")
    _run(name, b, "--per-image", "1.5", "--seed", "7")
    _run(name, c, "--per-image", "1.5", "--seed", "8")
    fa, fb, fc = _files(a), _files(b), _files(c)
    assert len([k for k in fa if k.startswith("images/")]) == 4 + 6  # round(1.5 * 4)
    assert fa == fb
    assert fa.keys() == fc.keys()
    generated = [k for k in fa if k.startswith("images/") and "_g" in k]
    originals = [k for k in fa if k.startswith("images/") and "_g" not in k]
    assert all(fa[k] == fc[k] for k in originals)
    assert any(fa[k] != fc[k] for k in generated)  # another seed, other noise patches
    # a non-empty folder is refused and left alone; --overwrite replaces the tool's own set
    with pytest.raises(SystemExit, match="--overwrite"):
        _run(name, a, "--per-image", "1")
    assert _files(a) == fa
    _run(name, a, "--per-image", "1", "--seed", "7", "--overwrite")
    assert len(list((a / "images").iterdir())) == 8
    # an empty folder is fine
    (tmp_path / "empty").mkdir()
    _run(name, tmp_path / "empty", "--per-image", "0")
    assert len(list((tmp_path / "empty" / "images").iterdir())) == 4
    assert not list(tmp_path.glob(".*.tmp-*"))


def test_cli_errors_and_entry_point(tiny_dataset, tmp_path):
    name, _ = tiny_dataset
    with pytest.raises(SystemExit, match="not registered"):
        _run("no_such_dataset_xyz", tmp_path / "x")
    assert not (tmp_path / "x").exists()
    with pytest.raises(SystemExit, match="--angles"):
        _run(name, tmp_path / "y", "--angles", "0", "45")
    assert not list(tmp_path.iterdir())
    r = subprocess.run(
        [sys.executable, "-m", "ir_d2.tools.synthesize_sirst5k", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and "--per-image" in r.stdout and "--overwrite" in r.stdout
