"""
Dataset mappers for infrared frames, chosen in configs by ``INPUT.DATASET_MAPPER_NAME``:

* :class:`IRDatasetMapper` (instances: Mask R-CNN / Faster R-CNN), detectron2's DatasetMapper with
  the IR reader and IR augmentations;
* :class:`IRSTDDatasetMapper` (small-target semantic masks: IRSTDSegmentor), returning ``"image"``
  (uint8 3xHxW) and ``"sem_seg"`` (int64 HxW in {0, 1}).

Both read any IR frame (8-bit L/P/RGB/RGBA, 16-bit PNG/TIFF; :func:`ir_d2.data.io.read_ir_image`)
into 3-channel BGR (``INPUT.FORMAT`` "BGR" or "RGB"), normalising frames with more than 8 bits by
``INPUT.IR.NORMALIZE`` (:mod:`ir_d2.data.reader`), with the augmentations of
:func:`ir_d2.data.augmentation.build_ir_augmentation`.

``DATALOADER.FILTER_EMPTY_ANNOTATIONS`` (detectron2's, default True) drops frames without instances
from training sets that have "annotations". Semantic sets have none, so background-only frames are
always kept for IRSTDDatasetMapper; the small-target ``*_instances`` configs should set it False so
that background frames keep teaching the detector what is *not* a target (false alarms, Fa).

SIRST-5K online augmentation (Lu et al. 2024; ``INPUT.SIRST5K.*``): with
``INPUT.SIRST5K.ENABLED`` the training IRSTDDatasetMapper applies
:class:`ir_d2.data.sirst5k.SIRST5KAugmentation` (built once by
:func:`ir_d2.data.augmentation.build_sirst5k_augmentation`, its noise bank sampled from the frames
of ``DATASETS.TRAIN``) in its :meth:`IRSTDDatasetMapper._augment_train` hook; with
``INPUT.SIRST5K.NEGATIVE`` each frame becomes a ``"group"`` of rotated variants for the
negative-sample loss of IRSTDSegmentor (``MODEL.IRSTD.NEG_LOSS``).
"""

import logging
from typing import Callable, List, Optional, Tuple, Union

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from .augmentation import build_ir_augmentation, build_sirst5k_augmentation
from .reader import IRReaderMixin, IRReaderSettings

__all__ = ["IRDatasetMapper", "IRSTDDatasetMapper", "build_ir_mapper", "MAPPER_NAMES"]

logger = logging.getLogger(__name__)

MAPPER_NAMES = ("IRDatasetMapper", "IRSTDDatasetMapper", "DatasetMapper")


class IRSTDDatasetMapper(IRReaderMixin):
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


class IRDatasetMapper(IRReaderMixin, DatasetMapper):
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
