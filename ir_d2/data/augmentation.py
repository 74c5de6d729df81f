"""
The augmentations of the IR mappers and of IRPredictor, from ``INPUT.*`` / ``INPUT.IR.*``.

Augmentations are IR-appropriate: flip (``INPUT.IR.FLIP``), resize, crop, brightness and contrast
(``INPUT.IR.BRIGHTNESS`` / ``CONTRAST``); no colour jitter (a gray frame has no hue or
saturation).
"""

from typing import List

from detectron2.data import transforms as T

from .transforms import IRBrightnessContrast, IRRandomGaussianBlur, IRRandomScale

__all__ = ["build_ir_augmentation", "FLIPS"]

#: Values of ``INPUT.IR.FLIP``.
FLIPS = ("horizontal", "vertical", "both", "none")


def build_ir_augmentation(cfg, is_train: bool, *, semantic: bool = False) -> List[T.Augmentation]:
    """
    The IR augmentations of the mappers (and of IRPredictor at test time).

    Instances (``semantic=False``): detectron2's ResizeShortestEdge (``INPUT.MIN_SIZE_*`` /
    ``MAX_SIZE_*``), and in training ``INPUT.CROP`` (detectron2's RandomCrop, first), brightness
    and contrast (:class:`IRBrightnessContrast`), a Gaussian blur (``INPUT.IR.BLUR_PROB``) and the
    flip ``INPUT.IR.FLIP``.

    Small targets (``semantic=True``): in training a random rescale ``INPUT.IR.SCALE``, brightness
    and contrast, the blur, the flip, then a fixed ``INPUT.IR.CROP_SIZE`` crop, zero-padded where
    the frame is smaller (detectron2's FixedSizeCrop; padding is background, value 0); at test
    time a square resize to ``INPUT.IR.TEST_SIZE`` when it is > 0, else nothing.
    """
    ir = cfg.INPUT.IR
    augs: List[T.Augmentation] = []
    if semantic:
        if is_train and tuple(ir.SCALE) != (1.0, 1.0):
            augs.append(IRRandomScale(*ir.SCALE))
        if not is_train and ir.TEST_SIZE > 0:
            augs.append(T.Resize((ir.TEST_SIZE, ir.TEST_SIZE)))
    else:
        if is_train:
            sizes, max_size, style = (
                cfg.INPUT.MIN_SIZE_TRAIN,
                cfg.INPUT.MAX_SIZE_TRAIN,
                cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING,
            )
        else:
            sizes, max_size, style = cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, "choice"
        augs.append(T.ResizeShortestEdge(sizes, max_size, style))
        if is_train and cfg.INPUT.CROP.ENABLED:
            augs.insert(0, T.RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE))
    if not is_train:
        return augs
    # photometric first, on the contiguous frame (a flip returns a negatively strided view)
    for key in ("BRIGHTNESS", "CONTRAST"):
        lo, hi = ir.get(key)
        if not 0 <= lo <= hi:
            raise ValueError(f"INPUT.IR.{key}=[{lo}, {hi}]: need 0 <= low <= high")
    if (tuple(ir.BRIGHTNESS), tuple(ir.CONTRAST)) != ((1.0, 1.0), (1.0, 1.0)):
        augs.append(IRBrightnessContrast(ir.BRIGHTNESS, ir.CONTRAST))
    if ir.BLUR_PROB > 0:
        augs.append(IRRandomGaussianBlur(ir.BLUR_PROB, *ir.BLUR_SIGMA))
    if ir.FLIP not in FLIPS:
        raise ValueError(f"INPUT.IR.FLIP={ir.FLIP!r} is not one of {', '.join(FLIPS)}")
    if ir.FLIP in ("horizontal", "both"):
        augs.append(T.RandomFlip(horizontal=True, vertical=False))
    if ir.FLIP in ("vertical", "both"):
        augs.append(T.RandomFlip(horizontal=False, vertical=True))
    if semantic and len(ir.CROP_SIZE):
        if len(ir.CROP_SIZE) != 2 or min(ir.CROP_SIZE) <= 0:
            raise ValueError(f"INPUT.IR.CROP_SIZE={list(ir.CROP_SIZE)}: expected [H, W] or []")
        augs.append(T.FixedSizeCrop(tuple(ir.CROP_SIZE), pad=True, pad_value=0.0, seg_pad_value=0))
    return augs
