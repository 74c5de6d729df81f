"""
Parity with the authors' training: the official DNANet code (github.com/YeRen123455/
Infrared-Small-Target-Detection, whose ``train.py`` both small-target papers inherit) against
ir_d2's DNANet, trained with one recipe, seed and number of iterations on NUDT-SIRST, both scored
by ir_d2's ``IRSTDEvaluator`` on the official test split (the official model's predictions are
saved and scored the same way; the official code's own mIoU is printed beside them).

    IR_D2_DATASETS=datasets python3 benchmarks/bench_parity.py --official PATH/TO/CLONE \\
        [--epochs 4] [--batch 4] [--crop 128] [--seed 0] [--output output/bench_parity] [--resume]

``--official`` is a user's clone of the authors' repository; it is never written to nor copied
into ir_d2. The script copies its ``train.py`` and ``model/`` into ``<output>/official_src``,
changes only what is needed to run there on the CPU, to seed it, to stop after ``--epochs``
epochs (the lr schedule keeps its 1500-epoch ``T_max``, as the official command has it) and to
save each evaluation's probabilities and timings, prints that diff and saves it as
``official.diff``, then runs it with this interpreter (which needs the official code's imports:
scikit-image, tqdm). The reduced recipe is set through the official script's own arguments on
both sides (``--crop_size``, ``--train_batch_size``; base size 256, Adagrad lr 0.05, deep
supervision, 1500-epoch schedule as the official command): the official recipe at batch 16 and
256x256 costs 20-40 s per iteration on a 2-core CPU.

The authors' code evaluates once per epoch (663 // batch iterations), so the learning curves
have one point per epoch on both sides. With ``--sirst5k`` the same harness runs the SIRST-5K
authors' code (a checkout of github.com/luy0222/SIRST-5K at a commit that still has ``train.py``
and ``model/``: the repository's current head deleted both) against ir_d2's SIRST-5K net.
"""

import argparse
import difflib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import markdown_table, train_and_watch, use_datasets, write_report
from detectron2.data import DatasetCatalog
from detectron2.evaluation import inference_on_dataset
from detectron2.utils.logger import setup_logger

import ir_d2  # noqa: F401
from ir_d2.engine.defaults import setup_cfg
from ir_d2.engine.trainer import IRTrainer
from ir_d2.evaluation import build_irstd_evaluator
from ir_d2.utils.cli import CommandLineError

TOOL = "benchmarks/bench_parity.py"
TRAIN, TEST = "nudt_sirst_train", "nudt_sirst_test"
METRICS = ("IoU", "nIoU", "Pd", "Fa", "F1")
FLAVOURS = {
    # flavour: (the model file that identifies it, ir_d2's config, the official --model, backbone)
    "dnanet": (
        "model/model_DNANet.py",
        "IRSTD/irstd_dnanet_W16_bs16-1500e_nudt_sirst.yaml",
        "DNANet",
        "resnet_18",
    ),
    "sirst5k": (
        "model/model.py",
        "IRSTD/irstd_sirst5k_net_W16_bs256-1500e_nudt_sirst.yaml",
        "Net",
        "resnet_34",
    ),
}

#: the official script's --channel_size and --backbone, as ir_d2's widths and block counts
CHANNEL_SIZES = {
    "one": [4, 8, 16, 32, 64],
    "two": [8, 16, 32, 64, 128],
    "three": [16, 32, 64, 128, 256],
    "four": [32, 64, 128, 256, 512],
}
BACKBONES = {"resnet_10": [1, 1, 1, 1], "resnet_18": [2, 2, 2, 2], "resnet_34": [3, 4, 6, 3]}

