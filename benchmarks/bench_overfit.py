"""
Every model family shown to learn: each paper-row model trained on 16 real frames until it fits
them, the bar being IoU above 90 on those frames for the small-target nets (scored by
IRSTDEvaluator) and mask AP50 above 90 for the Mask R-CNN (16 SIRST frames as instances, scored by
the COCO evaluator). A model that cannot fit 16 frames has a bug; one that can shows that its
loss, its targets and its post-processing agree. Reports the iterations and minutes each family
needed, or its best figure when the budget ran out.

    IR_D2_DATASETS=datasets python3 benchmarks/bench_overfit.py [--minutes 20] [--frames 16]
        [--family unet --family dnanet ...] [--output output/bench_overfit] [--resume]

Each family keeps its paper row's net, heads, losses and initialisation (deep supervision, the
SIRST-5K synthesis and L_Neg, Focal-SIoU and BCE + Dice + Lovász-Softmax), with widths, depth
or input size scaled down where the 2-core CPU needs it (each row says which), trained on the
frames as they are (no augmentation but the paper row's own synthesis), batch 4 (a family's
own options may change it), Adam at lr 1e-3 for the small-target nets and SGD at 0.01 for the
Mask R-CNN, evaluated every ``--every`` iterations. The frames are whole, or, for the nets
whose iterations the 2-core CPU cannot afford at 256x256 (the SIRST-5K net: 2.7 s per iteration
at width 8; with its negative augmentation every frame becomes a group of 4 samples per target),
each frame's 128x128 (64x64) window with the most target pixels (``_common.cropped_frames``),
trained and scored on alike.

Each small-target point is scored twice: as trained (eval mode, BatchNorm's running
statistics) and with the BatchNorm statistics of one forward over all the frames at once
(``with_frame_statistics``). A net that scores well only the second way fits its frames; its
running statistics (averages over batches of 4) are what fails. The SIRST-5K net with L_Neg does
that (SIRST-5K eq. 9 sums per-image Soft-IoU losses, which push each frame's dim 9-pixel target
as hard as any; benchmarks/README.md has the runs that tell this apart).
"""

import argparse
import time
from copy import deepcopy
from pathlib import Path

import torch
from _common import (
    cropped_frames,
    first_frames,
    markdown_table,
    save_result,
    saved_result,
    train_and_watch,
    use_datasets,
    write_report,
)
from detectron2.evaluation import inference_on_dataset
from detectron2.utils.logger import setup_logger
from fvcore.nn.precise_bn import BN_MODULE_TYPES, update_bn_stats

import ir_d2  # noqa: F401
from ir_d2.engine.defaults import setup_cfg
from ir_d2.engine.trainer import IRTrainer

