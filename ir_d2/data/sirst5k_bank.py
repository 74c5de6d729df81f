"""
The SIRST-5K online augmentation of a config (Lu et al. 2024, sec. III; ``INPUT.SIRST5K.*``): its
noise bank (eq. 1) is sampled once from every frame of ``DATASETS.TRAIN``, read as the mappers
read frames. The augmentation itself is pure NumPy (:mod:`ir_d2.data.sirst5k`).
"""

import logging
from typing import Iterator, List, Sequence, Tuple

import numpy as np
from detectron2.data import DatasetCatalog

from .io import IRDataError
from .reader import IRReaderSettings
from .sirst5k import SIRST5KAugmentation

__all__ = ["build_sirst5k_augmentation"]

logger = logging.getLogger(__name__)


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
