"""
A learning study that controls its variables (CPU-sized; not a test): every row is trained with
one recipe (the same widths, initialisation, augmentation, deep-supervision policy, optimizer,
batch and number of iterations), so that a row differs from its baseline only by the method's
own keys, each with several seeds, then scored on its test split at the frames' size by
IRSTDEvaluator (IoU, nIoU, Pd, Fa, F1; mean ± standard deviation over the seeds), beside a white
top-hat tuned for IoU on the training frames. The rows follow the papers' ablations: U-Net (=
SIRST-5K's "Plain") -> + AFF -> + N2N -> + Neg + L_Neg; U-Net -> SGEM U-Net; DNANet as a
reference.

    IR_D2_DATASETS=datasets python3 benchmarks/bench_learning.py --iterations 1000 --seeds 0 1 2
    # any configs (one row each, their own keys kept), the same recipe and budget
    python3 benchmarks/bench_learning.py --config-file IRSTD/irstd_unet_W32_1500e_sirst.yaml \
        --iterations 500 --seeds 0 MODEL.IRSTD.DEEP_SUPERVISION True

``--recipe controlled`` (the default): width 16 (``BASE_CHANNELS``; the nets' own block counts),
torch's initialisation with the output prior 0.01 (ours, the same for every row: without it the
Soft-IoU plateau outlasts a CPU budget), no deep supervision (one head: every net is scored by
the head it is evaluated with), 128x128 crops of the unscaled frames with a horizontal flip, no
blur, batch 8, Adam at lr 1e-3 (torch's eps: ``SOLVER.EPS`` 0) without decay. ``--recipe none``
trains each config as it is.
Trailing ``KEY VALUE`` options apply to every row after the recipe. The per-head losses of a net
with several heads are logged by the segmentor (``irstd/loss_*_head<k>``, ``*_final``); each row
reports the mean of the last 100 iterations of the total loss and of the final head's loss
(a deep-supervision total averages heads that the test does not score), each run also its
other heads'.

Writes ``<output>/bench_learning.{json,md,png}`` (the PNG: each row's IoU, a dot per seed) and
each run as it ends to ``<output>/<row>/seed<k>/run.json``; ``--resume`` keeps the runs already
there that were run under the same conditions (a study killed half-way loses no finished run);
``--saved-only`` trains nothing and reports the runs saved so far (each row with its seeds).
"""

import argparse
import statistics
import time

