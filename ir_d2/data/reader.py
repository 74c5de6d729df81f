"""
How the IR mappers read a record, check it and skip a bad one: :class:`IRReaderSettings` (from
``INPUT.FORMAT``, ``INPUT.IR.*`` and ``DATALOADER.SKIP_BAD_SAMPLES``) and :class:`IRReaderMixin`,
the reading shared by both mappers.

Bad input: a missing, empty or corrupt image or mask, or a mask whose size differs from its image,
raises :class:`ir_d2.data.io.IRDataError` naming the file(s) and the dataset. With
``DATALOADER.SKIP_BAD_SAMPLES: True`` the mapper logs it, counts it (``mapper.num_skipped``, per
data-loader worker) and returns None: the ir_d2 trainer's training loader then draws another
sample (and stops with a clear error when every sample is bad), its test loader leaves the frame
out (:mod:`ir_d2.data.build`).
"""

import copy
import logging
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch
from detectron2.data import detection_utils as utils

from ir_d2.structures.masks import fit_mask_to_image

from .io import IRDataError, check_normalize, read_ir_image, read_ir_mask

__all__ = ["IRReaderSettings", "IRReaderMixin"]

logger = logging.getLogger(__name__)
# skipped samples named one by one per worker, then only counted every _SKIP_LOG_EVERY
_SKIP_LOG_FIRST, _SKIP_LOG_EVERY = 20, 100


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


class IRReaderMixin:
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
        return fit_mask_to_image(
            mask,
            image_shape,
            resize=self.reader.resize_mismatched_masks,
            image_file=dataset_dict["file_name"],
            mask_file=mask_file,
            dataset_name=name,
        )

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
        n = self.num_skipped
        if n <= _SKIP_LOG_FIRST or n % _SKIP_LOG_EVERY == 0:
            logger.warning(f"skipped bad sample #{n} of this worker: {error}")

    def _to_tensor(self, image: np.ndarray) -> torch.Tensor:
        if self.reader.image_format == "RGB":
            image = image[:, :, ::-1]
        return torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
