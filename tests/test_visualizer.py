"""The small-target overlay (pure NumPy/OpenCV)."""

import numpy as np
import pytest

from ir_d2.utils.visualizer import draw_small_targets


def test_heat_map_only_where_probable_and_markers_at_targets():
    image = np.full((60, 80, 3), 100, np.uint8)
    prob = np.zeros((60, 80), np.float32)
    prob[28:33, 38:43] = 0.9
    out = draw_small_targets(image, prob, [{"centroid": (40.0, 30.0), "area": 25, "score": 0.9}])
    # far from the target and its marker the frame is untouched
    assert np.array_equal(out[:10, :10], image[:10, :10])
    # the blob is blended with the JET colour of 0.9 (red-ish in BGR)
    blob = out[30, 40].astype(int)
    assert blob[2] > blob[0] and not np.array_equal(blob, image[30, 40])
    # the marker: an anti-aliased green circle of radius int(max(6, 1.5 sqrt(25))) = 7 around it
    for y, x in ((30, 47), (30, 33), (23, 40), (37, 40)):
        b, g, r = out[y, x].astype(int)
        assert g > 200 and b < 50 and r < 50, (y, x, out[y, x])
    assert np.array_equal(out[30, 49], image[30, 49])  # outside the ring


def test_gray_image_and_size_mismatch():
    out = draw_small_targets(np.zeros((8, 8), np.uint8), np.zeros((8, 8)))
    assert out.shape == (8, 8, 3) and not out.any()
    with pytest.raises(ValueError, match="differ"):
        draw_small_targets(np.zeros((8, 8, 3), np.uint8), np.zeros((4, 8)))
