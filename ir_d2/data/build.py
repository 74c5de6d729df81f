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
import random

from detectron2.data import (
    DatasetFromList,
    MapDataset,
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from detectron2.data.build import _train_loader_from_config
from detectron2.data.common import ToIterableDataset
from detectron2.data.samplers import InferenceSampler

from .dataset_mapper import build_ir_mapper
from .io import IRDataError

__all__ = ["IRMapDataset", "build_ir_train_loader", "build_ir_test_loader"]

logger = logging.getLogger(__name__)


class _SubstituteSampler:
    """
    The random source of an :class:`IRMapDataset`: detectron2's own (``random.Random(42)``), but
    an empty pool of candidates raises :class:`IRDataError`. It stands in for one line of the
    pinned detectron2, ``cur_idx = self._rng.sample(list(self._fallback_candidates), k=1)[0]`` in
    ``MapDataset.__getitem__`` (detectron2/data/common.py), which would ask ``random.sample`` for
    a sample of an empty pool; ``tests/test_bad_input.py`` fails when that line changes.
    """

    def __init__(self, count: int):
        self._random = random.Random(42)
        self._count = count

    def sample(self, population, k):
        if not population:
            raise IRDataError(
                f"all {self._count} training samples failed to load (DATALOADER.SKIP_BAD_SAMPLES "
                "skipped each one; the warnings above name the files)"
            )
        return self._random.sample(population, k)


class IRMapDataset(MapDataset):
    """
    detectron2's ``MapDataset`` (a mapper returning None makes it try another random sample) that
    stops with an :class:`IRDataError` once every sample has failed (:class:`_SubstituteSampler`).
    """

    def __init__(self, dataset, map_func):
        super().__init__(dataset, map_func)
        self._rng = _SubstituteSampler(len(dataset))


def _identity(x):
    return x


def build_ir_train_loader(cfg):
    """
    detectron2's ``build_detection_train_loader`` as detectron2 configures it from ``cfg``
    (``_train_loader_from_config``: the training sets' dicts, the sampler, batch size and
    workers), its dicts mapped by :func:`build_ir_mapper` through an :class:`IRMapDataset`.
    """
    kwargs = _train_loader_from_config(cfg, mapper=_identity)
    dicts = DatasetFromList(kwargs["dataset"], copy=False)
    kwargs["dataset"] = IRMapDataset(dicts, build_ir_mapper(cfg, True))
    # the mapping happens in IRMapDataset: detectron2's own MapDataset gets the identity
    return build_detection_train_loader(**kwargs)


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
