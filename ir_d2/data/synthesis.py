"""
SIRST-5K data synthesis, pure NumPy/OpenCV (no detectron2 import).

Paper: Lu et al., "SIRST-5K: Exploring Massive Negatives Synthesis with Self-supervised Learning for
Robust Infrared Small Target Detection", 2024 (arXiv 2403.05416), sec. III:

- :func:`sample_noise_patches`: real-noise sampling, eq. 1;
- :func:`n2n_displace`: Noise2Noise displacement, eqs. 2-3;
- :func:`negative_augment`: negative augmentation by rotating the patch around each target, eq. 4
  and sec. III-B.

The authors' public code (github.com/luy0222/SIRST-5K, ``codes/Noise_Sampling/Noise_Sampling.py``,
``codes/Mix_Rot/add_noise.py``, ``rot_patch.py``, ``rot_mask.py``) differs from the paper in places;
each function's docstring says where and which variant it implements.

Images are NumPy arrays HxW or HxWxC of any dtype (uint8 in practice); masks are HxW arrays whose
non-zero pixels are target pixels. Targets are the 8-connected components of a mask, as in the
BasicIRSTD metrics.
"""

from typing import Iterable, List, Sequence, Tuple

import cv2
import numpy as np

from ir_d2.structures.masks import connected_components

__all__ = [
    "sample_noise_patches",
    "n2n_displace",
    "negative_augment",
    "target_centers",
    "patch_box",
    "to_gray",
]

# ITU-R BT.601 luma weights for B, G, R (what cv2's BGR2GRAY and PIL's convert("L") use).
_BGR_TO_GRAY = np.array([0.114, 0.587, 0.299])


