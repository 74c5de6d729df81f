"""
Targets of a mask and a mask's size, one implementation each for data, evaluation, modeling and
engine (NumPy / SciPy / OpenCV; no detectron2, no torch).

- Targets are the 8-connected components of a mask, as BasicIRSTD's Pd / Fa count them
  (skimage's ``measure.label(connectivity=2)``): :func:`label_components`,
  :func:`connected_components` (with centroids and areas), :func:`connected_targets` (of a
  probability map).
- A mask whose size differs from its image's is resized (nearest) only when asked and only when
  the aspect ratios agree, else refused with a message naming both files
  (:func:`fit_mask_to_image`, :func:`size_mismatch_message`).
"""

from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
from scipy import ndimage

__all__ = [
    "CONFIG_SIZE_FIX",
    "EIGHT_CONNECTED",
    "IRDataError",
    "RESIZE_FLAG_FIX",
    "aspect_ratios_agree",
    "connected_components",
    "connected_targets",
    "fit_mask_to_image",
    "label_components",
    "size_mismatch_message",
]

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


class IRDataError(ValueError):
    """A missing, empty, corrupt or inconsistent image or mask. The message names the file(s) and
    the dataset; ``DATALOADER.SKIP_BAD_SAMPLES`` lets the mappers skip such a sample instead."""


def label_components(mask: np.ndarray) -> Tuple[np.ndarray, int]:
    """8-connected components of ``mask != 0``: ``(labels, n)``, labels an int array of the
    mask's shape (0 = background, 1..n in raster order of each component's first pixel)."""
    labels, n = ndimage.label(np.asarray(mask) != 0, structure=EIGHT_CONNECTED)
    return labels, int(n)


def connected_components(mask: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    8-connected components of a 2-D mask (non-zero = target), labelled 1..n in raster order of
    their first pixel (skimage's ``measure.label(connectivity=2)`` order, which BasicIRSTD
    matches in).

    Returns:
        labels: int array of the mask's shape, 0 = background;
        centroids: (n, 2) float, (row, col) mean of each component's pixel coordinates;
        areas: (n,) int, pixels per component.
    """
    labels, n = label_components(mask)
    if n == 0:
        return labels, np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
    flat = labels.ravel()
    idx = np.flatnonzero(flat)
    lab = flat[idx]
    rows, cols = np.divmod(idx, labels.shape[1])
    areas = np.bincount(lab, minlength=n + 1)[1:]
    centroids = np.stack(
        [
            np.bincount(lab, weights=rows, minlength=n + 1)[1:] / areas,
            np.bincount(lab, weights=cols, minlength=n + 1)[1:] / areas,
        ],
        axis=1,
    )
    return labels, centroids, areas.astype(np.int64)


def connected_targets(prob: np.ndarray, threshold: float = 0.5) -> List[Dict]:
    """
    The targets of a 2-D probability map: the 8-connected components of ``prob > threshold``, in
    label order, each as ``{"centroid": (x, y), "area": int, "score": float}`` where ``(x, y)`` is
    the (column, row) mean of its pixels and ``score`` the highest probability inside it.
    """
    prob = np.asarray(prob, dtype=np.float64)
    labels, centroids, areas = connected_components(prob > threshold)
    if len(areas) == 0:
        return []
    scores = ndimage.maximum(prob, labels, index=np.arange(1, len(areas) + 1))
    return [
        {"centroid": (float(c[1]), float(c[0])), "area": int(a), "score": float(s)}
        for c, a, s in zip(centroids, areas, np.atleast_1d(scores))
    ]


def aspect_ratios_agree(shape_a, shape_b, tolerance: float = 0.02) -> bool:
    """Whether two (H, W) shapes have the same aspect ratio within ``tolerance`` (relative)."""
    (ha, wa), (hb, wb) = shape_a[:2], shape_b[:2]
    return abs((wa / ha) / (wb / hb) - 1.0) <= tolerance


#: How a config resizes or skips a mask whose size differs from its image.
CONFIG_SIZE_FIX = (
    "set INPUT.IR.RESIZE_MISMATCHED_MASKS True to resize such masks (same aspect ratio only) or "
    "DATALOADER.SKIP_BAD_SAMPLES True to skip them"
)

#: The same, for the tools that take a ``--resize-mismatched`` flag.
RESIZE_FLAG_FIX = "pass --resize-mismatched to resize such masks (same aspect ratio only)"


def size_mismatch_message(
    image_file, image_shape, mask_file, mask_shape, dataset_name, fix: str = CONFIG_SIZE_FIX
) -> str:
    """The error text of a mask whose size differs from its image (names both files and says
    what to do: ``fix``, by default the config keys; the tools name their flags). When the
    aspect ratios differ no resizing option can help, and the text says so instead."""
    if not aspect_ratios_agree(image_shape, mask_shape):
        (hi, wi), (hm, wm) = image_shape[:2], mask_shape[:2]
        fix = (
            f"their aspect ratios differ ({wi / hi:.3f} and {wm / hm:.3f}), so the mask cannot be "
            "resized to the image (resizing keeps the aspect ratio only): correct or remove the "
            "mask"
            + (
                ", or skip such frames with DATALOADER.SKIP_BAD_SAMPLES True"
                if fix == CONFIG_SIZE_FIX
                else ""
            )
        )
    return (
        f"mask '{mask_file}' is {mask_shape[1]}x{mask_shape[0]} but its image '{image_file}' is "
        f"{image_shape[1]}x{image_shape[0]} (dataset '{dataset_name}'); {fix}"
    )


def fit_mask_to_image(
    mask: np.ndarray,
    image_shape,
    *,
    resize: bool,
    image_file: str,
    mask_file: str,
    dataset_name: Optional[str],
    fix: str = CONFIG_SIZE_FIX,
) -> np.ndarray:
    """
    ``mask`` at the (H, W) of ``image_shape``: as it is when the sizes agree; resized (nearest
    neighbour, so a {0, 1} mask stays one) when ``resize`` and the aspect ratios agree; else
    :class:`IRDataError` with :func:`size_mismatch_message` (``fix`` says what the caller's user
    can set).
    """
    size = tuple(image_shape[:2])
    if mask.shape[:2] == size:
        return mask
    if not (resize and aspect_ratios_agree(size, mask.shape)):
        raise IRDataError(
            size_mismatch_message(image_file, size, mask_file, mask.shape, dataset_name, fix)
        )
    return cv2.resize(mask, size[::-1], interpolation=cv2.INTER_NEAREST)
