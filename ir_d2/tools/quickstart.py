"""
The main job (``./setup.sh main``): train the SGEM U-Net (Deng & Yang 2025, narrowed to run on a
CPU in minutes) on the built-in synthetic IR set, or on SIRST when it is present under
``IR_D2_DATASETS``, evaluate it (IoU, nIoU, Pd, Fa, F1), and write what a newcomer wants to look at.

    python -m ir_d2.tools.quickstart [--output output/quickstart] [--data auto|synthetic|sirst]
        [--config-file CFG] [--overlays 8] [KEY VALUE ...]

Into the output folder (detectron2's OUTPUT_DIR, so the checkpoints, ``log.txt`` and
``metrics.json`` are there too):

    results.md / results.json   the metrics table (and the Pd-Fa points)
    roc.png                     the Pd-Fa curve over TEST.IRSTD.ROC_THRESHOLDS, the operating
                                point TEST.IRSTD.THRESHOLD marked
    overlays/<frame>.png        test frames: the net's probability heat-map, its targets (green
                                circles) and the ground-truth outlines (magenta)
    overlays.png                the overlays side by side

It runs on a GPU when there is one (``MODEL.DEVICE`` falls back to the CPU otherwise). Run again,
it resumes: a finished training is not repeated, the evaluation and pictures are redone. It writes
only into a new or empty folder, or one it wrote before (``quickstart.json`` marks it and lists
the files above; :class:`ir_d2.utils.fileio.OutputFolder`), each file atomically.
"""

import json
import logging
import os
import time
from pathlib import Path

import cv2
import numpy as np
from detectron2.data import DatasetCatalog
from detectron2.utils.logger import setup_logger
from tabulate import tabulate

import ir_d2  # noqa: F401  (registration)
from ir_d2.data.io import read_ir_image, read_ir_mask
from ir_d2.data.ir_datasets.builtin import datasets_root
from ir_d2.engine import IRPredictor
from ir_d2.engine.defaults import setup_cfg
from ir_d2.tools import train_net
from ir_d2.utils.cli import add_opts_arguments, collect_opts, one_line_errors, positive, tool_parser
from ir_d2.utils.fileio import OutputFolder
from ir_d2.utils.visualizer import contact_sheet, draw_ground_truth, draw_small_targets

__all__ = ["main", "choose_data", "plot_roc", "MARKER"]

logger = logging.getLogger("ir_d2.quickstart")

DEFAULT_CONFIG = "ir_d2://quick_schedules/irstd_sgem_unet_W8_quickstart.yaml"
TOOL = "ir_d2.tools.quickstart"
#: The file that marks a folder as this tool's output (its manifest).
MARKER = "quickstart.json"
#: what the quickstart writes itself (detectron2's trainer writes the checkpoints and logs)
_OUTPUTS = ("results.json", "results.md", "roc.png", "overlays.png")
DATA = {
    "synthetic": ("ir_synthetic_train", "ir_synthetic_test"),
    "sirst": ("sirst_train", "sirst_test"),
}
METRICS = ("IoU", "nIoU", "Pd", "Fa", "F1")


def choose_data(choice: str = "auto"):
    """``(name, train set, test set)``: SIRST when ``choice`` is "sirst", or "auto" and SIRST is
    under the datasets root (env ``IR_D2_DATASETS``); else the built-in synthetic set."""
    sirst_here = os.path.isfile(os.path.join(datasets_root(), "sirst", "50_50", "train.txt"))
    if choice == "sirst" and not sirst_here:
        raise FileNotFoundError(
            f"--data sirst: no SIRST under {datasets_root()} (set IR_D2_DATASETS to the folder "
            "holding sirst/)"
        )
    name = "sirst" if choice == "sirst" or (choice == "auto" and sirst_here) else "synthetic"
    return (name, *DATA[name])


