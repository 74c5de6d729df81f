"""
Reading infrared frames and masks (pure NumPy / Pillow / OpenCV: no detectron2 import).

Every IR frame, whatever its storage (8-bit L, P, RGB or RGBA; 16-bit PNG or TIFF; 32-bit integer
or float TIFF), becomes the model's HxWx3 uint8 BGR array: gray frames are replicated to three
channels, so ImageNet / COCO weights apply unchanged. Frames with more than 8 bits (radiometric
data) go to 8 bits through ``normalize`` (``INPUT.IR.NORMALIZE``); 8-bit frames are never rescaled.

A missing, empty or corrupt file raises :class:`IRDataError`, whose message names the file and the
dataset it belongs to.
"""

import logging
import os
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ir_d2.structures.masks import IRDataError

__all__ = [
    "IRDataError",
    "NORMALIZE_MODES",
    "check_normalize",
    "normalize_to_uint8",
    "to_bgr_uint8",
    "read_ir_image",
    "read_ir_mask",
    "read_image_size",
]

logger = logging.getLogger(__name__)

NORMALIZE_MODES = ("minmax", "percentile", "none")
# Pillow modes whose samples have more than 8 bits.
_HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
# masks whose values all lie in (0, threshold] are warned about once per file, the first few of
# each folder by name
_WARNED_LOW_MASKS = set()
_LOW_MASKS_PER_FOLDER = {}
_MAX_LOW_MASK_WARNINGS = 5


def _of(dataset_name: Optional[str]) -> str:
    return f"of dataset '{dataset_name}'" if dataset_name else "(no dataset name given)"


def check_normalize(normalize: str, percentiles: Sequence[float]) -> Tuple[float, float]:
    """Validate ``INPUT.IR.NORMALIZE`` / ``INPUT.IR.PERCENTILES``; returns the percentiles."""
    if normalize not in NORMALIZE_MODES:
        raise ValueError(
            f"INPUT.IR.NORMALIZE={normalize!r} is not one of {', '.join(NORMALIZE_MODES)}"
        )
    lo, hi = (float(p) for p in percentiles)
    if not 0.0 <= lo < hi <= 100.0:
        raise ValueError(f"INPUT.IR.PERCENTILES={list(percentiles)} must be 0 <= low < high <= 100")
    return lo, hi


def normalize_to_uint8(
    array: np.ndarray, normalize: str = "minmax", percentiles: Sequence[float] = (1.0, 99.0)
) -> np.ndarray:
    """
    Map a frame with more than 8 bits (uint16, int32, float) to uint8.

    * ``"minmax"``: ``255 * (x - min) / (max - min)``;
    * ``"percentile"``: the same between the ``percentiles`` (low, high) of the frame, clipped;
    * ``"none"``: the values clipped to [0, 255], no rescaling.

    Statistics are taken over the whole frame (all channels together). A constant frame maps to 0;
    non-finite values map to 0.
    """
    lo_p, hi_p = check_normalize(normalize, percentiles)
    x = np.asarray(array)
    if x.dtype.kind == "f":
        finite = np.isfinite(x)
        if not finite.all():  # statistics and mapping over the finite samples only
            out = np.zeros(x.shape, np.uint8)
            if finite.any():
                out[finite] = normalize_to_uint8(x[finite], normalize, (lo_p, hi_p))
            return out
    x = x.astype(np.float64, copy=False)
    if normalize == "none":
        return np.rint(np.clip(x, 0.0, 255.0)).astype(np.uint8)
    if normalize == "minmax":
        lo, hi = x.min(), x.max()
    else:
        lo, hi = np.percentile(x, [lo_p, hi_p])
    if not hi > lo:
        return np.zeros(x.shape, np.uint8)
    return np.rint(np.clip((x - lo) * (255.0 / (hi - lo)), 0.0, 255.0)).astype(np.uint8)


def to_bgr_uint8(
    array: np.ndarray, normalize: str = "minmax", percentiles: Sequence[float] = (1.0, 99.0)
) -> np.ndarray:
    """
    An in-memory frame as the model's HxWx3 uint8 BGR array.

    Accepts HxW or HxWx1 gray frames (replicated to 3 channels), HxWx3 BGR and HxWx4 BGRA frames
    (alpha dropped), of any dtype: uint8 is kept as is, anything else goes through
    :func:`normalize_to_uint8`.
    """
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    elif a.ndim == 3 and a.shape[2] == 4:
        a = a[:, :, :3]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)) or min(a.shape[:2]) == 0:
        raise ValueError(
            f"expected an HxW, HxWx1, HxWx3 (BGR) or HxWx4 (BGRA) frame, got shape {a.shape}"
        )
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = normalize_to_uint8(a, normalize, percentiles)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return np.ascontiguousarray(a)


def _orientation(im: Image.Image) -> int:
    """EXIF orientation tag (1: none). Only formats that carry EXIF before the pixels are asked:
    looking for a PNG's eXIf chunk reads the whole file."""
    if im.format not in ("JPEG", "MPO", "TIFF", "WEBP"):
        return 1
    return im.getexif().get(0x0112, 1)