TOOL = "benchmarks/bench_overfit.py"
BAR = 90.0
#: the curve's key of the score with the BatchNorm statistics of all the frames
FRAME_STATS = "IoU, frames' BN statistics"
#: the frames as they are: no rescale, crop, flip, blur or jitter
NO_AUGMENTATION = [
    "INPUT.IR.SCALE", [1.0, 1.0], "INPUT.IR.CROP_SIZE", [], "INPUT.IR.FLIP", "none",
    "INPUT.IR.BLUR_PROB", 0.0, "INPUT.IR.BRIGHTNESS", [1.0, 1.0], "INPUT.IR.CONTRAST", [1.0, 1.0],
]  # fmt: skip
SMALL_TARGET = [
    "SOLVER.OPTIMIZER", "Adam", "SOLVER.BASE_LR", 1e-3, "SOLVER.WEIGHT_DECAY", 0.0,
    "SOLVER.EPS", 0.0, "SOLVER.LR_SCHEDULER_NAME", "WarmupMultiStepLR", "SOLVER.STEPS", [],
    "SOLVER.WARMUP_ITERS", 0, "SOLVER.IMS_PER_BATCH", 4,
]  # fmt: skip
DETECTOR = [
    "SOLVER.OPTIMIZER", "SGD", "SOLVER.BASE_LR", 0.01, "SOLVER.WEIGHT_DECAY", 0.0,
    "SOLVER.LR_SCHEDULER_NAME", "WarmupMultiStepLR", "SOLVER.STEPS", [], "SOLVER.WARMUP_ITERS", 20,
    "SOLVER.IMS_PER_BATCH", 4, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.05,
]  # fmt: skip
#: family: (label, config, what is scaled down, extra options, crop: 0 for the whole frames, else
#: the side of the window of each frame with the most target pixels, trained and scored on)
FAMILIES = {
    "unet": ("U-Net", "IRSTD/irstd_unet_W32_1500e_nudt_sirst.yaml", "width 16", [
        "MODEL.IRSTD.BASE_CHANNELS", 16], 0),
    "sgem": ("SGEM U-Net", "IRSTD/irstd_sgem_unet_W40_1500e_nudt_sirst.yaml", "widths / 2", [
        "MODEL.IRSTD.CHANNELS", [20, 32, 64, 128, 280]], 0),
    "dnanet": ("DNANet", "IRSTD/irstd_dnanet_W16_bs16-1500e_nudt_sirst.yaml", "width 8", [
        "MODEL.IRSTD.BASE_CHANNELS", 8], 0),
    "sirst5k": ("SIRST-5K net", "IRSTD/irstd_sirst5k_net_W16_bs256-1500e_nudt_sirst.yaml",
                "width 8, 128x128 crops", ["MODEL.IRSTD.BASE_CHANNELS", 8], 128),
    "sirst5k_neg": ("SIRST-5K net + N2N + Neg + L_Neg",
                    "IRSTD/irstd_sirst5k_net-n2n-neg_W16_bs256-1500e_nudt_sirst.yaml",
                    "width 8, 64x64 crops", ["MODEL.IRSTD.BASE_CHANNELS", 8], 64),
    "bnsa_rcnn": ("BNSA Mask R-CNN (Focal-SIoU, BCE + Dice + Lovász)",
                  "IR-InstanceSegmentation/mask_rcnn-focal_siou-bce_dice_lovasz_R_50_BNSA-C3C4_FPN"
                  "_scratch-gn_100e_nudt_sirst.yaml", "R-18 (of R-50), from scratch, GN", [
                      "MODEL.RESNETS.DEPTH", 18, "MODEL.RESNETS.RES2_OUT_CHANNELS", 64,
                      "DATASETS.TRAIN", "('sirst_train_instances',)", "INPUT.MIN_SIZE_TRAIN",
                      (240,), "INPUT.MAX_SIZE_TRAIN", 320, "INPUT.MIN_SIZE_TEST", 240,
                      "INPUT.MAX_SIZE_TEST", 320], 0),
}  # fmt: skip


def is_detector(cfg) -> bool:
    return cfg.MODEL.META_ARCHITECTURE != "IRSTDSegmentor"


def build(family: str, args, out: Path):
    label, config, scaled, extra, crop = FAMILIES[family]
    probe = setup_cfg(config, ["MODEL.DEVICE", "cpu", *extra])
    detector = is_detector(probe)
    train = probe.DATASETS.TRAIN[0]
    if crop:
        frames = cropped_frames(train, args.frames, crop, out / family / f"frames_crop{crop}")
    else:
        frames = first_frames(train, args.frames)
    opts = ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "SEED", args.seed]
    opts += ["DATASETS.TRAIN", f"('{frames}',)", "DATASETS.TEST", f"('{frames}',)"]
    opts += ["SOLVER.MAX_ITER", 10**8, "SOLVER.CHECKPOINT_PERIOD", 10**8, "TEST.EVAL_PERIOD", 0]
    opts += ["DATALOADER.NUM_WORKERS", 1, "OUTPUT_DIR", str(out / family)]
    # the family's own options over the recipe (a batch, say), the frames over both
    opts = (DETECTOR if detector else SMALL_TARGET) + NO_AUGMENTATION + list(extra) + opts
    return label, scaled, detector, frames, setup_cfg(config, opts)


def with_frame_statistics(model, inputs):
    """
    A copy of ``model`` whose BatchNorm layers hold the statistics of ONE forward over all of
    ``inputs`` (every frame) at once, by fvcore's precise BN over that single batch (each layer
    normalised by them as it goes, as training at a batch of every frame would), the rest in eval
    mode; None for a model without BatchNorm. Set beside the running statistics (averages over
    the training batches), it tells a net that does not fit its frames from one whose running
    statistics are not the frames' (see the module docstring).
    """
    copy = deepcopy(model).eval()
    norms = [m for m in copy.modules() if isinstance(m, BN_MODULE_TYPES)]
    if not norms:
        return None
    for m in norms:
        m.train()  # update_bn_stats recomputes the layers left in training mode
    update_bn_stats(copy, [inputs], num_iters=1)
    return copy.eval()


