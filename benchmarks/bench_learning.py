"""
Equal-budget learning study (minutes on a CPU; not a test): each config is trained for the same
wall-clock budget, then scored on its test split at the original frame size by IRSTDEvaluator
(IoU, nIoU, Pd, Fa, F1), beside a white top-hat detector whose kernel and threshold (mean + k *
std of the response) are tuned for the best IoU on the training frames. Any config works: the
small-target nets, and detectors, whose instances are scored as the union of their masks above
``MODEL.ROI_HEADS.SCORE_THRESH_TEST`` (boxes' centres for box-only models).

    # the study of the README: four small-target nets and the BNSA Mask R-CNN on NUDT-SIRST
    IR_D2_DATASETS=datasets python3 benchmarks/bench_learning.py --minutes 15
    # any configs, the same budget each
    python3 benchmarks/bench_learning.py --minutes 20 \
        --config-file IRSTD/irstd_unet_W32_1500e_sirst.yaml --config-file my.yaml

``--recipe small`` (the default) puts every config on one small-budget recipe, so the budget,
not the papers' 1500-epoch schedules, decides: small-target nets at base width 16, 128x128 crops,
batch 8, Adam lr 2e-3 without decay, output prior 0.01 (the method's own keys stay: SGEM, AFF
blocks and fusion, Xavier init, deep supervision, SIRST-5K's synthesis and L_Neg, augmentations);
detectors at batch 4, SGD lr 0.01 after a 50-iteration warm-up, no decay. ``--recipe none``
trains each config as it is. Writes ``<output>/bench_learning.{json,md}``, and each row as it
ends to ``<output>/<config>/row.json``; ``--resume`` keeps the rows already there that were run
with the same budget, recipe, options and device (a study killed half-way loses no finished row).
"""

import argparse
import json
import os
import time

import torch
from _common import (
    CONFIGS,
    first_frames,
    markdown_table,
    train_for,
    use_datasets,
    write_report,
)
from bench_classical import DETECTORS, irstd_frames, responses, score, tune
from detectron2.evaluation import inference_on_dataset
from detectron2.utils.logger import setup_logger

import ir_d2  # noqa: F401
from ir_d2.engine.defaults import resolve_config_file, setup_cfg
from ir_d2.engine.trainer import IRTrainer
from ir_d2.evaluation import build_irstd_evaluator
from ir_d2.utils.fileio import atomic_write

TOOL = "benchmarks/bench_learning.py"
STUDY = [
    ("U-Net", "IRSTD/irstd_unet_W32_1500e_nudt_sirst.yaml"),
    ("SGEM U-Net", "IRSTD/irstd_sgem_unet_W40_1500e_nudt_sirst.yaml"),
    ("AFF U-Net", "IRSTD/irstd_aff_unet_W32_bs256-1500e_nudt_sirst.yaml"),
    (
        "SIRST-5K net + N2N + neg + L_Neg",
        "IRSTD/irstd_sirst5k_net-n2n-neg_W16_bs256-1500e_nudt_sirst.yaml",
    ),
    (
        "BNSA Mask R-CNN (final model)",
        "IR-InstanceSegmentation/"
        "mask_rcnn-focal_siou-bce_dice_lovasz_R_50_BNSA-C3C4_FPN_scratch-gn_100e_nudt_sirst.yaml",
    ),
]
SMALL_IRSTD = [
    "MODEL.IRSTD.BASE_CHANNELS", 16, "MODEL.IRSTD.CHANNELS", [], "MODEL.IRSTD.PRIOR_PROB", 0.01,
    "INPUT.IR.CROP_SIZE", [128, 128], "SOLVER.IMS_PER_BATCH", 8, "SOLVER.OPTIMIZER", "Adam",
    "SOLVER.BASE_LR", 2e-3, "SOLVER.WEIGHT_DECAY", 0.0,
    "SOLVER.LR_SCHEDULER_NAME", "WarmupMultiStepLR", "SOLVER.STEPS", [], "SOLVER.WARMUP_ITERS", 0,
]  # fmt: skip
SMALL_DETECTOR = [
    "SOLVER.IMS_PER_BATCH", 4, "SOLVER.OPTIMIZER", "SGD", "SOLVER.BASE_LR", 0.01,
    "SOLVER.LR_SCHEDULER_NAME", "WarmupMultiStepLR", "SOLVER.STEPS", [], "SOLVER.WARMUP_ITERS", 50,
]  # fmt: skip
RUN = [
    "SOLVER.MAX_ITER", 10**8, "SOLVER.CHECKPOINT_PERIOD", 10**8, "TEST.EVAL_PERIOD", 0,
    "DATALOADER.NUM_WORKERS", 1, "SEED", 0, "MODEL.WEIGHTS", "",
]  # fmt: skip


def tuned_tophat(train_name, test_name):
    """The top-hat row: element and k tuned for IoU on ``train_name``, scored on ``test_name``
    (``bench_classical``'s tuning, each element's responses computed once per frame)."""
    cfg = setup_cfg(str(CONFIGS / "IRSTD/Base-IRSTD.yaml"), ["MODEL.DEVICE", "cpu"])
    train, test = irstd_frames(cfg, train_name), irstd_frames(cfg, test_name)
    kernel, k = tune("TopHat", DETECTORS["TopHat"][1], train)
    return {
        "name": f"top-hat ({kernel}x{kernel} ellipse, k = {k})",
        **score(responses("TopHat", kernel, test), k),
    }


def is_detector(cfg) -> bool:
    return cfg.MODEL.META_ARCHITECTURE != "IRSTDSegmentor"


def row_dir(config_file: str, args) -> str:
    return f"{args.output}/{config_file.rsplit('/', 1)[-1][:-5]}"


