"""
Dataset mappers for infrared frames, chosen in configs by ``INPUT.DATASET_MAPPER_NAME``:

* :class:`IRDatasetMapper` (instances: Mask R-CNN / Faster R-CNN), detectron2's DatasetMapper with
  the IR reader and IR augmentations;
* :class:`IRSTDDatasetMapper` (small-target semantic masks: IRSTDSegmentor), returning ``"image"``
  (uint8 3xHxW) and ``"sem_seg"`` (int64 HxW in {0, 1}).

Both read any IR frame (8-bit L/P/RGB/RGBA, 16-bit PNG/TIFF; :func:`ir_d2.data.io.read_ir_image`)
into 3-channel BGR (``INPUT.FORMAT`` "BGR" or "RGB"), normalising frames with more than 8 bits by
``INPUT.IR.NORMALIZE``. Augmentations are IR-appropriate: flip (``INPUT.IR.FLIP``), resize,
crop, brightness and contrast (``INPUT.IR.BRIGHTNESS`` / ``CONTRAST``); no colour jitter (a gray
frame has no hue or saturation).

Bad input: a missing, empty or corrupt image or mask, or a mask whose size differs from its image,
raises :class:`ir_d2.data.io.IRDataError` naming the file(s) and the dataset. With
``DATALOADER.SKIP_BAD_SAMPLES: True`` the mapper logs it, counts it (``mapper.num_skipped``, per
data-loader worker) and returns None, which detectron2's ``MapDataset`` answers by drawing another
index. At test time that other frame is then evaluated twice: skip bad frames in training, and fix
or drop them from test sets.

``DATALOADER.FILTER_EMPTY_ANNOTATIONS`` (detectron2's, default True) drops frames without instances
from training sets that have "annotations". Semantic sets have none, so background-only frames are
always kept for IRSTDDatasetMapper; the small-target ``*_instances`` configs should set it False so
that background frames keep teaching the detector what is *not* a target (false alarms, Fa).

SIRST-5K online augmentation (Lu et al. 2024; ``INPUT.SIRST5K.*``): with
``INPUT.SIRST5K.ENABLED`` the training IRSTDDatasetMapper applies
:class:`ir_d2.data.sirst5k.SIRST5KAugmentation` (built once by
:func:`build_sirst5k_augmentation`, its noise bank sampled from the frames of
``DATASETS.TRAIN``) in its :meth:`IRSTDDatasetMapper._augment_train` hook; with
``INPUT.SIRST5K.NEGATIVE`` each frame becomes a ``"group"`` of rotated variants for the
negative-sample loss of IRSTDSegmentor (``MODEL.IRSTD.NEG_LOSS``).
"""

import copy
import logging
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from .io import IRDataError, check_normalize, read_ir_image, read_ir_mask
from .ir_datasets.irstd import aspect_ratios_agree, size_mismatch_message
from .sirst5k import SIRST5KAugmentation
from .transforms import IRBrightnessContrast, IRRandomScale

__all__ = [
    "IRDatasetMapper",
    "IRSTDDatasetMapper",
    "IRReaderSettings",
    "build_ir_mapper",
    "build_ir_augmentation",
    "build_sirst5k_augmentation",
    "MAPPER_NAMES",
]

logger = logging.getLogger(__name__)

MAPPER_NAMES = ("IRDatasetMapper", "IRSTDDatasetMapper", "DatasetMapper")
_FLIPS = ("horizontal", "vertical", "both", "none")