# ------------------------------------------------------------------------ the official code
#: The changes made to the copy of the official train.py, each (what it replaces, with what):
#: the CPU instead of ``.cuda()``, a seed, a stop after PARITY_EPOCHS epochs, and a record of
#: each evaluation (probabilities, the official mIoU, training seconds). Every old text must
#: occur in the file, else the official code has changed and the harness says so.
PATCHES = [
    (
        "from tqdm             import tqdm\n",
        "from tqdm             import tqdm\nimport json, os, time, random, numpy\n"
        "PARITY = json.loads(os.environ['PARITY'])  # bench_parity.py: device, seed, epochs, out\n",
    ),
    (
        "model           = model.cuda(device=None)\n",
        "model           = model.to(PARITY['device'])\n",
    ),
    ("model           = model.cuda()\n", "model           = model.to(PARITY['device'])\n"),
    ("            data   = data.cuda()\n", "            data   = data.to(PARITY['device'])\n"),
    ("            labels = labels.cuda()\n", "            labels = labels.to(PARITY['device'])\n"),
    ("                data = data.cuda()\n", "                data = data.to(PARITY['device'])\n"),
    (
        "                labels = labels.cuda()\n",
        "                labels = labels.to(PARITY['device'])\n",
    ),
    (
        "        tbar = tqdm(self.train_data)\n        self.model.train()\n",
        "        tbar = tqdm(self.train_data)\n        self.model.train()\n"
        "        parity_t0 = time.perf_counter()\n",
    ),
    (
        "        self.train_loss = losses.avg\n",
        "        self.train_loss = losses.avg\n"
        "        self.parity_seconds = getattr(self, 'parity_seconds', 0.0)"
        " + time.perf_counter() - parity_t0\n"
        "        self.parity_iterations = getattr(self, 'parity_iterations', 0) + i + 1\n",
    ),
    (
        "        self.mIoU.reset()\n",
        "        self.mIoU.reset()\n        parity_probs = []\n",
    ),
    (
        "                losses.update(loss.item(), pred.size(0))\n"
        "                self.ROC .update",
        "                losses.update(loss.item(), pred.size(0))\n"
        "                parity_probs.append(torch.sigmoid(pred).cpu().numpy()[:, 0])\n"
        "                self.ROC .update",
    ),
    (
        "            test_loss=losses.avg\n",
        "            test_loss=losses.avg\n"
        "        numpy.save(os.path.join(PARITY['out'], 'probs_epoch%d.npy' % epoch),\n"
        "                   numpy.concatenate(parity_probs).astype(numpy.float16))\n"
        "        with open(os.path.join(PARITY['out'], 'log.jsonl'), 'a') as parity_f:\n"
        "            parity_f.write(json.dumps({'epoch': epoch, 'mIoU': float(mean_IOU),\n"
        "                'train_loss': float(self.train_loss), 'seconds': self.parity_seconds,\n"
        "                'iterations': self.parity_iterations}) + '\\n')\n",
    ),
    (
        "    for epoch in range(args.start_epoch, args.epochs):\n"
        "        trainer.training(epoch)\n        trainer.testing(epoch)\n",
        "    for epoch in range(args.start_epoch, PARITY['epochs']):\n"
        "        trainer.training(epoch)\n"
        "        if (epoch + 1) % PARITY['eval_every'] == 0 or epoch + 1 == PARITY['epochs']:\n"
        "            trainer.testing(epoch)\n",
    ),
    (
        "    args = parse_args()\n    main(args)\n",
        "    args = parse_args()\n    random.seed(PARITY['seed'])\n"
        "    numpy.random.seed(PARITY['seed'])\n    torch.manual_seed(PARITY['seed'])\n"
        "    main(args)\n",
    ),
]
#: SIRST-5K's train.py pins a GPU and logs to TensorBoard; on the CPU neither is needed
SIRST5K_PATCHES = [
    ('os.environ["CUDA_VISIBLE_DEVICES"] = "1"\n', "# (CUDA_VISIBLE_DEVICES left as it is)\n"),
]


def patched_train_py(source: str, flavour: str):
    """The official ``train.py`` text with :data:`PATCHES` applied (each old text that occurs,
    the ``.cuda()`` variants of the two repositories being alternatives), and the diff."""
    text = source
    cuda_model = ("model           = model.cuda(device=None)\n", "model           = model.cuda()\n")
    patches = PATCHES + (SIRST5K_PATCHES if flavour == "sirst5k" else [])
    for old, new in patches:
        if old not in text:
            if old in cuda_model:
                continue  # the other repository's spelling
            raise CommandLineError(
                f"--official: train.py no longer contains {old.strip()!r}; the official code has "
                "changed since this harness was written (see PATCHES in benchmarks/bench_parity.py)"
            )
        text = text.replace(old, new, 1)
    if "model.to(PARITY['device'])" not in text:
        raise CommandLineError("--official: train.py builds its model without .cuda()")
    diff = "".join(
        difflib.unified_diff(
            source.splitlines(True), text.splitlines(True), "train.py", "train.py (bench_parity)"
        )
    )
    return text, diff


def backbone(args, flavour: str) -> str:
    """The official --backbone: ``--backbone`` or the flavour's (DNANet: resnet_18, SIRST-5K:
    resnet_34)."""
    return args.backbone or FLAVOURS[flavour][3]


def official_flavour(clone: Path) -> str:
    for flavour, (marker, _, _, _) in FLAVOURS.items():
        if (clone / marker).is_file() and (clone / "train.py").is_file():
            return flavour
    raise CommandLineError(
        f"--official {clone}: no train.py with model/model_DNANet.py (DNANet) or model/model.py "
        "(SIRST-5K) there; SIRST-5K's current head deleted both: check out the commit before "
        "'Delete model directory'"
    )