def _older_run(out: Path):
    """The files of an older version's run in ``out`` (its ``quickstart.json`` names this tool
    but lists no files): the marker, the results, ``roc.png`` and the overlays."""
    try:
        ours = json.loads((out / MARKER).read_text()).get("tool") == TOOL
    except (OSError, ValueError, AttributeError):
        return None
    if not ours:
        return None
    overlays = [f"overlays/{p.name}" for p in (out / "overlays").glob("*.png")]
    return [MARKER, *_OUTPUTS, *overlays]


def output_folder(out) -> OutputFolder:
    """``out`` as the quickstart's :class:`OutputFolder`: new, empty, or one it wrote (whose own
    files it replaces: a run resumes); anything else, and a file of its own that was changed
    since, is refused (``OutputRefusedError``) before the training, not after it."""
    folder = OutputFolder(
        out,
        TOOL,
        manifest=MARKER,
        recognise=_older_run,
        exclusive=True,
        overwrite=True,
        who="the quickstart",
    )
    folder.check([*_OUTPUTS, *folder.changed])
    return folder


def plot_roc(results: dict, thresholds, operating: float, path: Path, title: str) -> None:
    """The Pd-Fa curve of ``results`` (``"Pd@t"`` / ``"Fa@t"`` for each threshold) as a PNG
    at ``path`` (the caller makes it atomic: ``with folder.write("roc.png", mode=None)``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = sorted(thresholds)
    fa = np.array([results[f"Fa@{t:g}"] for t in ts])
    pd = np.array([results[f"Pd@{t:g}"] for t in ts])
    fig, ax = plt.subplots(figsize=(5.5, 4.2), dpi=120)
    ax.plot(np.maximum(fa, 1e-3), pd, "o-", color="tab:blue", label="SGEM U-Net")
    for t, x, y in zip(ts, fa, pd):
        ax.annotate(f"{t:g}", (max(x, 1e-3), y), textcoords="offset points", xytext=(4, -10),
                    fontsize=7)  # fmt: skip
    ax.plot(
        [max(results["Fa"], 1e-3)], [results["Pd"]], "s", color="tab:red",
        label=f"operating point (threshold {operating:g})",
    )  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("Fa (false-alarm pixels, x 1e-6; 0 drawn at 1e-3)")
    ax.set_ylabel("Pd (%)")
    ax.set_ylim(min(80.0, float(np.nanmin(pd)) - 5), 100.5)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_overlays(cfg, dataset: str, folder: OutputFolder, count: int):
    """Overlays of the first ``count`` test frames that have targets (then any), and the sheet."""
    predictor = IRPredictor(cfg)
    records = DatasetCatalog.get(dataset)
    records = sorted(records, key=lambda r: 0 if _has_target(r, cfg) else 1)[:count]
    pictures = []
    for r in records:
        frame = read_ir_image(r["file_name"], normalize=cfg.INPUT.IR.NORMALIZE)
        shown, invalid = predictor.prepare(frame)
        pred = predictor.predict(shown, invalid)
        gt = read_ir_mask(r["sem_seg_file_name"], threshold=cfg.INPUT.IR.MASK_THRESHOLD)
        if gt.shape != shown.shape[:2]:
            gt = cv2.resize(gt, shown.shape[1::-1], interpolation=cv2.INTER_NEAREST)
        picture = draw_small_targets(
            draw_ground_truth(shown, gt), pred["sem_seg"][0].cpu().numpy(), pred["targets"]
        )
        with folder.write(f"overlays/{Path(r['file_name']).stem}.png", mode=None) as t:
            cv2.imwrite(str(t), picture)
        pictures.append(picture)
    with folder.write("overlays.png", mode=None) as t:
        cv2.imwrite(str(t), contact_sheet(pictures))
    return len(pictures)


def _has_target(record, cfg) -> bool:
    return bool(
        read_ir_mask(record["sem_seg_file_name"], threshold=cfg.INPUT.IR.MASK_THRESHOLD).any()
    )


def get_parser():
    p = tool_parser("ir_d2.tools.quickstart", __doc__)
    p.add_argument("--output", default="output/quickstart", help="output folder")
    p.add_argument("--data", choices=["auto", "synthetic", "sirst"], default="auto")
    p.add_argument("--config-file", default=DEFAULT_CONFIG, help="a small-target config")
    p.add_argument("--overlays", type=positive(int, "--overlays"), default=8, help="frames drawn")
    add_opts_arguments(p)
    return p


def main(argv=None) -> dict:
    args = get_parser().parse_args(argv)
    start = time.perf_counter()
    out = Path(args.output)
    setup_logger(name="ir_d2")
    with one_line_errors("quickstart"):
        folder = output_folder(out)
        data, train_set, test_set = choose_data(args.data)
        opts = ["OUTPUT_DIR", str(out), "DATASETS.TRAIN", f"('{train_set}',)"]
        opts += ["DATASETS.TEST", f"('{test_set}',)", *collect_opts(args)]
        cfg = setup_cfg(args.config_file, opts)
        folder.claim(config=args.config_file, data=data)  # before the trainer writes into it
    logger.info(
        f"main job: {cfg.MODEL.IRSTD.NET} on {train_set} -> {test_set} ({data}), "
        f"{cfg.SOLVER.MAX_ITER} iterations on {cfg.MODEL.DEVICE}, output {out}"
    )
    base = ["--config-file", args.config_file, *(f"{o}" for o in opts)]
    # detectron2's end-of-training evaluation (a resumed, finished run included) scores the
    # test set once; --eval-only only where training returned no results
    evaluation = train_net.main(train_net.get_parser().parse_args(["--resume", *base]))
    trained = time.perf_counter() - start
    weights = str(out / "model_final.pth")
    if not (isinstance(evaluation, dict) and "irstd" in evaluation):
        evaluation = train_net.main(
            train_net.get_parser().parse_args(["--eval-only", *base, "MODEL.WEIGHTS", weights])
        )
    results = evaluation["irstd"]
    cfg = setup_cfg(args.config_file, [*opts, "MODEL.WEIGHTS", weights])

    title = f"{cfg.MODEL.IRSTD.NET} on {test_set}, {cfg.SOLVER.MAX_ITER} iterations"
    with folder.write("roc.png", mode=None) as tmp:
        plot_roc(results, cfg.TEST.IRSTD.ROC_THRESHOLDS, cfg.TEST.IRSTD.THRESHOLD, tmp, title)
    n = write_overlays(cfg, test_set, folder, args.overlays)
    row = [f"{cfg.MODEL.IRSTD.NET} ({test_set})", *(round(results[k], 2) for k in METRICS)]
    table = tabulate(
        [row], headers=["model", "IoU", "nIoU", "Pd", "Fa (1e-6)", "F1"], tablefmt="github"
    )
    summary = {
        "data": data,
        "train": train_set,
        "test": test_set,
        "iterations": cfg.SOLVER.MAX_ITER,
        "device": cfg.MODEL.DEVICE,
        "train_seconds": round(trained, 1),
        "total_seconds": round(time.perf_counter() - start, 1),
        "metrics": {k: results[k] for k in METRICS},
        "roc": {
            "thresholds": list(cfg.TEST.IRSTD.ROC_THRESHOLDS),
            "Pd": [results[f"Pd@{t:g}"] for t in cfg.TEST.IRSTD.ROC_THRESHOLDS],
            "Fa": [results[f"Fa@{t:g}"] for t in cfg.TEST.IRSTD.ROC_THRESHOLDS],
        },
    }
    with folder.write("results.json") as f:
        json.dump(summary, f, indent=2)
    with folder.write("results.md") as f:
        f.write(table + "\n")
    folder.finish()
    print(f"\n{table}\n")
    print(
        f"main job done in {summary['total_seconds']:.0f} s ({data} data, {cfg.MODEL.DEVICE}): "
        f"{out / 'results.md'}, {out / 'roc.png'}, {n} overlays in {out / 'overlays'} "
        f"(all side by side: {out / 'overlays.png'})"
    )
    return summary


if __name__ == "__main__":
    main()
