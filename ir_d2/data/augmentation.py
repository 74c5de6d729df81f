"""
The augmentations of the IR mappers and of IRPredictor, from ``INPUT.*`` / ``INPUT.IR.*``, and the
SIRST-5K online augmentation of a config (Lu et al. 2024, sec. III; ``INPUT.SIRST5K.*``), whose
noise bank (eq. 1) is sampled once from every frame of ``DATASETS.TRAIN``, read as the mappers read
frames (the augmentation itself is pure NumPy: :mod:`ir_d2.data.sirst5k`).

Augmentations are IR-appropriate: flip (``INPUT.IR.FLIP``), resize, crop, brightness and contrast
(``INPUT.IR.BRIGHTNESS`` / ``CONTRAST``); no colour jitter (a gray frame has no hue or
saturation).
"""

import logging
from typing import Iterator, List, Sequence, Tuple

import numpy as np
from detectron2.data import DatasetCatalog
from detectron2.data import transforms as T

from .io import IRDataError
from .reader import IRReaderSettings
from .sirst5k import SIRST5KAugmentation
from .transforms import IRBrightnessContrast, IRRandomGaussianBlur, IRRandomScale

__all__ = ["build_ir_augmentation", "build_sirst5k_augmentation", "FLIPS"]

logger = logging.getLogger(__name__)

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


def _bank_frames(
    reader: IRReaderSettings, file_names: Sequence[Tuple[str, str]], counts: dict
) -> Iterator[np.ndarray]:
    """The training frames of the SIRST-5K noise bank, read one at a time as the mappers read
    them; with ``DATALOADER.SKIP_BAD_SAMPLES`` an unreadable frame is logged and left out."""
    for file_name, dataset_name in file_names:
        try:
            frame = reader.read_image(file_name, dataset_name)
        except IRDataError as e:
            if not reader.skip_bad_samples:
                raise IRDataError(
                    f"{e} (while sampling the SIRST-5K noise bank of INPUT.SIRST5K.N2N_PROB > 0 "
                    "from the DATASETS.TRAIN frames; DATALOADER.SKIP_BAD_SAMPLES skips it)"
                ) from e
            counts["skipped"] += 1
            logger.warning(f"SIRST-5K noise bank: skipped an unreadable frame: {e}")
            continue
        counts["frames"] += 1
        yield frame


def build_sirst5k_augmentation(cfg) -> SIRST5KAugmentation:
    """
    The SIRST-5K training augmentation of ``cfg.INPUT.SIRST5K`` (Lu et al. 2024, sec. III;
    :meth:`SIRST5KAugmentation.from_config`), its noise bank (eq. 1) sampled once from every frame
    of ``cfg.DATASETS.TRAIN`` (their DatasetCatalog ``file_name``s, read with ``INPUT.IR.NORMALIZE``
    / ``PERCENTILES`` as the mappers read them). No frame is read when ``INPUT.SIRST5K.N2N_PROB``
    is 0. Logs the number of frames and patches at INFO.
    """
    c = cfg.INPUT.SIRST5K
    names = list(cfg.DATASETS.TRAIN)
    counts = {"frames": 0, "skipped": 0}
    files: List[Tuple[str, str]] = []
    if c.N2N_PROB > 0:
        if not names:
            raise ValueError(
                "INPUT.SIRST5K.ENABLED with INPUT.SIRST5K.N2N_PROB > 0 samples its noise bank from "
                "the frames of DATASETS.TRAIN, which is empty"
            )
        files = [(d["file_name"], name) for name in names for d in DatasetCatalog.get(name)]
    reader = IRReaderSettings.from_config(cfg, is_train=True)
    aug = SIRST5KAugmentation.from_config(cfg, _bank_frames(reader, files, counts))
    if aug.noise_bank is not None:
        skipped = f", {counts['skipped']} unreadable frames skipped" if counts["skipped"] else ""
        logger.info(
            f"SIRST-5K noise bank: {len(aug.noise_bank)} patches from {counts['frames']} frames "
            f"of {', '.join(names)}{skipped} (INPUT.SIRST5K.GRID={c.GRID}, MAX_VAR={c.MAX_VAR}, "
            f"MAX_MEAN={c.MAX_MEAN})"
        )
    return aug
