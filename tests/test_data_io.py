"""Reading IR frames and masks: 8-bit modes, 16-bit PNG/TIFF, normalisation, bad files."""

import logging

import cv2
import numpy as np
import pytest
from conftest import shared_data_dir
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from ir_d2.data.io import (
    IRDataError,
    normalize_to_uint8,
    read_image_size,
    read_ir_image,
    read_ir_mask,
    to_bgr_uint8,
)

RNG = np.random.default_rng(0)


def _minmax(x):
    x = x.astype(np.float64)
    return np.rint((x - x.min()) / (x.max() - x.min()) * 255).astype(np.uint8)


# ----------------------------------------------------------------------------- 8-bit modes
def test_8bit_modes_to_bgr(tmp_path):
    gray = RNG.integers(0, 256, (12, 17), dtype=np.uint8)
    rgb = RNG.integers(0, 256, (12, 17, 3), dtype=np.uint8)
    rgba = np.dstack([rgb, RNG.integers(0, 256, (12, 17), dtype=np.uint8)])
    Image.fromarray(gray).save(tmp_path / "l.png")
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    Image.fromarray(np.dstack([gray, gray])).save(tmp_path / "la.png")  # LA
    # palette image: index i -> colour (i, 255 - i, i // 2)
    pal = Image.fromarray(gray, mode=None).convert("P", palette=Image.Palette.ADAPTIVE)
    palette = [v for i in range(256) for v in (i, 255 - i, i // 2)]
    pal.putpalette(palette)
    pal.save(tmp_path / "p.png")
    index = np.asarray(Image.open(tmp_path / "p.png"))

    out = read_ir_image(tmp_path / "l.png")
    assert out.shape == (12, 17, 3) and out.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)
    np.testing.assert_array_equal(read_ir_image(tmp_path / "la.png")[:, :, 1], gray)
    np.testing.assert_array_equal(read_ir_image(tmp_path / "rgb.png"), rgb[:, :, [2, 1, 0]])
    np.testing.assert_array_equal(read_ir_image(tmp_path / "rgba.png"), rgb[:, :, [2, 1, 0]])
    p = read_ir_image(tmp_path / "p.png")
    np.testing.assert_array_equal(p[:, :, 2], index)  # R
    np.testing.assert_array_equal(p[:, :, 1], 255 - index)  # G
    np.testing.assert_array_equal(p[:, :, 0], index // 2)  # B
    # 8-bit frames are never rescaled, whatever NORMALIZE says
    np.testing.assert_array_equal(read_ir_image(tmp_path / "l.png", normalize="percentile"), out)
    assert read_image_size(tmp_path / "l.png") == (12, 17)


# ----------------------------------------------------------------------------- 16-bit frames
@pytest.mark.parametrize("ext", ["png", "tiff"])
def test_16bit_gray_frames_all_normalisations(tmp_path, ext):
    raw = RNG.integers(3000, 9000, (40, 50)).astype(np.uint16)
    raw[0, 0], raw[0, 1] = 100, 60000  # outliers the percentile mode clips away
    path = tmp_path / f"frame16.{ext}"
    Image.fromarray(raw).save(path)
    assert Image.open(path).mode == "I;16"

    mm = read_ir_image(path, normalize="minmax")
    assert mm.shape == (40, 50, 3) and (mm[:, :, 0] == mm[:, :, 2]).all()
    np.testing.assert_array_equal(mm[:, :, 0], _minmax(raw))
    assert mm.min() == 0 and mm.max() == 255

    lo, hi = np.percentile(raw.astype(np.float64), [2.0, 98.0])
    expected = np.rint(np.clip((raw - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    pc = read_ir_image(path, normalize="percentile", percentiles=[2.0, 98.0])
    np.testing.assert_array_equal(pc[:, :, 1], expected)
    # the percentile mode spreads the bulk of the frame: more distinct levels than min-max here
    assert len(np.unique(pc)) > len(np.unique(mm))

    small = (raw % 300).astype(np.uint16)
    Image.fromarray(small).save(path)
    none = read_ir_image(path, normalize="none")
    np.testing.assert_array_equal(none[:, :, 0], np.minimum(small, 255).astype(np.uint8))


def test_16bit_colour_and_float_tiff(tmp_path):
    bgr = np.dstack(
        [
            np.full((8, 9), 1000, np.uint16),
            np.full((8, 9), 2000, np.uint16),
            np.linspace(0, 4000, 72).reshape(8, 9).astype(np.uint16),
        ]
    )
    cv2.imwrite(str(tmp_path / "c16.tiff"), bgr)
    cv2.imwrite(str(tmp_path / "c16.png"), bgr)
    for name in ("c16.tiff", "c16.png"):
        out = read_ir_image(tmp_path / name)
        # statistics over all channels together: channel order and relative levels survive
        np.testing.assert_array_equal(out, _minmax(bgr))
        assert (out[:, :, 0] == 64).all() and (out[:, :, 1] == 128).all()
    f = np.linspace(-1.5, 2.5, 30, dtype=np.float32).reshape(5, 6)
    Image.fromarray(f).save(tmp_path / "f.tiff")
    np.testing.assert_array_equal(read_ir_image(tmp_path / "f.tiff")[:, :, 0], _minmax(f))


def test_to_bgr_uint8_shapes_and_errors():
    g16 = np.arange(20, dtype=np.uint16).reshape(4, 5) * 1000
    for a in (g16, g16[:, :, None]):
        out = to_bgr_uint8(a)
        assert out.shape == (4, 5, 3) and out.flags.c_contiguous
        np.testing.assert_array_equal(out[:, :, 2], _minmax(g16))
    bgra = RNG.integers(0, 256, (4, 5, 4), dtype=np.uint8)
    np.testing.assert_array_equal(to_bgr_uint8(bgra), bgra[:, :, :3])
    for bad in (np.zeros((4, 5, 2)), np.zeros(7), np.zeros((0, 5))):
        with pytest.raises(ValueError, match="HxW"):
            to_bgr_uint8(bad)
    with pytest.raises(ValueError, match="INPUT.IR.NORMALIZE"):
        to_bgr_uint8(g16, normalize="gamma")
    with pytest.raises(ValueError, match="INPUT.IR.PERCENTILES"):
        to_bgr_uint8(g16, normalize="percentile", percentiles=[99, 1])


def test_non_finite_samples_map_to_zero_and_are_left_out_of_the_statistics():
    f = np.linspace(10.0, 50.0, 20).reshape(4, 5)
    f[0, 0], f[1, 2], f[3, 4] = np.nan, np.inf, -np.inf
    finite = np.isfinite(f)
    lo, hi = f[finite].min(), f[finite].max()
    expected = np.where(finite, np.rint((np.where(finite, f, lo) - lo) / (hi - lo) * 255), 0)
    np.testing.assert_array_equal(normalize_to_uint8(f, "minmax"), expected.astype(np.uint8))
    lo, hi = np.percentile(f[finite], [10.0, 90.0])
    expected = np.rint(np.clip((np.where(finite, f, lo) - lo) / (hi - lo), 0, 1) * 255)
    got = normalize_to_uint8(f, "percentile", (10.0, 90.0))
    np.testing.assert_array_equal(got, np.where(finite, expected, 0).astype(np.uint8))
    none = normalize_to_uint8(f, "none")
    np.testing.assert_array_equal(none, np.where(finite, np.minimum(f, 255), 0).round())
    all_bad = np.full((2, 3), np.nan)
    for mode in ("minmax", "percentile", "none"):
        assert not normalize_to_uint8(all_bad, mode).any()


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(np.uint16, hnp.array_shapes(min_dims=2, max_dims=2, max_side=12)),
    st.sampled_from(["minmax", "percentile", "none"]),
)
def test_normalisation_is_monotone_and_spans_the_range(x, mode):
    y = normalize_to_uint8(x, mode, (5.0, 95.0))
    assert y.shape == x.shape and y.dtype == np.uint8
    order = np.argsort(x, axis=None, kind="stable")
    assert (np.diff(y.ravel()[order].astype(int)) >= 0).all()  # order preserving
    if mode == "minmax":
        if x.min() < x.max():
            assert y.min() == 0 and y.max() == 255
        else:
            assert (y == 0).all()


# ----------------------------------------------------------------------------- masks
def test_irstd1k_mask_with_value_64():
    root = shared_data_dir("irstd-1k")
    path = root / "masks" / "XDU0.png"
    values, counts = np.unique(np.asarray(Image.open(path)), return_counts=True)
    assert values.tolist() == [0, 64, 255]
    n255, n64 = int(counts[2]), int(counts[1])
    mask = read_ir_mask(path)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    assert mask.sum() == n255  # "> 127": the 64-valued pixel is background
    assert read_ir_mask(path, threshold=63).sum() == n255 + n64
    assert (mask == 0).sum() == mask.size - n255


def test_zero_one_mask_warns(tmp_path, caplog):
    m = np.zeros((6, 6), np.uint8)
    m[2:4, 2:4] = 1
    Image.fromarray(m).save(tmp_path / "m01.png")
    with caplog.at_level(logging.WARNING, logger="ir_d2"):
        assert read_ir_mask(tmp_path / "m01.png", dataset_name="toy").sum() == 0
    assert "m01.png" in caplog.text and "MASK_THRESHOLD" in caplog.text
    assert read_ir_mask(tmp_path / "m01.png", threshold=0).sum() == 4


# ----------------------------------------------------------------------------- bad files
def test_bad_files_name_the_file_and_the_dataset(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(RNG.integers(0, 256, (64, 64), dtype=np.uint8)).save(good)
    data = good.read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    cases = {
        "truncated.png": "corrupt",
        "empty.png": "empty",
        "text.png": "corrupt",
        "missing.png": "does not exist",
    }
    for name, reason in cases.items():
        for reader in (read_ir_image, read_ir_mask):
            with pytest.raises(IRDataError) as info:
                reader(tmp_path / name, dataset_name="sirst_test")
            message = str(info.value)
            assert str(tmp_path / name) in message
            assert "dataset 'sirst_test'" in message and reason in message
    assert read_image_size(tmp_path / "text.png") is None