def _open(path: str, what: str, dataset_name: Optional[str]) -> Image.Image:
    """Open and decode ``path`` with Pillow; errors name the file and the dataset."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise IRDataError(f"{what} file '{path}' {_of(dataset_name)} does not exist")
    if os.path.getsize(path) == 0:
        raise IRDataError(f"{what} file '{path}' {_of(dataset_name)} is empty (0 bytes)")
    try:
        with Image.open(path) as im:
            if im.mode in ("RGB", "RGBA") and _has_16_bit_samples(im):
                # Pillow reduces 16-bit colour PNG/TIFF to 8 bits by truncation; OpenCV keeps them.
                array = cv2.imread(path, cv2.IMREAD_UNCHANGED)
                if array is not None and array.size:
                    return array
            im.load()
            if _orientation(im) != 1:  # EXIF orientation, as detectron2's read_image
                return ImageOps.exif_transpose(im)
            return im
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        # Pillow cannot read some TIFFs (e.g. multi-channel 16-bit); OpenCV can. Only TIFFs: for a
        # truncated JPEG OpenCV returns a partial frame instead of failing.
        if path.lower().endswith((".tif", ".tiff")):
            array = cv2.imread(path, cv2.IMREAD_UNCHANGED)
            if array is not None and array.size:
                return array
        raise IRDataError(
            f"{what} file '{path}' {_of(dataset_name)} is corrupt or not an image: {e}"
        ) from e


def _has_16_bit_samples(im: Image.Image) -> bool:
    """Whether the undecoded tiles of ``im`` hold 16-bit samples (e.g. raw mode 'RGB;16B')."""
    for tile in im.tile[:1]:
        args = tile[3]  # (codec, extents, offset, args)
        rawmode = args if isinstance(args, str) else (args[0] if args else "")
        return isinstance(rawmode, str) and ";16" in rawmode
    return False


def _pil_to_array(im) -> np.ndarray:
    """Pixels of a Pillow image: HxW (gray, any depth) or HxWx3 in BGR order."""
    if isinstance(im, np.ndarray):  # decoded by OpenCV: already BGR(A) or gray
        return im[:, :, :3] if im.ndim == 3 and im.shape[2] >= 3 else im
    mode = im.mode
    if mode in _HIGH_DEPTH_MODES:
        a = np.asarray(im)
        return a.astype(a.dtype.newbyteorder("=")) if not a.dtype.isnative else a
    if mode == "L":
        return np.asarray(im)
    if mode in ("1", "LA", "La"):
        return np.asarray(im.convert("L"))
    rgb = np.asarray(im if mode == "RGB" else im.convert("RGB"))  # P, PA, RGBA, CMYK, YCbCr...
    return rgb[:, :, ::-1]


def read_ir_image(
    path: str,
    *,
    normalize: str = "minmax",
    percentiles: Sequence[float] = (1.0, 99.0),
    dataset_name: Optional[str] = None,
) -> np.ndarray:
    """
    Read an IR frame from ``path`` as an HxWx3 uint8 BGR array.

    8-bit L, P, RGB and RGBA frames keep their values (gray replicated, palette applied, alpha
    dropped); 16-bit PNG/TIFF and 32-bit TIFF frames go through :func:`normalize_to_uint8` with
    ``normalize`` / ``percentiles`` (``INPUT.IR.NORMALIZE`` / ``INPUT.IR.PERCENTILES``).

    Raises:
        IRDataError: missing, empty or corrupt file (the message names it and ``dataset_name``).
    """
    check_normalize(normalize, percentiles)
    return to_bgr_uint8(_pil_to_array(_open(path, "image", dataset_name)), normalize, percentiles)


def read_ir_mask(
    path: str,
    *,
    threshold: float = 127,
    dataset_name: Optional[str] = None,
    threshold_name: str = "INPUT.IR.MASK_THRESHOLD",
) -> np.ndarray:
    """
    Read a target mask as an HxW uint8 array in {0, 1}: a pixel is a target when its value is
    ``> threshold`` (``INPUT.IR.MASK_THRESHOLD``), so {0, 255} and {0, 64, 255} masks both work.
    Colour or palette masks are first converted to their luminance. A mask that has non-zero
    values but none above ``threshold`` (e.g. a {0, 1} mask) is warned about once per file, naming
    ``threshold_name``, the key or flag that sets the threshold.

    Raises:
        IRDataError: missing, empty or corrupt file (the message names it and ``dataset_name``).
    """
    path = os.fspath(path)
    im = _open(path, "mask", dataset_name)
    if isinstance(im, np.ndarray):
        a = im if im.ndim == 2 else cv2.cvtColor(im[:, :, :3], cv2.COLOR_BGR2GRAY)
    elif im.mode in _HIGH_DEPTH_MODES or im.mode == "L":
        a = np.asarray(im)
    else:
        a = np.asarray(im.convert("L"))
    mask = (a > threshold).astype(np.uint8)
    if not mask.any() and a.max() > 0 and (path, threshold_name) not in _WARNED_LOW_MASKS:
        _WARNED_LOW_MASKS.add((path, threshold_name))
        folder = (os.path.dirname(path), threshold_name)
        _LOW_MASKS_PER_FOLDER[folder] = count = _LOW_MASKS_PER_FOLDER.get(folder, 0) + 1
        if count > _MAX_LOW_MASK_WARNINGS:
            if count == _MAX_LOW_MASK_WARNINGS + 1:
                logger.warning(
                    f"further masks of '{folder[0]}' with no value above {threshold_name}="
                    f"{threshold} are not named"
                )
            return mask
        logger.warning(
            f"mask '{path}' {_of(dataset_name)} has values up to {a.max()}, none above "
            f"{threshold_name}={threshold}: it binarises to an empty mask "
            f"(for {{0, 1}} masks set {threshold_name} to 0)"
        )
    return mask


def read_image_size(path: str) -> Optional[Tuple[int, int]]:
    """``(height, width)`` of an image from its header only, or None when it cannot be read."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            if _orientation(im) in (5, 6, 7, 8):  # EXIF rotation by 90 degrees
                w, h = h, w
            return h, w
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        return None
