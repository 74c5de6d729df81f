"""
Shared test fixtures. The whole suite needs detectron2: without it the run stops at once with one
line saying how to install it (no silent skipping).
"""

import os
from pathlib import Path

import pytest
from hypothesis import settings

# Hypothesis draws the same examples on every run (the suite is seeded, so CI is reproducible);
# HYPOTHESIS_PROFILE=explore draws fresh ones, to hunt edge cases before a change lands.
settings.register_profile("default", derandomize=True, deadline=None)
settings.register_profile("explore", derandomize=False, deadline=None, max_examples=300)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = REPO_ROOT / "configs"
# Real IR data shared beside the repository (never copied into it); tests skip without it.
SHARED_DATA = Path(os.environ.get("IR_D2_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

try:
    import detectron2  # noqa: F401
except ImportError as e:  # pragma: no cover - environment check
    pytest.exit(
        f"detectron2 is not importable ({e}): install it by its official guide "
        "(https://detectron2.readthedocs.io/en/latest/tutorials/install.html), "
        "after torch, then rerun.",
        returncode=4,
    )


# Mask R-CNN options that keep a CPU training step or inference small (fewer proposals and ROIs),
# with every detection kept so inference returns Instances even from random weights.
SMALL_RCNN_OPTS = (
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", 64, "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 32,
    "MODEL.RPN.POST_NMS_TOPK_TEST", 50, "TEST.DETECTIONS_PER_IMAGE", 10,
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0,
)  # fmt: skip


def shared_data_dir(name: str) -> Path:
    """Path of ``../shared/data/<name>``, or skip the test with a clear reason."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real IR data {path} is absent (set IR_D2_SHARED_DATA to ../shared/data)")
    return path


def ir_cfg(config_file=None, opts=()):
    """A detectron2 config with ir_d2's keys, merged from ``configs/<config_file>``, on the CPU,
    with no pretrained weights (not frozen)."""
    from ir_d2.engine.defaults import setup_cfg

    path = str(CONFIGS / config_file) if config_file is not None else None
    return setup_cfg(path, ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", *opts], freeze=False)


@pytest.fixture(autouse=True)
def _ir_d2_logs_reach_caplog():
    """detectron2's ``setup_logger`` (run by train_net and the demo) stops the "ir_d2" logger from
    propagating; caplog listens at the root, so turn propagation back on for every test."""
    import logging

    logger = logging.getLogger("ir_d2")
    old = logger.propagate
    logger.propagate = True
    yield
    logger.propagate = old


def write_irstd_folder(root, n=6, size=64, seed=0, mask_values=(0, 255)):
    """A small SIRST-like set under ``root``: ``images/``, ``masks/`` (values ``mask_values``) and
    ``train.txt`` of ``n`` synthetic ``size`` x ``size`` frames. Returns the frame names."""
    import cv2
    import numpy as np

    from ir_d2.data.ir_datasets.synthetic import make_synthetic_frame

    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    names = []
    for i in range(n):
        image, mask, _ = make_synthetic_frame(rng, size, size, empty_prob=0.0)
        name = f"f{i:03d}"
        cv2.imwrite(str(root / "images" / f"{name}.png"), image)
        out = np.where(mask > 0, mask_values[1], mask_values[0]).astype(np.uint8)
        cv2.imwrite(str(root / "masks" / f"{name}.png"), out)
        names.append(name)
    (root / "train.txt").write_text("\n".join(names) + "\n")
    return names


def write_user_project(root, n=6, seed=0):
    """A user's project under ``root``: :func:`write_irstd_folder` in ``root/data`` plus
    ``data/ann.json``, the COCO json ``masks_to_coco`` makes of it. Returns the frame names."""
    import json

    from ir_d2.tools.masks_to_coco import build_coco

    names = write_irstd_folder(root / "data", n=n, seed=seed)
    coco = build_coco(str(root / "data/images"), str(root / "data/masks"))
    (root / "data/ann.json").write_text(json.dumps(coco))
    return names


def remove_datasets(prefix: str) -> None:
    """Unregister the datasets (and their metadata) whose names start with ``prefix``."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    for name in list(DatasetCatalog.keys()):
        if name.startswith(prefix):
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