def to_gray(image: np.ndarray) -> np.ndarray:
    """
    ``image`` as a float64 HxW array: HxW as is, HxWx1 squeezed, HxWx3 (BGR) or HxWx4 (BGRA, alpha
    ignored) by the BT.601 luma weights. For the replicated-gray frames of the IR sets (R=G=B) this
    is the gray value itself.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        return image.astype(np.float64)
    if image.ndim == 3 and image.shape[2] == 1:
        return image[..., 0].astype(np.float64)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        bgr = image[..., :3].astype(np.float64)
        if (bgr[..., 0] == bgr[..., 1]).all() and (bgr[..., 1] == bgr[..., 2]).all():
            return bgr[..., 0].copy()  # replicated gray: exact, no rounding of the weights
        return bgr @ _BGR_TO_GRAY
    raise ValueError(f"expected an HxW, HxWx1, HxWx3 or HxWx4 image, got shape {image.shape}")


# ----------------------------------------------------------------------------- eq. 1
def _region_edges(length: int, grid: int) -> np.ndarray:
    """Edges of ``grid`` regions covering ``[0, length)``; sizes differ by at most one pixel."""
    return (np.arange(grid + 1) * length) // grid


def sample_noise_patches(
    images: Iterable[np.ndarray],
    grid: int = 8,
    max_var: float = 100.0,
    max_mean: float = 100.0,
    return_index: bool = False,
):
    """
    Real-noise sampling, eq. 1 of Lu et al. 2024 (SIRST-5K, sec. III-A): each frame is split into
    ``grid x grid`` regions and a region is kept as a noise patch when it is noise-prone, i.e.

        0 < Var(R) < sigma  and  0 < Mean(R) < mu     (sigma = ``max_var``, mu = ``max_mean``)

    with the population variance and the mean of the region's gray values (:func:`to_gray`). The
    bounds are strict, so flat (Var = 0) and black (Mean = 0) regions are never kept.

    Our choices where the paper leaves room: the regions cover the whole frame (region edges
    ``i * H // grid``, so sizes differ by at most one pixel when H or W is not a multiple of
    ``grid``; regions of zero size in frames smaller than ``grid`` are skipped); the patches are
    returned with the frame's own channels and dtype.

    The authors' public code (``Noise_Sampling.py``) differs: it slides fixed 32 x 32 windows with
    stride 32 over ``range(0, H - 32, 32)``, which drops the last row and column of windows (7 x 7
    windows on a 256 x 256 frame instead of 8 x 8); it has no upper bound on the mean (only
    ``Mean > 0``) and uses ``Var < 50``; and it samples *sequences* of frames, keeping a window only
    when the variance across the sequence of the windows' variances and of their means is <= 50.
    For single frames, as here, that last test always passes.

    Args:
        images: frames (HxW or HxWxC arrays).
        grid: regions per side.
        max_var, max_mean: sigma and mu of eq. 1.
        return_index: also return, per patch, ``(frame index, y0, x0)`` of its top-left corner.

    Returns:
        list of patches (copies), in frame then row-major region order; with ``return_index``,
        ``(patches, index)``.
    """
    if int(grid) != grid or grid < 1:
        raise ValueError(f"grid must be a positive integer (INPUT.SIRST5K.GRID), got {grid}")
    grid = int(grid)
    patches, index = [], []
    for f, image in enumerate(images):
        image = np.asarray(image)
        gray = to_gray(image)
        h, w = gray.shape
        ys, xs = _region_edges(h, grid), _region_edges(w, grid)
        for y0, y1 in zip(ys[:-1], ys[1:]):
            for x0, x1 in zip(xs[:-1], xs[1:]):
                if y1 == y0 or x1 == x0:
                    continue
                region = gray[y0:y1, x0:x1]
                var, mean = region.var(), region.mean()
                if 0.0 < var < max_var and 0.0 < mean < max_mean:
                    patches.append(image[y0:y1, x0:x1].copy())
                    index.append((f, int(y0), int(x0)))
    return (patches, index) if return_index else patches


# ----------------------------------------------------------------------------- eqs. 2-3
def _resize_noise(noise: np.ndarray, image: np.ndarray) -> np.ndarray:
    """The noise patch as float64, resized (bilinear) to the image's HxW, with the image's channels
    or gray (HxW, to be broadcast over the image's channels): colour noise on a gray image, or noise
    with another channel count, is turned into gray first."""
    h, w = image.shape[:2]
    noise = np.asarray(noise)
    img_c = image.shape[2] if image.ndim == 3 else 0
    noise_c = noise.shape[2] if noise.ndim == 3 else 0
    if noise_c != img_c:
        noise = to_gray(noise)
        noise_c = 0
    noise = noise.astype(np.float64)
    if noise.shape[:2] != (h, w):
        if noise.shape[0] == 0 or noise.shape[1] == 0:
            raise ValueError(f"empty noise patch of shape {noise.shape}")
        noise = cv2.resize(noise, (w, h), interpolation=cv2.INTER_LINEAR)
        if noise_c == 1 and noise.ndim == 2:  # cv2 drops a single channel axis
            noise = noise[..., None]
    return noise


def n2n_displace(image: np.ndarray, noise: np.ndarray, alpha: float = 0.1) -> np.ndarray:
    """
    Noise2Noise displacement, eqs. 2-3 of Lu et al. 2024 (SIRST-5K, sec. III-A): the sampled noise
    patch N is resized to the frame's size (eq. 2) and blended into the frame I,

        I' = alpha * N + (1 - alpha) * I     (eq. 3).

    The blend is computed in float64; integer frames are rounded to the nearest integer (half to
    even) and clipped to the dtype's range, float frames keep their values; the result has the
    frame's shape and dtype. N must be in the frame's intensity scale (a patch of a frame of the
    same set). The resize is bilinear (``cv2.INTER_LINEAR``, pixel centres aligned as
    ``torch``'s ``align_corners=False``), and a patch already of the frame's size is used as is.

    The authors' public code (``add_noise.py``) resizes both the frame and the patch to 256 x 256
    (torchvision ``Resize``, bilinear) before blending, works on [0, 1] floats and rounds when
    writing uint8; it writes one set per alpha in {0.1, ..., 0.5} (the released SIRST-5K uses 0.1).
    Here the frame keeps its size.

    Args:
        image: HxW or HxWxC frame.
        noise: a noise patch (any size; gray or with the frame's channels).
        alpha: the blend weight, in [0, 1].
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1] (INPUT.SIRST5K.ALPHA), got {alpha}")
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"expected an HxW or HxWxC image, got shape {image.shape}")
    noise = _resize_noise(noise, image)
    # in place: each full-size temporary costs more than the arithmetic
    out = image.astype(np.float64)
    out *= 1.0 - alpha
    if out.ndim == 3 and noise.ndim == 2:
        channels_first = np.moveaxis(out, -1, 0)  # a view: broadcasting over C is slow in NumPy
        channels_first += alpha * noise
    else:
        out += alpha * noise
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        np.rint(out, out=out)
        np.clip(out, info.min, info.max, out=out)
    return out.astype(image.dtype)


# ----------------------------------------------------------------------------- eq. 4
def target_centers(mask: np.ndarray) -> List[Tuple[int, int]]:
    """
    ``(y, x)`` integer centres of the 8-connected targets of ``mask`` (non-zero pixels): each
    component's centroid rounded half up, in raster order of the components' first pixels (the
    targets of the metrics, :func:`ir_d2.structures.connected_components`).
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected an HxW mask, got shape {mask.shape}")
    _, centroids, _ = connected_components(mask != 0)
    return [(int(np.floor(y + 0.5)), int(np.floor(x + 0.5))) for y, x in centroids]


def patch_box(center: Tuple[int, int], size: int, shape: Tuple[int, int]) -> Tuple[int, int, int]:
    """
    ``(y0, x0, s)``: the ``s x s`` square (``s = min(size, H, W)``) whose pixel ``(y0 + s // 2,
    x0 + s // 2)`` is ``center``, shifted inside the frame when it would cross a border, so a
    target at the border still gets a whole square patch (the authors' code clamps the same way).
    """
    h, w = shape[:2]
    s = int(min(size, h, w))
    y0 = int(np.clip(center[0] - s // 2, 0, h - s))
    x0 = int(np.clip(center[1] - s // 2, 0, w - s))
    return y0, x0, s


_MODES = ("paper", "code")


def _quarter_turns(angles: Sequence[int]) -> List[int]:
    turns = []
    for a in angles:
        if float(a) % 90 != 0:
            raise ValueError(
                f"rotation angles must be multiples of 90 degrees (INPUT.SIRST5K.ANGLES), got {a}"
            )
        turns.append(int(round(float(a))) // 90 % 4)
    return turns


def _patch_size(size, mode: str) -> int:
    """The checked patch side of :func:`negative_augment` (None: the mode's default)."""
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES} (INPUT.SIRST5K.MODE), got {mode!r}")
    if size is None:
        return 3 if mode == "paper" else 32
    if int(size) != size or size < 1:
        raise ValueError(
            f"patch size must be a positive integer (INPUT.SIRST5K.PATCH_SIZE), got {size}"
        )
    return int(size)


def _transform_patch(patch: np.ndarray, k: int, flip: bool) -> np.ndarray:
    if flip:
        patch = patch[:, ::-1]
    return np.rot90(patch, k, axes=(0, 1)).copy()  # a copy: it is written back over its source


def negative_augment(
    image: np.ndarray,
    mask: np.ndarray,
    size: int = None,
    angles: Sequence[int] = (0, 90, 180, 270),
    mode: str = "paper",
    per_target: bool = False,
) -> List[Tuple[np.ndarray, np.ndarray]]:
    """
    Negative augmentation, eq. 4 and sec. III-B of Lu et al. 2024 (SIRST-5K): for each target (an
    8-connected component of ``mask``), the ``size x size`` image patch centred on it
    (:func:`target_centers`, :func:`patch_box`: shifted inside the frame at the borders, ``size``
    capped at the frame's sides) is rotated in place by each angle, giving one ``(image, mask)``
    pair per angle, in the order of ``angles``.

    Angles are multiples of 90 degrees, counter-clockwise as displayed (``np.rot90``, PIL's
    ``rotate``), so the patch keeps exactly its pixel values. Pixels outside the patches are never
    changed. When two targets' patches overlap they are rotated one after the other, in target
    order. A frame without targets gives ``len(angles)`` unchanged copies.

    ``mode`` chooses between the paper and the authors' public code, which differ:

    - ``"paper"`` (default ``size`` 3): the patch is rotated, the label is **unchanged** (the
      rotated variants are negatives sharing the original's mask, sec. III-B); angle 0 gives the
      frame unchanged.
    - ``"code"`` (default ``size`` 32; ``rot_patch.py``/``rot_mask.py``, function
      ``rot_patch_32``): the patch is **flipped left-right, then rotated** (so angle 0 is a pure
      flip), and the **mask patch is transformed the same way**, so the label follows the image.
      The authors' scripts also write one file per target and angle, each changing that target's
      patch only (``per_target=True`` reproduces this), read target centres from a hand-written
      list, and hard-code 256 x 256 frames at the border clamp; here centres come from the mask
      and the clamp uses the frame's size. Their 3/5/7/9 variants (unused by their scripts) crop
      2/4/6/8-pixel squares.

    Args:
        image: HxW or HxWxC frame.
        mask: HxW target mask (non-zero = target).
        size: patch side; None: 3 for "paper", 32 for "code" (INPUT.SIRST5K.PATCH_SIZE).
        angles: rotation angles in degrees (INPUT.SIRST5K.ANGLES).
        mode: "paper" or "code" (INPUT.SIRST5K.MODE).
        per_target: one pair per (target, angle), target-major, each with only that target's patch
            changed (the authors' file layout); without targets the list is then empty.

    Returns:
        list of ``(image, mask)`` pairs (new arrays, the inputs' dtypes).
    """
    size = _patch_size(size, mode)
    image, mask = np.asarray(image), np.asarray(mask)
    if mask.ndim != 2 or image.shape[:2] != mask.shape:
        raise ValueError(f"image {image.shape} and mask {mask.shape} must share H x W (mask: HxW)")
    turns = _quarter_turns(angles)
    code = mode == "code"  # flip before the rotation, and the label follows the image
    boxes = [patch_box(c, size, mask.shape) for c in target_centers(mask)]

    def apply(selected, k):
        img, msk = image.copy(), mask.copy()
        for y0, x0, s in selected:
            window = (slice(y0, y0 + s), slice(x0, x0 + s))
            img[window] = _transform_patch(img[window], k, code)
            if code:
                msk[window] = _transform_patch(msk[window], k, code)
        return img, msk

    if per_target:
        return [apply([box], k) for box in boxes for k in turns]
    return [apply(boxes, k) for k in turns]
