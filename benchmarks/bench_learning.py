"""
A real learning check (minutes on a CPU; not a test): train the small-target U-Net on the real
``sirst_train`` frames for a fixed wall-clock budget, then score it on ``sirst_test`` beside a
classical white top-hat detector, both scored by the same metrics (IRSTDMetrics: IoU, nIoU, Pd,
Fa, F1; the net through IRSTDEvaluator). The goal: the net beats top-hat on IoU.

    IR_D2_DATASETS=../shared/data python3 benchmarks/bench_learning.py --minutes 20

The top-hat baseline gets its best chance: its kernel and threshold (mean + k * std of the top-hat
response) are chosen for the highest IoU on the training frames.
"""

import argparse
import os
import time

import cv2
import numpy as np
import torch
from _common import CONFIGS, SHARED_DATA
from detectron2.data import DatasetCatalog
from detectron2.engine import HookBase
from detectron2.evaluation import inference_on_dataset
from detectron2.utils.logger import setup_logger

import ir_d2  # noqa: F401
from ir_d2.data import IRSTDDatasetMapper
from ir_d2.engine.defaults import setup_cfg
from ir_d2.engine.trainer import IRTrainer
from ir_d2.evaluation import IRSTDMetrics, build_irstd_evaluator


class _BudgetSpent(Exception):
    pass


class _StopAfter(HookBase):
    """Stops training once the wall-clock budget is spent."""

    def __init__(self, seconds):
        self.seconds = seconds

    def before_train(self):
        self.start = time.perf_counter()

    def after_step(self):
        if time.perf_counter() - self.start > self.seconds:
            raise _BudgetSpent()


def tophat_map(gray: np.ndarray, kernel: int) -> np.ndarray:
    """White top-hat response of a gray frame (float32)."""
    se = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel, kernel))
    return cv2.morphologyEx(gray, cv2.MORPH_TOPHAT, se).astype(np.float32)


def tophat_predict(gray, kernel, k):
    r = tophat_map(gray, kernel)
    return r > r.mean() + k * r.std()


def _frames(cfg, name):
    """(gray, bool mask) of every frame of ``name`` at its original size, read by the same test
    mapper the net is evaluated with (so masks are binarised and resized as for the net)."""
    mapper = IRSTDDatasetMapper(cfg, is_train=False)
    out = []
    for d in DatasetCatalog.get(name):
        m = mapper(d)
        bgr = np.ascontiguousarray(m["image"].permute(1, 2, 0).numpy())
        out.append((cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), m["sem_seg"].numpy() > 0))
    return out


def score_tophat(frames, kernel, k):
    m = IRSTDMetrics()
    for gray, mask in frames:
        m.update(tophat_predict(gray, kernel, k), mask)
    return m.compute()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument(
        "--config-file", default=str(CONFIGS / "IRSTD" / "irstd_unet_W32_1500e_sirst.yaml")
    )
    parser.add_argument("--base-channels", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--crop", type=int, default=128, help="square training crop")
    parser.add_argument("--output", default="output/bench_learning")
    args = parser.parse_args()
    os.environ.setdefault("IR_D2_DATASETS", str(SHARED_DATA))
    setup_logger(name="ir_d2")
    setup_logger()
    torch.manual_seed(0)

    cfg = setup_cfg(
        args.config_file,
        [
            "MODEL.DEVICE",
            "cuda" if torch.cuda.is_available() else "cpu",
            "MODEL.IRSTD.BASE_CHANNELS",
            args.base_channels,
            "MODEL.IRSTD.CHANNELS",
            [],
            "SOLVER.IMS_PER_BATCH",
            args.batch,
            "SOLVER.BASE_LR",
            args.lr,
            "SOLVER.MAX_ITER",
            100000,
            "SOLVER.CHECKPOINT_PERIOD",
            100000,
            "TEST.EVAL_PERIOD",
            0,
            "DATALOADER.NUM_WORKERS",
            1,
            "OUTPUT_DIR",
            args.output,
            "SEED",
            0,
        ],
    )
    trainer = IRTrainer(cfg)
    trainer.register_hooks([_StopAfter(args.minutes * 60)])
    trainer.resume_or_load(resume=False)
    t0 = time.perf_counter()
    try:
        trainer.train()
    except _BudgetSpent:
        pass
    train_seconds = time.perf_counter() - t0
    iters = trainer.iter + 1
    trainer.model.eval()

    test_name = cfg.DATASETS.TEST[0]
    evaluator = build_irstd_evaluator(cfg, test_name)
    net = inference_on_dataset(
        trainer.model, IRTrainer.build_test_loader(cfg, test_name), evaluator
    )["irstd"]

    train_frames, test_frames = _frames(cfg, cfg.DATASETS.TRAIN[0]), _frames(cfg, test_name)
    best = max(
        ((kernel, k) for kernel in (5, 9, 13, 17) for k in (2, 3, 4, 6, 8, 12, 16, 24)),
        key=lambda p: score_tophat(train_frames, *p)["IoU"],
    )
    tophat = score_tophat(test_frames, *best)

    print(
        f"budget: {args.minutes:.1f} min on {cfg.MODEL.DEVICE} "
        f"({torch.get_num_threads()} threads), "
        f"{iters} iterations of batch {args.batch} ({train_seconds / 60:.1f} min), "
        f"U-Net base {args.base_channels}, {args.crop}x{args.crop} crops, Adam lr {args.lr}"
    )
    print(f"test set: {test_name} ({len(test_frames)} frames)")
    print(f"{'method':<28} {'IoU':>7} {'nIoU':>7} {'Pd':>7} {'Fa(1e-6)':>9} {'F1':>7}")
    for name, r in ((f"top-hat (kernel {best[0]}, k={best[1]})", tophat), ("U-Net (ir_d2)", net)):
        print(
            f"{name:<28} {r['IoU']:>7.2f} {r['nIoU']:>7.2f} {r['Pd']:>7.2f} {r['Fa']:>9.2f} "
            f"{r['F1']:>7.2f}"
        )
    print(f"IoU ratio U-Net / top-hat: {net['IoU'] / max(tophat['IoU'], 1e-9):.2f} (goal > 1)")


if __name__ == "__main__":
    main()