def run_official(args, out: Path, nudt: Path) -> dict:
    clone = Path(args.official).expanduser().resolve()
    flavour = official_flavour(clone)
    src = out / "official_src"
    if src.exists():
        shutil.rmtree(src)  # a copy this harness made (under its own output folder)
    (src / "dataset").mkdir(parents=True)
    shutil.copytree(clone / "model", src / "model")
    text, diff = patched_train_py((clone / "train.py").read_text(), flavour)
    (src / "train.py").write_text(text)
    (out / "official.diff").write_text(diff)
    print(f"The changes made to the copy of the official train.py:\n{diff}")
    os.symlink(nudt, src / "dataset" / "NUDT-SIRST")
    record = out / "official"
    if record.exists():
        shutil.rmtree(record)
    record.mkdir()
    cmd = [sys.executable, "train.py", "--model", FLAVOURS[flavour][2]]
    cmd += ["--backbone", backbone(args, flavour), "--channel_size", args.channel_size]
    cmd += ["--dataset", "NUDT-SIRST", "--root", "dataset", "--split_method", "50_50"]
    cmd += ["--base_size", str(args.base), "--crop_size", str(args.crop), "--epochs", "1500"]
    cmd += ["--train_batch_size", str(args.batch), "--test_batch_size", str(args.batch)]
    cmd += ["--deep_supervision", "True", "--mode", "TXT"]
    cmd += ["--optimizer", "Adagrad", "--lr", "0.05", "--workers", str(args.workers)]
    env = dict(os.environ)
    env["PARITY"] = json.dumps(
        {
            "device": "cpu",
            "seed": args.seed,
            "epochs": args.epochs,
            "eval_every": args.eval_every,
            "out": str(record),
        }
    )
    print("official:", " ".join(cmd))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=src, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CommandLineError(
            f"the official code failed ({proc.returncode}); the end of its output:\n"
            + proc.stderr[-3000:]
        )
    wall = time.perf_counter() - t0
    log = [json.loads(line) for line in (record / "log.jsonl").read_text().splitlines()]
    points = []
    for entry in log:  # seconds and iterations are running totals
        iterations, seconds = entry["iterations"], entry["seconds"]
        probs = np.load(record / f"probs_epoch{entry['epoch']}.npy").astype(np.float32)
        points.append(
            {
                "iteration": iterations,
                "train_loss": round(entry["train_loss"], 4),
                "official_mIoU": round(100 * entry["mIoU"], 2),
                **score_probs(probs),
            }
        )
    return {
        "flavour": flavour,
        "command": " ".join(cmd),
        "iterations": iterations,
        "train_seconds": round(seconds, 1),
        "s_per_iter": round(seconds / iterations, 3),
        "wall_seconds": round(wall, 1),
        "curve": points,
    }


def score_probs(probs, dataset: str = TEST) -> dict:
    """IoU, nIoU, Pd, Fa, F1 of per-frame probability maps (in ``dataset``'s order) through
    ``IRSTDEvaluator``, as ``train_net --eval-only`` scores a model."""
    cfg = setup_cfg("IRSTD/Base-IRSTD.yaml", ["MODEL.DEVICE", "cpu"])
    records = DatasetCatalog.get(dataset)
    if len(records) != len(probs):
        raise ValueError(f"{len(probs)} official predictions for {len(records)} test frames")
    evaluator = build_irstd_evaluator(cfg, dataset)
    evaluator.reset()
    for record, prob in zip(records, probs):
        if prob.shape != (record["height"], record["width"]):
            raise ValueError(f"{record['file_name']}: prediction {prob.shape} is not the frame's")
        evaluator.process([record], [{"sem_seg": torch.from_numpy(prob)[None]}])
    metrics = evaluator.evaluate()["irstd"]
    return {k: round(metrics[k], 2) for k in METRICS}


# ------------------------------------------------------------------------------- ir_d2's side
def run_ir_d2(args, flavour: str) -> dict:
    """ir_d2's net of ``flavour`` trained with the same reduced recipe, scored at the same
    iterations (one epoch of the official loader: 663 // batch) by IRSTDEvaluator."""
    per_epoch = len(DatasetCatalog.get(TRAIN)) // args.batch  # the official drop_last loader
    total = per_epoch * args.epochs
    opts = ["MODEL.DEVICE", "cpu", "SOLVER.IMS_PER_BATCH", args.batch, "SEED", args.seed]
    opts += ["INPUT.IR.CROP_SIZE", [args.crop, args.crop], "SOLVER.MAX_ITER", total]
    opts += ["SOLVER.CHECKPOINT_PERIOD", 10**8, "TEST.EVAL_PERIOD", 0]
    opts += ["DATALOADER.NUM_WORKERS", args.workers, "OUTPUT_DIR", str(Path(args.output) / "ir_d2")]
    opts += ["MODEL.IRSTD.CHANNELS", CHANNEL_SIZES[args.channel_size]]
    opts += ["MODEL.IRSTD.BLOCKS", BACKBONES[backbone(args, flavour)]]
    cfg = setup_cfg(FLAVOURS[flavour][1], opts)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    trainer = IRTrainer(cfg)
    trainer.resume_or_load(resume=False)

    def evaluate(trainer):
        loader = IRTrainer.build_test_loader(cfg, TEST)
        metrics = inference_on_dataset(trainer.model, loader, build_irstd_evaluator(cfg, TEST))
        print(f"ir_d2: iteration {trainer.iter}, IoU {metrics['irstd']['IoU']:.2f}", flush=True)
        return {k: round(metrics["irstd"][k], 2) for k in METRICS}

    points = train_and_watch(trainer, per_epoch * args.eval_every, evaluate)
    seconds = points[-1]["train_seconds"]
    return {
        "config": FLAVOURS[flavour][1],
        "iterations": total,
        "train_seconds": round(seconds, 1),
        "s_per_iter": round(seconds / total, 3),
        "curve": points,
    }