def build_ir_augmentation(cfg, is_train: bool, *, semantic: bool = False) -> List[T.Augmentation]:
    """
    The IR augmentations of the mappers (and of IRPredictor at test time).

    Instances (``semantic=False``): detectron2's ResizeShortestEdge (``INPUT.MIN_SIZE_*`` /
    ``MAX_SIZE_*``), and in training ``INPUT.CROP`` (detectron2's RandomCrop, first), brightness
    and contrast (:class:`IRBrightnessContrast`) and the flip ``INPUT.IR.FLIP``.

    Small targets (``semantic=True``): in training a random rescale ``INPUT.IR.SCALE``, brightness
    and contrast, the flip, then a fixed ``INPUT.IR.CROP_SIZE`` crop, zero-padded where the frame is
    smaller (detectron2's FixedSizeCrop; padding is background, value 0); at test time a square
    resize to ``INPUT.IR.TEST_SIZE`` when it is > 0, else nothing.
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
    if ir.FLIP not in _FLIPS:
        raise ValueError(f"INPUT.IR.FLIP={ir.FLIP!r} is not one of {', '.join(_FLIPS)}")
    if ir.FLIP in ("horizontal", "both"):
        augs.append(T.RandomFlip(horizontal=True, vertical=False))
    if ir.FLIP in ("vertical", "both"):
        augs.append(T.RandomFlip(horizontal=False, vertical=True))
    if semantic and len(ir.CROP_SIZE):
        if len(ir.CROP_SIZE) != 2 or min(ir.CROP_SIZE) <= 0:
            raise ValueError(f"INPUT.IR.CROP_SIZE={list(ir.CROP_SIZE)}: expected [H, W] or []")
        augs.append(T.FixedSizeCrop(tuple(ir.CROP_SIZE), pad=True, pad_value=0.0, seg_pad_value=0))
    return augs


@dataclass(frozen=True)
class IRReaderSettings:
    """
    How the IR mappers read a record and handle a bad one, validated once: the output channel
    order ``image_format`` ("BGR" or "RGB"), the >8-bit ``normalize`` / ``percentiles``, the
    ``mask_threshold``, ``skip_bad_samples``, ``resize_mismatched_masks`` and the
    ``dataset_names`` that errors name for records without ``"dataset_name"``.
    :meth:`from_config` takes them from ``INPUT.FORMAT``, ``INPUT.IR.*``,
    ``DATALOADER.SKIP_BAD_SAMPLES`` and ``DATASETS.TRAIN`` / ``TEST``.
    """

    image_format: str = "BGR"
    normalize: str = "minmax"
    percentiles: Tuple[float, float] = (1.0, 99.0)
    mask_threshold: float = 127
    skip_bad_samples: bool = False
    resize_mismatched_masks: bool = False
    dataset_names: Tuple[str, ...] = ()

    def __post_init__(self):
        if self.image_format not in ("BGR", "RGB"):
            raise ValueError(
                f"INPUT.FORMAT={self.image_format!r}: the IR mappers produce BGR or RGB"
            )
        object.__setattr__(self, "percentiles", check_normalize(self.normalize, self.percentiles))
        object.__setattr__(self, "dataset_names", tuple(self.dataset_names))

    @classmethod
    def from_config(cls, cfg, is_train: bool) -> "IRReaderSettings":
        return cls(
            image_format=cfg.INPUT.FORMAT,
            normalize=cfg.INPUT.IR.NORMALIZE,
            percentiles=tuple(cfg.INPUT.IR.PERCENTILES),
            mask_threshold=cfg.INPUT.IR.MASK_THRESHOLD,
            skip_bad_samples=cfg.DATALOADER.SKIP_BAD_SAMPLES,
            resize_mismatched_masks=cfg.INPUT.IR.RESIZE_MISMATCHED_MASKS,
            dataset_names=tuple(cfg.DATASETS.TRAIN if is_train else cfg.DATASETS.TEST),
        )

    def read_image(self, file_name: str, dataset_name: Optional[str]) -> np.ndarray:
        """:func:`read_ir_image` with these settings."""
        return read_ir_image(
            file_name,
            normalize=self.normalize,
            percentiles=self.percentiles,
            dataset_name=dataset_name,
        )


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


class _IRReader:
    """Reading, checking and skipping, shared by the two mappers (settings: ``self.reader``)."""

    def _init_reader(self, reader: IRReaderSettings):
        self.reader = reader
        self.num_skipped = 0

    def _dataset_name(self, dataset_dict) -> str:
        return (
            dataset_dict.get("dataset_name") or " / ".join(self.reader.dataset_names) or "unknown"
        )

    def _read_image(self, dataset_dict) -> np.ndarray:
        name = self._dataset_name(dataset_dict)
        if "ir_error" in dataset_dict and not (
            dataset_dict.get("ir_error_kind") == "size" and self.reader.resize_mismatched_masks
        ):
            raise IRDataError(dataset_dict["ir_error"])
        file_name = dataset_dict["file_name"]
        image = self.reader.read_image(file_name, name)
        try:
            utils.check_image_size(dataset_dict, image)
        except utils.SizeMismatchError as e:
            raise IRDataError(f"{e} (file '{file_name}', dataset '{name}')") from e
        return image

    def _read_mask(self, dataset_dict, image_shape) -> np.ndarray:
        name = self._dataset_name(dataset_dict)
        mask_file = dataset_dict["sem_seg_file_name"]
        mask = read_ir_mask(mask_file, threshold=self.reader.mask_threshold, dataset_name=name)
        if mask.shape != tuple(image_shape[:2]):
            message = size_mismatch_message(
                dataset_dict["file_name"], image_shape, mask_file, mask.shape, name
            )
            if not (
                self.reader.resize_mismatched_masks and aspect_ratios_agree(image_shape, mask.shape)
            ):
                raise IRDataError(message)
            mask = cv2.resize(mask, image_shape[1::-1], interpolation=cv2.INTER_NEAREST)
        return mask

    def __call__(self, dataset_dict):
        """
        Map one dataset dict (a copy: the dataset's own dicts are never changed). A bad sample
        raises :class:`IRDataError` naming the file and dataset; with
        ``DATALOADER.SKIP_BAD_SAMPLES`` it is logged, counted and None is returned, which
        detectron2's ``MapDataset`` replaces by another sample.
        """
        try:
            return self._map(copy.deepcopy(dataset_dict))
        except IRDataError as e:
            if not self.reader.skip_bad_samples:
                raise
            self._skip(e)
            return None

    def _skip(self, error: IRDataError) -> None:
        self.num_skipped += 1
        logger.warning(f"skipped bad sample #{self.num_skipped} of this worker: {error}")

    def _to_tensor(self, image: np.ndarray) -> torch.Tensor:
        if self.reader.image_format == "RGB":
            image = image[:, :, ::-1]
        return torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))


class IRSTDDatasetMapper(_IRReader):
    """
    Mapper of the small-target semantic sets (IRSTDSegmentor).

    Returns ``"image"`` (uint8 3xHxW, BGR unless ``INPUT.FORMAT`` is "RGB"), ``"height"``,
    ``"width"`` (the original size), ``"file_name"``, ``"image_id"`` and, when the record has a
    ``sem_seg_file_name``, ``"sem_seg"`` (int64 HxW in {0, 1}, ``> INPUT.IR.MASK_THRESHOLD``). In
    training ``sem_seg`` is aligned with the augmented, fixed-size-cropped image; at test time it is
    the ground truth at the original size (aligned with the model's output, also when
    ``INPUT.IR.TEST_SIZE`` resizes the image), and ``sem_seg_file_name`` is kept.

    Training order: read, :meth:`_augment_train` (the hook for online augmentations such as
    SIRST-5K's), then rescale, brightness and contrast, flip and the crop.

    SIRST-5K (``INPUT.SIRST5K.ENABLED``, training only): ``sirst5k`` (built by
    :func:`build_sirst5k_augmentation`) turns the frame into one pair (Noise2Noise displacement
    with probability ``INPUT.SIRST5K.N2N_PROB``), which then goes the usual way, or, with
    ``INPUT.SIRST5K.NEGATIVE``, into the group of its rotated variants. Every variant of a group
    gets the same rescale, brightness / contrast, flip and crop (one draw, applied to each), so
    they keep one label. The returned dict is then the first variant's, plus ``"group"``: the
    list of the variants' dicts (``"image"``, ``"sem_seg"``, ``"height"``, ``"width"``,
    ``"file_name"``, ``"image_id"``), which ``IRSTDSegmentor`` flattens in training. The random
    draws come from ``np.random`` (as detectron2's augmentations), so detectron2's per-worker
    seeding makes them reproducible.
    """

    @configurable
    def __init__(
        self,
        is_train: bool,
        *,
        augmentations: List[Union[T.Augmentation, T.Transform]],
        reader: IRReaderSettings = IRReaderSettings(),
        sirst5k: Optional[Callable] = None,
    ):
        """
        Args:
            augmentations: see :func:`build_ir_augmentation`.
            reader: how frames and masks are read and bad samples handled.
            sirst5k: training-time callable ``(image, mask, rng) -> [(image, mask), ...]``
                (:class:`ir_d2.data.sirst5k.SIRST5KAugmentation`), or None; unused at test time.
        """
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.sirst5k = sirst5k if is_train else None
        self._init_reader(reader)
        mode = "training" if is_train else "inference"
        logger.info(f"[IRSTDDatasetMapper] Augmentations used in {mode}: {augmentations}")
        if self.sirst5k is not None:
            logger.info(f"[IRSTDDatasetMapper] SIRST-5K online augmentation: {self.sirst5k}")

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        ret = {
            "is_train": is_train,
            "augmentations": build_ir_augmentation(cfg, is_train, semantic=True),
            "reader": IRReaderSettings.from_config(cfg, is_train),
        }
        if is_train and cfg.INPUT.SIRST5K.ENABLED:
            ret["sirst5k"] = build_sirst5k_augmentation(cfg)
        return ret

    def _augment_train(
        self, image: np.ndarray, mask: Optional[np.ndarray]
    ) -> List[Tuple[np.ndarray, Optional[np.ndarray]]]:
        """
        Online augmentation hook, applied in training after reading and before the geometric and
        photometric augmentations and the crop. ``image``: HxWx3 uint8 BGR; ``mask``: HxW uint8
        in {0, 1}, or None for a record without mask.

        Returns a list of ``(image, mask)`` pairs of one common size (HxW may change): one pair,
        or several, the variants of one frame that form a ``"group"`` (the same augmentations are
        then applied to each). A single ``(image, mask)`` tuple is accepted too. Here: the pair
        itself, or the SIRST-5K augmentation when ``INPUT.SIRST5K.ENABLED`` (a record without mask
        is augmented as a frame without targets and keeps no mask).
        """
        if self.sirst5k is None:
            return [(image, mask)]
        rng = np.random.default_rng(np.random.randint(2**31 - 1))  # under detectron2's seeding
        target = mask if mask is not None else np.zeros(image.shape[:2], np.uint8)
        pairs = self.sirst5k(image, target, rng)
        return pairs if mask is not None else [(im, None) for im, _ in pairs]

    def _augment_group(self, image: np.ndarray, mask: Optional[np.ndarray]):
        """:meth:`_augment_train`, then the augmentations drawn once and applied to every pair."""
        pairs = self._augment_train(image, mask)
        if isinstance(pairs, tuple):
            pairs = [pairs]
        if len(pairs) == 0:
            raise ValueError(f"{type(self).__name__}._augment_train returned no (image, mask) pair")
        shape = pairs[0][0].shape[:2]
        if any(im.shape[:2] != shape for im, _ in pairs):
            raise ValueError(
                f"{type(self).__name__}._augment_train returned pairs of different sizes "
                f"{[im.shape[:2] for im, _ in pairs]}: the variants of a group must share H x W"
            )
        aug_input = T.AugInput(pairs[0][0], sem_seg=pairs[0][1])
        transforms = self.augmentations(aug_input)
        out = [(aug_input.image, aug_input.sem_seg)]
        for im, m in pairs[1:]:
            m = None if m is None else transforms.apply_segmentation(m)
            out.append((transforms.apply_image(im), m))
        return out

    def _map(self, dataset_dict):
        image = self._read_image(dataset_dict)
        mask = None
        if "sem_seg_file_name" in dataset_dict:
            mask = self._read_mask(dataset_dict, image.shape)
        if self.is_train:
            pairs = self._augment_group(image, mask)
        else:
            aug_input = T.AugInput(image)
            self.augmentations(aug_input)
            pairs = [(aug_input.image, mask)]
        variants = [self._variant(dataset_dict, im, m) for im, m in pairs]
        dataset_dict.update(variants[0])
        if len(variants) > 1:
            dataset_dict["group"] = variants
        if self.is_train:
            dataset_dict.pop("sem_seg_file_name", None)
        dataset_dict.pop("annotations", None)
        return dataset_dict

    _VARIANT_KEYS = ("height", "width", "file_name", "image_id")

    def _variant(self, dataset_dict, image: np.ndarray, mask: Optional[np.ndarray]) -> dict:
        """One model input: the image and mask as tensors, with the record's identity keys."""
        out = {k: dataset_dict[k] for k in self._VARIANT_KEYS if k in dataset_dict}
        out["image"] = self._to_tensor(image)
        if mask is not None:
            out["sem_seg"] = torch.as_tensor(mask.astype(np.int64))
        return out


class IRDatasetMapper(_IRReader, DatasetMapper):
    """
    detectron2's DatasetMapper for IR instance sets: the same outputs (``"image"`` uint8 3xHxW,
    ``"instances"`` in training), with the IR reader (gray / 16-bit frames to 3-channel BGR), the
    IR augmentations of :func:`build_ir_augmentation` and the bad-sample handling of this module.
    COCO RLE segmentations (the ``*_instances`` sets) need ``INPUT.MASK_FORMAT: "bitmask"``.
    """

    @configurable
    def __init__(self, is_train: bool, *, reader: IRReaderSettings = IRReaderSettings(), **kwargs):
        """``reader``: as :class:`IRSTDDatasetMapper`'s (its ``image_format`` is the mapper's);
        ``kwargs``: detectron2's DatasetMapper arguments but ``image_format``."""
        DatasetMapper.__init__(self, is_train, image_format=reader.image_format, **kwargs)
        self._init_reader(reader)

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        ret = super().from_config(cfg, is_train)
        del ret["image_format"]  # the reader's
        ret["augmentations"] = build_ir_augmentation(cfg, is_train)
        ret["reader"] = IRReaderSettings.from_config(cfg, is_train)
        return ret

    def _map(self, dataset_dict):
        image = self._read_image(dataset_dict)
        sem_seg = None
        if "sem_seg_file_name" in dataset_dict:
            sem_seg = self._read_mask(dataset_dict, image.shape)
            dataset_dict.pop("sem_seg_file_name")
        aug_input = T.AugInput(image, sem_seg=sem_seg)
        transforms = self.augmentations(aug_input)
        image, sem_seg = aug_input.image, aug_input.sem_seg
        image_shape = image.shape[:2]
        dataset_dict["image"] = self._to_tensor(image)
        if sem_seg is not None:
            dataset_dict["sem_seg"] = torch.as_tensor(sem_seg.astype(np.int64))
        if self.proposal_topk is not None:
            utils.transform_proposals(
                dataset_dict, image_shape, transforms, proposal_topk=self.proposal_topk
            )
        if not self.is_train:
            dataset_dict.pop("annotations", None)
            return dataset_dict
        if "annotations" in dataset_dict:
            if self.use_instance_mask and self.instance_mask_format == "polygon":
                for anno in dataset_dict["annotations"]:
                    if isinstance(anno.get("segmentation"), dict):
                        raise ValueError(
                            f"dataset '{self._dataset_name(dataset_dict)}' has RLE masks: set "
                            'INPUT.MASK_FORMAT "bitmask" (it is "polygon")'
                        )
            self._transform_annotations(dataset_dict, transforms, image_shape)
        return dataset_dict


def build_ir_mapper(cfg, is_train: bool):
    """The mapper named by ``cfg.INPUT.DATASET_MAPPER_NAME``: "IRDatasetMapper" (instances),
    "IRSTDDatasetMapper" (small-target semantic) or "DatasetMapper" (detectron2's)."""
    name = cfg.INPUT.DATASET_MAPPER_NAME
    if name == "IRDatasetMapper":
        return IRDatasetMapper(cfg, is_train)
    if name == "IRSTDDatasetMapper":
        return IRSTDDatasetMapper(cfg, is_train)
    if name == "DatasetMapper":
        return DatasetMapper(cfg, is_train)
    raise ValueError(f"INPUT.DATASET_MAPPER_NAME={name!r} is not one of {', '.join(MAPPER_NAMES)}")