import torch
from _common import (
    first_frames,
    markdown_table,
    save_result,
    saved_result,
    train_and_watch,
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

TOOL = "benchmarks/bench_learning.py"
METRICS = ("IoU", "nIoU", "Pd", "Fa", "F1")
AFF = "IRSTD/irstd_aff_unet_W32_bs256-1500e_nudt_sirst.yaml"
#: SIRST-5K's synthesis keys, as its paper rows set them (the only difference of each row)
N2N = ["INPUT.SIRST5K.ENABLED", True, "INPUT.SIRST5K.N2N_PROB", 0.88, "INPUT.SIRST5K.ALPHA", 0.1]
NEG = ["INPUT.SIRST5K.NEGATIVE", True, "INPUT.SIRST5K.PATCH_SIZE", 3]
NEG += ["INPUT.SIRST5K.PER_TARGET", True, "INPUT.SIRST5K.MODE", "paper"]
NEG += ["MODEL.IRSTD.NEG_LOSS", "sum"]
#: the study: (row, config, the row's own keys)
STUDY = [
    ("U-Net (= Plain)", "IRSTD/irstd_unet_W32_1500e_nudt_sirst.yaml", []),
    ("SGEM U-Net", "IRSTD/irstd_sgem_unet_W40_1500e_nudt_sirst.yaml", []),
    ("+ AFF (AFF U-Net)", AFF, []),
    ("+ AFF + N2N", AFF, N2N),
    ("+ AFF + N2N + Neg + L_Neg", AFF, N2N + NEG),
    ("DNANet", "IRSTD/irstd_dnanet_W16_bs16-1500e_nudt_sirst.yaml", []),
]
CONTROLLED = [
    "MODEL.IRSTD.BASE_CHANNELS", 16, "MODEL.IRSTD.CHANNELS", [], "MODEL.IRSTD.INIT", "default",
    "MODEL.IRSTD.PRIOR_PROB", 0.01, "MODEL.IRSTD.DEEP_SUPERVISION", False,
    "INPUT.IR.CROP_SIZE", [128, 128], "INPUT.IR.SCALE", [1.0, 1.0], "INPUT.IR.FLIP", "horizontal",
    "INPUT.IR.BLUR_PROB", 0.0, "INPUT.IR.BRIGHTNESS", [1.0, 1.0], "INPUT.IR.CONTRAST", [1.0, 1.0],
    "SOLVER.IMS_PER_BATCH", 8, "SOLVER.OPTIMIZER", "Adam", "SOLVER.BASE_LR", 1e-3,
    "SOLVER.WEIGHT_DECAY", 0.0, "SOLVER.EPS", 0.0, "SOLVER.LR_SCHEDULER_NAME", "WarmupMultiStepLR",
    "SOLVER.STEPS", [], "SOLVER.WARMUP_ITERS", 0,
]  # fmt: skip
RUN = [
    "SOLVER.CHECKPOINT_PERIOD", 10**8, "TEST.EVAL_PERIOD", 0, "DATALOADER.NUM_WORKERS", 1,
    "MODEL.WEIGHTS", "",
]  # fmt: skip


def tuned_tophat(train_name, test_name):
    """The top-hat row: element and k tuned for IoU on ``train_name``, scored on ``test_name``
    (``bench_classical``'s tuning, each element's responses computed once per frame)."""
    cfg = setup_cfg("IRSTD/Base-IRSTD.yaml", ["MODEL.DEVICE", "cpu"])
    train, test = irstd_frames(cfg, train_name), irstd_frames(cfg, test_name)
    kernel, k = tune("TopHat", DETECTORS["TopHat"][1], train)
    return {
        "name": f"top-hat ({kernel}x{kernel} ellipse, k = {k})",
        **score(responses("TopHat", kernel, test), k),
    }


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_").lower()


def run_conditions(args, device, own) -> dict:
    """What a saved run must share with this one to be kept by ``--resume``."""
    return {
        "iterations": args.iterations,
        "recipe": args.recipe,
        "own": [str(o) for o in own],
        "opts": [str(o) for o in args.opts],
        "eval_frames": args.eval_frames,
        "device": device,
        "threads": torch.get_num_threads(),
    }


def train_and_score(name, config_file, own, seed, args, device) -> dict:
    """One run: ``config_file`` with the recipe and the row's own keys, trained for the budget
    with ``seed``, then scored by IRSTDEvaluator."""
    recipe = CONTROLLED if args.recipe == "controlled" else []
    out = f"{args.output}/{slug(name)}/seed{seed}"
    cfg = setup_cfg(
        config_file,
        ["MODEL.DEVICE", device, *recipe, *own, *RUN, "SOLVER.MAX_ITER", args.iterations]
        + ["SEED", seed, "OUTPUT_DIR", out, *args.opts],
    )
    torch.manual_seed(seed)
    trainer = IRTrainer(cfg)
    trainer.resume_or_load(resume=False)
    test = first_frames(cfg.DATASETS.TEST[0], args.eval_frames)
    timing = {}

    def evaluate(trainer):
        t0 = time.perf_counter()
        loader = IRTrainer.build_test_loader(cfg, test)
        metrics = inference_on_dataset(trainer.model, loader, build_irstd_evaluator(cfg, test))
        timing["eval_seconds"] = round(time.perf_counter() - t0, 1)
        return {k: metrics["irstd"][k] for k in METRICS}

    (point,) = train_and_watch(trainer, args.iterations, evaluate)
    return {
        "name": name,
        "config": config_file,
        "seed": seed,
        "train": cfg.DATASETS.TRAIN[0],
        "test": test,
        "iterations": point["iteration"],
        "batch": cfg.SOLVER.IMS_PER_BATCH,
        "train_minutes": round(point["train_seconds"] / 60, 2),
        **last_losses(trainer.storage),
        **timing,
        **{k: point[k] for k in METRICS},
    }


def last_losses(storage, n: int = 100) -> dict:
    """The mean of the last ``n`` values of the total loss (``last_loss``), of the final head's
    loss (``last_loss_final``) and of each other head's (``heads``: name -> mean), as the
    segmentor logs them (``irstd/loss_*_head<k>``, ``*_final``); a one-head net's final loss is
    its total loss."""

    def mean(name):
        values = [v for v, _ in storage.history(name).values()[-n:]]
        return round(sum(values) / len(values), 4)

    out = {"last_loss": mean("total_loss")}
    names = sorted(k for k in storage.histories() if k.startswith("irstd/"))
    final = [k for k in names if k.endswith("_final")]
    out["last_loss_final"] = mean(final[0]) if final else out["last_loss"]
    out["heads"] = {k.split("/")[-1]: mean(k) for k in names if not k.endswith("_final")}
    return out


def summarise(runs) -> dict:
    """A row: the mean and standard deviation over the seeds of each figure."""
    out = {k: runs[0][k] for k in ("name", "config", "train", "test", "iterations", "batch")}
    out["seeds"] = [r["seed"] for r in runs]
    for k in (*METRICS, "last_loss", "last_loss_final", "train_minutes"):
        values = [r.get(k, r["last_loss"]) for r in runs]
        out[k] = statistics.fmean(values)
        out[f"{k}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return out


def spread(row, key: str, digits: int = 2) -> str:
    """``mean ± std`` of ``key`` over the row's seeds; the value alone for one seed (no spread)."""
    mean = f"{row[key]:.{digits}f}"
    return mean if len(row["seeds"]) == 1 else f"{mean} ± {row[key + '_std']:.{digits}f}"


def markdown(report) -> str:
    header = ["method", "seeds", "iterations (batch)", "train min", "last loss: all heads"]
    header += ["final head", *METRICS[:3], "Fa (1e-6)", "F1"]
    rows = []
    for r in report["tophat"]:
        rows.append(
            [r["name"], "—", "— (tuned on train)", "—", "—", "—"] + [f"{r[k]:.2f}" for k in METRICS]
        )
    for r in report["rows"]:
        cells = [spread(r, k) for k in METRICS]
        rows.append(
            [
                r["name"],
                len(r["seeds"]),
                f"{r['iterations']} ({r['batch']})",
                f"{r['train_minutes']:.1f}",
                spread(r, "last_loss", 3),
                spread(r, "last_loss_final", 3),
                *cells,
            ]
        )
    seeds = sorted({s for r in report["rows"] for s in r["seeds"]})
    return (
        f"{report['iterations']} iterations each, seeds {seeds}, on {report['device']} "
        f"({report['threads']} threads), recipe {report['recipe']!r}, test "
        f"{', '.join(sorted({r['test'] for r in report['rows']}))}\n\n"
        + markdown_table(header, rows)
    )


def plot(report, path) -> None:
    """Each row's test IoU: a dot per seed, the mean as a bar with the standard deviation; each
    top-hat row as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(rows)), 4.5))
    for x, r in enumerate(rows):
        ious = [run["IoU"] for run in r["runs"]]
        ax.bar(x, r["IoU"], width=0.6, color=f"C{x}", alpha=0.35)
        ax.errorbar(x, r["IoU"], yerr=r["IoU_std"], color="k", capsize=4)
        ax.scatter([x] * len(ious), ious, color=f"C{x}", edgecolor="k", zorder=3, s=24)
    for r in report["tophat"]:
        ax.axhline(r["IoU"], color="gray", ls="--", label=r["name"])
    ax.set_xticks(range(len(rows)), [r["name"] for r in rows], rotation=20, ha="right")
    ax.set_ylabel("test IoU (%) by IRSTDEvaluator")
    seeds = sorted({s for r in rows for s in r["seeds"]})
    ax.set_title(
        f"{report['iterations']} iterations, recipe {report['recipe']!r}, seeds {seeds} "
        "(dots: seeds; bar: mean ± std)",
        fontsize=9,
    )
    ax.grid(axis="y", alpha=0.3)
    if report["tophat"]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", action="append", default=[], help="repeatable")
    parser.add_argument("--row", action="append", default=[], help="rows of the study to run")
    parser.add_argument("--iterations", type=int, default=1000, help="training budget per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--recipe", choices=["controlled", "none"], default="controlled")
    parser.add_argument("--eval-frames", type=int, default=0, help="first N test frames (0: all)")
    parser.add_argument("--no-tophat", action="store_true", help="leave the top-hat row out")
    parser.add_argument("--datasets", default=None, help="folder of the datasets")
    parser.add_argument("--output", default="output/bench_learning")
    parser.add_argument("--resume", action="store_true", help="keep runs already saved alike")
    parser.add_argument(
        "--saved-only",
        action="store_true",
        help="train nothing: the report of the runs saved alike so far (a study under way)",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE for every row")
    args = parser.parse_args(argv)
    use_datasets(args.datasets)
    setup_logger(name="ir_d2")
    setup_logger()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    study = [(c, c, []) for c in args.config_file] or [
        r for r in STUDY if not args.row or r[0] in args.row
    ]
    rows = []
    for name, config, own in study:
        config_file = resolve_config_file(config)
        runs = []
        for seed in args.seeds:
            path = f"{args.output}/{slug(name)}/seed{seed}/run.json"
            conditions = run_conditions(args, device, own)
            run = saved_result(path, conditions, args.resume or args.saved_only)
            if run is None and args.saved_only:
                continue
            if run is None:
                run = train_and_score(name, config_file, own, seed, args, device)
                save_result(path, TOOL, conditions, run)
            runs.append(run)
            print(markdown_table(["run", "seed", "IoU"], [[name, seed, round(run["IoU"], 2)]]))
        if runs:
            rows.append({**summarise(runs), "runs": runs})
    if not rows:
        parser.error(f"--saved-only: no run in {args.output} saved under these conditions")
    tophat = []
    if not args.no_tophat:
        for train, test in sorted({(r["train"], r["test"]) for r in rows}):
            tophat.append({**tuned_tophat(train, test), "test": test})
    report = {
        "iterations": args.iterations,
        "device": device,
        "threads": torch.get_num_threads(),
        "recipe": args.recipe,
        "rows": rows,
        "tophat": tophat,
    }
    text = markdown(report)
    write_report(args.output, "bench_learning", TOOL, report, text, lambda p: plot(report, p))
    print(text)
    return report


if __name__ == "__main__":
    main()
