"""Augmentations detectron2 lacks for IR frames."""

from functools import partial

import cv2
import numpy as np
from detectron2.data import transforms as T

__all__ = ["IRRandomScale", "IRBrightnessContrast", "IRGaussianBlur", "IRRandomGaussianBlur"]


class IRRandomScale(T.Augmentation):
    """
    Rescale the frame by a factor drawn uniformly from ``[min_scale, max_scale]`` (aspect ratio
    kept; the mask is resized with nearest neighbour by detectron2's ResizeTransform).
    """

    def __init__(self, min_scale: float, max_scale: float):
        super().__init__()
        if not 0 < min_scale <= max_scale:
            raise ValueError(f"INPUT.IR.SCALE=[{min_scale}, {max_scale}]: need 0 < low <= high")
        self._init(locals())

    def get_transform(self, image):
        h, w = image.shape[:2]
        s = np.random.uniform(self.min_scale, self.max_scale)
        return T.ResizeTransform(h, w, max(1, int(round(h * s))), max(1, int(round(w * s))))


def _apply_lut(lut, image):
    return cv2.LUT(image, lut)


class IRBrightnessContrast(T.Augmentation):
    """
    detectron2's RandomBrightness then RandomContrast, as one 256-entry look-up table on uint8
    frames (about 4x faster than the two float blends; the same maps): a brightness factor ``b``
    and a contrast factor ``c`` drawn uniformly from their ranges,
    ``y = clip(b * x)``, then ``z = clip(c * y + (1 - c) * mean(y))``, each truncated to uint8.
    Gray stays gray (the same table for every channel): no colour jitter. Masks are unchanged.
    """

    def __init__(self, brightness=(1.0, 1.0), contrast=(1.0, 1.0)):
        super().__init__()
        self.brightness, self.contrast = tuple(brightness), tuple(contrast)

    def get_transform(self, image):
        if image.dtype != np.uint8:
            raise TypeError(f"IRBrightnessContrast needs a uint8 image, got {image.dtype}")
        b = float(np.random.uniform(*self.brightness))
        c = float(np.random.uniform(*self.contrast))
        # the arithmetic of detectron2's BlendTransform on uint8 (float32 image, weak scalars)
        y = np.clip(b * np.arange(256, dtype=np.float32), 0, 255).astype(np.uint8)
        if c != 1.0:
            flat = np.ascontiguousarray(image).reshape(image.shape[0], -1)
            hist = cv2.calcHist([flat], [0], None, [256], [0, 256]).reshape(-1).astype(np.int64)
            mean = np.float64(hist @ y.astype(np.float64) / image.size)
            y = np.clip((1 - c) * mean + c * y.astype(np.float32), 0, 255).astype(np.uint8)
        return T.ColorTransform(partial(_apply_lut, y))


def _blur(sigma, image):
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma)


class IRGaussianBlur(T.Augmentation):
    """Blur the frame with a Gaussian of standard deviation drawn uniformly from
    ``[min_sigma, max_sigma]`` (OpenCV, kernel size from sigma); masks unchanged."""

    def __init__(self, min_sigma: float = 0.0, max_sigma: float = 1.0):
        super().__init__()
        self._init(locals())

    def get_transform(self, image):
        sigma = float(np.random.uniform(self.min_sigma, self.max_sigma))
        if sigma < 0.05:  # a kernel of one pixel: nothing to do
            return T.NoOpTransform()
        return T.ColorTransform(partial(_blur, sigma))


class IRRandomGaussianBlur(T.RandomApply):
    """
    With probability ``prob``, :class:`IRGaussianBlur` (detectron2's ``RandomApply``). The
    SIRST-5K authors' training pipeline (DNANet's) does this with Pillow's
    ``GaussianBlur(radius=random())``, whose radius is the standard deviation: ``prob`` 0.5,
    sigma in [0, 1].
    """

    def __init__(self, prob: float = 0.5, min_sigma: float = 0.0, max_sigma: float = 1.0):
        if not 0.0 <= prob <= 1.0 or not 0.0 <= min_sigma <= max_sigma:
            raise ValueError(
                f"INPUT.IR.BLUR_PROB={prob}, BLUR_SIGMA=[{min_sigma}, {max_sigma}]: need a "
                "probability in [0, 1] and 0 <= low <= high"
            )
        super().__init__(IRGaussianBlur(min_sigma, max_sigma), prob)
        self.min_sigma, self.max_sigma = min_sigma, max_sigma  # named by detectron2's __repr__