def row_conditions(args, device) -> dict:
    """What a saved row must share with this run to be kept by ``--resume``."""
    return {
        "minutes": args.minutes,
        "recipe": args.recipe,
        "opts": [str(o) for o in args.opts],
        "eval_frames": args.eval_frames,
        "device": device,
        "threads": torch.get_num_threads(),
    }


def saved_row(config_file: str, args, device):
    """The row saved by an earlier run under the same conditions, else None."""
    path = f"{row_dir(config_file, args)}/row.json"
    if not (args.resume and os.path.isfile(path)):
        return None
    with open(path) as f:
        saved = json.load(f)
    return saved["row"] if saved.get("conditions") == row_conditions(args, device) else None


def save_row(config_file: str, args, device, row: dict) -> None:
    # a half-written row never looks finished
    with atomic_write(f"{row_dir(config_file, args)}/row.json") as f:
        json.dump({"tool": TOOL, "conditions": row_conditions(args, device), "row": row}, f)


def last_loss(folder: str):
    """The last ``total_loss`` that training logged to ``<folder>/metrics.json`` (the median of
    its last 20 iterations, as detectron2 logs it), or None."""
    try:
        with open(f"{folder}/metrics.json") as f:
            losses = [json.loads(line).get("total_loss") for line in f if line.strip()]
    except OSError:
        return None
    losses = [v for v in losses if v is not None]
    return round(losses[-1], 3) if losses else None


def train_and_score(name, config_file, args, device):
    """One row: ``config_file`` trained for the budget, then scored by IRSTDEvaluator."""
    probe = setup_cfg(config_file, ["MODEL.DEVICE", device, *args.opts])
    recipe = []
    if args.recipe == "small":
        recipe = SMALL_DETECTOR if is_detector(probe) else SMALL_IRSTD
    out = row_dir(config_file, args)
    cfg = setup_cfg(
        config_file, ["MODEL.DEVICE", device, *recipe, *RUN, "OUTPUT_DIR", out, *args.opts]
    )
    torch.manual_seed(0)
    trainer = IRTrainer(cfg)
    trainer.resume_or_load(resume=False)
    iterations, seconds = train_for(trainer, args.minutes * 60)
    trainer.model.eval()
    test = first_frames(cfg.DATASETS.TEST[0], args.eval_frames)
    t0 = time.perf_counter()
    metrics = inference_on_dataset(
        trainer.model, IRTrainer.build_test_loader(cfg, test), build_irstd_evaluator(cfg, test)
    )["irstd"]
    return {
        "name": name,
        "config": config_file,
        "train": cfg.DATASETS.TRAIN[0],
        "test": test,
        "iterations": iterations,
        "batch": cfg.SOLVER.IMS_PER_BATCH,
        "train_minutes": round(seconds / 60, 2),
        "eval_seconds": round(time.perf_counter() - t0, 1),
        "last_loss": last_loss(out),
        **{k: metrics[k] for k in ("IoU", "nIoU", "Pd", "Fa", "F1")},
    }


def markdown(report) -> str:
    header = ["method", "iterations (batch)", "last loss", "IoU", "nIoU", "Pd", "Fa (1e-6)", "F1"]
    rows = []
    for r in report["tophat"] + report["rows"]:
        its = f"{r['iterations']} ({r['batch']})" if "iterations" in r else "— (tuned on train)"
        loss = r.get("last_loss") if r.get("last_loss") is not None else "—"
        metrics = (f"{r[k]:.2f}" for k in ("IoU", "nIoU", "Pd", "Fa", "F1"))
        rows.append([r["name"], its, loss, *metrics])
    return (
        f"Budget {report['minutes']} min of training each on {report['device']} "
        f"({report['threads']} threads), recipe {report['recipe']!r}, test "
        f"{', '.join(sorted({r['test'] for r in report['rows']}))}\n\n"
        + markdown_table(header, rows)
    )


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", action="append", default=[], help="repeatable")
    parser.add_argument("--minutes", type=float, default=15.0, help="training budget per config")
    parser.add_argument("--recipe", choices=["small", "none"], default="small")
    parser.add_argument("--eval-frames", type=int, default=0, help="first N test frames (0: all)")
    parser.add_argument("--datasets", default=None, help="folder of the datasets")
    parser.add_argument("--output", default="output/bench_learning")
    parser.add_argument(
        "--resume", action="store_true", help="keep rows already saved under the same conditions"
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE for every config")
    args = parser.parse_args(argv)
    use_datasets(args.datasets)
    setup_logger(name="ir_d2")
    setup_logger()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    configs = [(c, c) for c in args.config_file] or STUDY
    rows = []
    for name, config in configs:
        config_file = resolve_config_file(config)
        row = saved_row(config_file, args, device)
        if row is None:
            row = train_and_score(name, config_file, args, device)
            save_row(config_file, args, device, row)
        rows.append(row)
        print(
            markdown_table(
                ["method", "iterations", "IoU"],
                [[name, rows[-1]["iterations"], round(rows[-1]["IoU"], 2)]],
            )
        )
    tophat = []
    # an instance set's frames are its small-target set's ("<name>_instances")
    for train, test in sorted({(r["train"].replace("_instances", ""), r["test"]) for r in rows}):
        tophat.append({**tuned_tophat(train, test), "test": test})
    report = {
        "minutes": args.minutes,
        "device": device,
        "threads": torch.get_num_threads(),
        "recipe": args.recipe,
        "rows": rows,
        "tophat": tophat,
    }
    text = markdown(report)
    write_report(args.output, "bench_learning", TOOL, report, text)
    print(text)
    return report


if __name__ == "__main__":
    main()