def run(family: str, args, out: Path) -> dict:
    label, scaled, detector, frames, cfg = build(family, args, out)
    torch.manual_seed(args.seed)
    trainer = IRTrainer(cfg)
    trainer.resume_or_load(resume=False)
    metric = "segm AP50" if detector else "IoU"

    # the frames, read and mapped once: every evaluation scores the same inputs
    batches = list(IRTrainer.build_test_loader(cfg, frames))
    every_frame = [x for b in batches for x in b]  # one batch of all: their BN statistics

    def score(model):
        evaluator = IRTrainer.build_evaluator(cfg, frames, str(out / family / "eval"))
        results = inference_on_dataset(model, batches, evaluator)
        return round(float(results["segm"]["AP50"] if detector else results["irstd"]["IoU"]), 2)

    def evaluate(trainer):
        point = {metric: score(trainer.model)}
        if not detector:  # the same weights with the BatchNorm statistics of all the frames
            frame_stats = with_frame_statistics(trainer.model, every_frame)
            if frame_stats is not None:
                point[FRAME_STATS] = score(frame_stats)
        print(f"{label}: iteration {trainer.iter + 1}, {point}", flush=True)
        return point

    t0 = time.perf_counter()
    curve = train_and_watch(
        trainer, args.every, evaluate, args.minutes * 60, done=lambda m: m[metric] > BAR
    )
    reached = next((p for p in curve if p[metric] > BAR), None)
    return {
        "family": family,
        "label": label,
        "config": FAMILIES[family][1],
        "scaled": scaled,
        "frames": frames,
        "batch": cfg.SOLVER.IMS_PER_BATCH,
        "metric": metric,
        "best": max(p[metric] for p in curve),
        "best_frame_stats": max((p[FRAME_STATS] for p in curve if FRAME_STATS in p), default=None),
        "reached": reached is not None,
        "iterations": reached["iteration"] if reached else curve[-1]["iteration"],
        "minutes": round((reached or curve[-1])["train_seconds"] / 60, 1),
        "wall_minutes": round((time.perf_counter() - t0) / 60, 1),
        "curve": curve,
    }


def markdown(rows, args) -> str:
    table = markdown_table(
        ["family", "scaled down", "batch", "metric", f"bar > {BAR:g}", "iterations",
         "train minutes", "best, frames' BN statistics"],  # fmt: skip
        [
            [
                r["label"],
                r["scaled"],
                r.get("batch", 4),
                r["metric"],
                f"reached ({r['best']:.2f})" if r["reached"] else f"not reached (best {r['best']})",
                r["iterations"],
                r["minutes"],
                "—" if r.get("best_frame_stats") is None else r["best_frame_stats"],
            ]
            for r in rows
        ],
    )
    return (
        f"{args.frames} frames each, {args.minutes} min budget, "
        f"{torch.get_num_threads()} threads\n\n{table}\n"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--family", action="append", choices=sorted(FAMILIES), default=[])
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget per family")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--every", type=int, default=50, help="evaluate every N iterations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--datasets", default=None, help="folder of the datasets")
    parser.add_argument("--output", default="output/bench_overfit")
    parser.add_argument("--resume", action="store_true", help="keep families already run alike")
    args = parser.parse_args(argv)
    use_datasets(args.datasets)
    setup_logger(name="ir_d2")
    out = Path(args.output)
    rows = []
    conditions = {k: getattr(args, k) for k in ("minutes", "frames", "every", "seed")}
    for family in args.family or list(FAMILIES):
        saved = out / family / "row.json"
        # a row is kept only for the same family definition (its config, scaling and crop):
        # code_version() covers ir_d2/ and configs/, not this table
        kept = {**conditions, "family": [str(v) for v in FAMILIES[family]]}
        row = saved_result(saved, kept, args.resume)
        if row is None:
            row = run(family, args, out)
            save_result(saved, TOOL, kept, row)
        rows.append(row)
    text = markdown(rows, args)
    write_report(out, "bench_overfit", TOOL, {"rows": rows, **conditions}, text)
    print(text)
    return rows


if __name__ == "__main__":
    main()