# ------------------------------------------------------------------------------------ report
def conditions(args) -> dict:
    keys = ("epochs", "eval_every", "batch", "crop", "base", "seed", "workers", "channel_size")
    keys += ("backbone",)
    return {k: getattr(args, k) for k in keys} | {"threads": torch.get_num_threads()}


def cached(path: Path, args):
    if args.resume and path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("conditions") == conditions(args):
            return saved["result"]
    return None


def plot(report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for side, label in (("official", "official code"), ("ir_d2", "ir_d2")):
        curve = report[side]["curve"]
        ax.plot([p["iteration"] for p in curve], [p["IoU"] for p in curve], "o-", label=label)
    ax.set_xlabel("iteration")
    ax.set_ylabel("test IoU (%) by IRSTDEvaluator")
    ax.set_title(f"{report['official']['flavour']}: {TEST}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def markdown(report) -> str:
    off, ours = report["official"], report["ir_d2"]
    rows = []
    for a, b in zip(off["curve"], ours["curve"]):
        delta = round(b["IoU"] - a["IoU"], 2)
        rows.append(
            [a["iteration"], a["train_loss"], b["train_loss"], a["official_mIoU"], a["IoU"]]
            + [b["IoU"], delta]
        )
    header = ["iteration", "train loss: official", "ir_d2", "IoU: official (own mIoU)"]
    header += ["official (IRSTDEvaluator)", "ir_d2", "ir_d2 - official"]
    curve = markdown_table(header, rows)
    final = markdown_table(
        ["side", *METRICS, "s / iteration"],
        [
            ["official code", *(off["curve"][-1][k] for k in METRICS), off["s_per_iter"]],
            ["ir_d2", *(ours["curve"][-1][k] for k in METRICS), ours["s_per_iter"]],
        ],
    )
    c = report["conditions"]
    return (
        f"{off['flavour']} on {TEST}: {c['epochs']} epochs at batch {c['batch']}, "
        f"crop {c['crop']}, "
        f"seed {c['seed']}, {c['threads']} threads, {c['workers']} loader worker(s)\n\n"
        f"{curve}\n\nAt the last iteration:\n\n{final}\n"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--official", required=True, help="a clone of the authors' repository")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of 663 // batch iterations")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--channel-size", choices=sorted(CHANNEL_SIZES), default="three")
    parser.add_argument("--backbone", choices=sorted(BACKBONES), default=None)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--base", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=1, help="evaluate every N epochs")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--datasets", default=None, help="folder holding nudt-sirst/")
    parser.add_argument("--output", default="output/bench_parity")
    parser.add_argument("--resume", action="store_true", help="keep a side already run alike")
    args = parser.parse_args(argv)
    use_datasets(args.datasets)
    setup_logger(name="ir_d2")
    nudt = Path(os.environ.get("IR_D2_DATASETS", "datasets")).resolve() / "nudt-sirst"
    if not (nudt / "50_50" / "test.txt").is_file():
        raise CommandLineError(f"NUDT-SIRST not found at {nudt} (set --datasets or IR_D2_DATASETS)")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    flavour = official_flavour(Path(args.official).expanduser().resolve())
    report = {"conditions": conditions(args)}
    for side in ("official", "ir_d2"):
        path = out / f"{side}.json"
        result = cached(path, args)
        if result is None:
            result = (
                run_official(args, out, nudt) if side == "official" else run_ir_d2(args, flavour)
            )
            path.write_text(json.dumps({"conditions": conditions(args), "result": result}))
        report[side] = result
    plot(report, out / "bench_parity.png")
    text = markdown(report)
    write_report(out, "bench_parity", TOOL, report, text)
    print(text)
    return report


if __name__ == "__main__":
    main()
