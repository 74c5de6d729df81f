"""
Data loaders of the ir_d2 trainer: detectron2's, with bad samples handled the way a user expects.

- Training (:func:`build_ir_train_loader`): with ``DATALOADER.SKIP_BAD_SAMPLES`` a bad sample is
  replaced by another one, as in detectron2; when every sample of the training sets has failed,
  :class:`IRMapDataset` stops with an :class:`IRDataError` saying so (detectron2 would fail with
  "Sample larger than population").
- Evaluation (:func:`build_ir_test_loader`): a skipped frame is left out, never replaced by another
  (which detectron2's map-style dataset would evaluate twice); the evaluators report how many
  frames they scored.
"""

import logging

from detectron2.data import (
    DatasetFromList,
    MapDataset,
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from detectron2.data.common import ToIterableDataset
from detectron2.data.samplers import InferenceSampler

from .dataset_mapper import build_ir_mapper
from .io import IRDataError

__all__ = ["IRMapDataset", "build_ir_train_loader", "build_ir_test_loader"]

logger = logging.getLogger(__name__)


class IRMapDataset(MapDataset):
    """
    detectron2's ``MapDataset`` (a mapper returning None makes it try another random sample) that
    stops with an :class:`IRDataError` once every sample has failed, instead of asking Python's
    ``random.sample`` for a sample of an empty pool.
    """

    def __getitem__(self, idx):
        cur_idx = int(idx)
        while True:
            data = self._map_func(self._dataset[cur_idx])
            if data is not None:
                self._fallback_candidates.add(cur_idx)
                return data
            self._fallback_candidates.discard(cur_idx)
            if not self._fallback_candidates:
                raise IRDataError(
                    f"all {len(self)} training samples failed to load (DATALOADER.SKIP_BAD_SAMPLES "
                    "skipped each one; the warnings above name the files)"
                )
            cur_idx = self._rng.sample(list(self._fallback_candidates), k=1)[0]


def _identity(x):
    return x


def build_ir_train_loader(cfg):
    """detectron2's ``build_detection_train_loader`` over the training sets of ``cfg``, mapped by
    :func:`build_ir_mapper` through an :class:`IRMapDataset`."""
    dicts = get_detection_dataset_dicts(
        cfg.DATASETS.TRAIN,
        filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
        min_keypoints=(
            cfg.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE if cfg.MODEL.KEYPOINT_ON else 0
        ),
        proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN if cfg.MODEL.LOAD_PROPOSALS else None,
    )
    dataset = IRMapDataset(DatasetFromList(dicts, copy=False), build_ir_mapper(cfg, True))
    # the mapping happened above: detectron2's own MapDataset gets the identity
    return build_detection_train_loader(cfg, mapper=_identity, dataset=dataset)


def build_ir_test_loader(cfg, dataset_name: str):
    """detectron2's ``build_detection_test_loader`` of one test set, mapped by
    :func:`build_ir_mapper`, as an iterable dataset: a frame the mapper skips (returns None) is
    left out rather than replaced by another."""
    proposal_files = None
    if cfg.MODEL.LOAD_PROPOSALS:
        proposal_files = [
            cfg.DATASETS.PROPOSAL_FILES_TEST[list(cfg.DATASETS.TEST).index(dataset_name)]
        ]
    dicts = get_detection_dataset_dicts(
        [dataset_name], filter_empty=False, proposal_files=proposal_files
    )
    dataset = ToIterableDataset(DatasetFromList(dicts, copy=False), InferenceSampler(len(dicts)))
    return build_detection_test_loader(
        dataset=dataset,
        mapper=build_ir_mapper(cfg, False),
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )
