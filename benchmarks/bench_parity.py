"""
Parity with the authors' training: the official DNANet code (github.com/YeRen123455/
Infrared-Small-Target-Detection, whose ``train.py`` both small-target papers inherit) against
ir_d2's DNANet, trained with one recipe, seed and number of iterations on NUDT-SIRST, both scored
by ir_d2's ``IRSTDEvaluator`` on the official test split (the official model's predictions are
saved and scored the same way; the official code's own mIoU is printed beside them), with both
learning curves (test IoU and mean training loss) in one table and one PNG.

    IR_D2_DATASETS=datasets python3 benchmarks/bench_parity.py --official PATH/TO/CLONE \
        [--backbone resnet_10] [--epochs 12] [--eval-every 3] [--batch 4] [--crop 128] \
        [--seed 0] [--output output/bench_parity] [--resume]
    # parity as distributions: several seeds, then their test IoU side by side
    ... --seeds 0 1 2 --resume        # or, over reports run before: --summarise DIR DIR ...
    # the official recipe itself (batch 16, 256x256 crops, Adagrad lr 0.05) on a GPU
    ... --device cuda --batch 16 --crop 256 --epochs 40 --eval-every 10 --seeds 0 1 2

``--official`` is a user's clone of the authors' repository; it is never written to nor copied
into ir_d2. The script copies its ``train.py`` and ``model/`` into ``<output>/official_src`` and
changes only what is needed to run there on the CPU (or ``--device``), to seed it, to stop after
``--epochs`` epochs (the lr schedule keeps its 1500-epoch ``T_max``, as the official command has
it), to test every ``--eval-every`` epochs and to save each test's probabilities, timings and the
final output's own training loss (the scored output; the mean over the outputs can fall while it
stays stuck, and ir_d2 logs it as ``irstd/loss_<name>_final``); it prints that diff, saves it
as ``official.diff``, and runs the copy with this interpreter (which needs the official code's
imports: scikit-image, tqdm). The reduced recipe is set on both sides through the
official script's own arguments (``--crop_size``, ``--train_batch_size``, ``--backbone``,
``--channel_size``; base size 256, Adagrad lr 0.05, deep supervision and the 1500-epoch schedule
as the official command): the official recipe at batch 16 and 256x256 costs 20-40 s per
iteration on a 2-core CPU. (The official code cannot build ``--channel_size one`` or ``two``: its
channel attention would have 0 hidden channels below 16.)

The authors' code tests once per epoch (663 // batch iterations), so the curves have a point every
``--eval-every`` epochs on both sides. One seed's curve is noisy early on (the Soft-IoU plateau
ends at a different iteration for each seed), so two cheaper checks come first and separate the
model from the data: the lockstep (``--lockstep N``: the official net, Xavier-initialised by the
official code, its weights copied into ir_d2's DNANet, then N steps on the same batches with the
official loss and optimizer on one side and ir_d2's segmentor and optimizer on the other, beside
the official code against itself with its weights rounded differently: ir_d2 must stay as close
to the official code as that control; each side's step is timed there too, in turn on the same
batches) and the augmentation statistics (``--augmentation-samples N``: the official
TrainSetLoader's crops against ir_d2's mapper's, as shares of empty crops, target pixels,
intensity and padding). ``--checks-only`` runs just these. With a clone of the
SIRST-5K authors' code (github.com/luy0222/SIRST-5K at a commit that still has ``train.py`` and
``model/``: the repository's current head deleted both) the same harness runs its training
against ir_d2's SIRST-5K net (the lockstep maps DNANet's layer names only).

Under the reduced recipe an empty prediction is a minimum of the batch Soft-IoU that both codes
enter and leave at random iterations, so one seed per side cannot show parity (one code against
itself differs by 27 points). ``--seeds`` runs several seeds (each in ``<output>/seed<N>``, kept
with ``--resume``) and sets them side by side in ``bench_parity_seeds.{json,md,png}``: each
side's test IoU over the seeds, ir_d2's mean minus the official code's with a 95% Welch t
interval and an exact permutation p-value, and a verdict against the 2-point goal.
``--summarise`` does the same over reports already written (seeds run with different
``--epochs`` or ``--eval-every`` meet at the iterations they all scored).

``--coupled`` takes the seeds' spread out of the comparison: instead of two independent
trainings, one run in which ir_d2's own trainer (config, loader, optimizer, schedule, hooks)
starts from the official initial weights and, after each of its steps, the official net, loss
and optimizer and the lockstep's control (the official code with its weights rounded) step on
the same batch; all three are scored by IRSTDEvaluator every ``--eval-every`` epochs
(``bench_parity_coupled.{json,md,png}``, rewritten after each test, ``"finished"`` at the end).
With the initial draw and every batch shared, only the arithmetic differs, and the control
shows how far the official code drifts from itself by rounding alone. ``--summarise`` over
several seeds' coupled folders sets each seed's ir_d2 minus official beside its control minus
official, as means over the seeds with Student t intervals, and how much further ir_d2 lies
from the official code than the control does (``bench_parity_coupled_seeds``), at the
iterations all the seeds scored and pooled at each seed's last test, whatever its length.

    ... --crop 256 --epochs 3 --eval-every 3 --lockstep 0 --augmentation-samples 0 --coupled
"""

import argparse
import copy
import difflib
import importlib.util
import itertools
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _common import (
    code_version,
    markdown_table,
    save_result,
    saved_result,
    train_and_watch,
    use_datasets,
    write_report,
)
from detectron2.data import DatasetCatalog
from detectron2.engine import HookBase
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
SIDES = ("official", "ir_d2")
#: each side's name in the plots
SIDE_LABELS = {"official": "official code", "ir_d2": "ir_d2"}
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
        "        parity_t0 = time.perf_counter()\n        self.parity_final = []\n",
    ),
    (  # the final output's own loss (the scored one), beside the mean over the outputs
        "                for pred in preds:\n"
        "                    loss += SoftIoULoss(pred, labels)\n"
        "                loss /= len(preds)\n",
        "                for pred in preds:\n"
        "                    loss += SoftIoULoss(pred, labels)\n"
        "                loss /= len(preds)\n"
        "                self.parity_final.append(\n"
        "                    float(SoftIoULoss(preds[-1].detach(), labels)))\n",
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
        "                'iterations': self.parity_iterations,\n"
        "                'final_loss': float(numpy.mean(self.parity_final or [numpy.nan])),\n"
        "                }) + '\\n')\n",
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
    cmd += ["--optimizer", args.optimizer, "--lr", str(args.lr), "--workers", str(args.workers)]
    env = dict(os.environ, PARITY=json.dumps(official_parity_env(args, record)))
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
                "final_loss": round(entry["final_loss"], 4) if "final_loss" in entry else None,
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


def official_parity_env(args, record: Path) -> dict:
    """What the patched official ``train.py`` reads from ``$PARITY``: the device its ``.cuda()``
    calls became, the seed, the epochs to stop after, the test period and its record folder."""
    return {
        "device": args.device,
        "seed": args.seed,
        "epochs": args.epochs,
        "eval_every": args.eval_every,
        "out": str(record),
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
def ir_d2_cfg(args, flavour: str, iterations: int):
    """ir_d2's config of ``flavour`` with the reduced recipe of the official arguments."""
    opts = ["MODEL.DEVICE", args.device, "SOLVER.IMS_PER_BATCH", args.batch, "SEED", args.seed]
    opts += ["INPUT.IR.CROP_SIZE", [args.crop, args.crop], "SOLVER.MAX_ITER", iterations]
    opts += ["SOLVER.CHECKPOINT_PERIOD", 10**8, "TEST.EVAL_PERIOD", 0]
    opts += ["DATALOADER.NUM_WORKERS", args.workers, "OUTPUT_DIR", str(Path(args.output) / "ir_d2")]
    # torch's betas and eps (SOLVER.EPS 0), as the official optim.Adam / Adagrad(params, lr=...)
    opts += ["SOLVER.OPTIMIZER", args.optimizer, "SOLVER.BASE_LR", args.lr, "SOLVER.EPS", 0.0]
    opts += ["SOLVER.BETAS", [0.9, 0.999]]
    opts += ["MODEL.IRSTD.CHANNELS", CHANNEL_SIZES[args.channel_size]]
    opts += ["MODEL.IRSTD.BLOCKS", BACKBONES[backbone(args, flavour)]]
    return setup_cfg(FLAVOURS[flavour][1], opts)


def epoch_loss(storage, per_epoch: int, key: str = "total_loss") -> float:
    """The mean ``key`` of the last ``per_epoch`` iterations: the official code's train loss at a
    test (its ``AverageMeter`` over the epoch just trained), not the mean since the previous test
    that ``train_and_watch`` reports (over ``--eval-every`` epochs; early in training, while the
    loss falls, that one is higher)."""
    values = [v for v, _ in storage.history(key).values()[-per_epoch:]]
    return round(sum(values) / len(values), 4)


def final_head_loss(storage, per_epoch: int):
    """:func:`epoch_loss` of the final output's own loss (``irstd/loss_<name>_final``, the output
    that is scored: with deep supervision the mean over the outputs can fall while it stays
    stuck); None where the segmentor logged no such key."""
    keys = [k for k in storage.histories() if k.startswith("irstd/loss_") and k.endswith("_final")]
    return epoch_loss(storage, per_epoch, keys[0]) if len(keys) == 1 else None


def run_ir_d2(args, flavour: str) -> dict:
    """ir_d2's net of ``flavour`` trained with the same reduced recipe, scored at the same
    iterations (one epoch of the official loader: 663 // batch) by IRSTDEvaluator."""
    per_epoch = len(DatasetCatalog.get(TRAIN)) // args.batch  # the official drop_last loader
    total = per_epoch * args.epochs
    cfg = ir_d2_cfg(args, flavour, total)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    trainer = IRTrainer(cfg)
    trainer.resume_or_load(resume=False)

    def evaluate(trainer):
        loader = IRTrainer.build_test_loader(cfg, TEST)
        metrics = inference_on_dataset(trainer.model, loader, build_irstd_evaluator(cfg, TEST))
        print(f"ir_d2: iteration {trainer.iter + 1}, IoU {metrics['irstd']['IoU']:.2f}", flush=True)
        losses = {"train_loss": epoch_loss(trainer.storage, per_epoch)}
        losses["final_loss"] = final_head_loss(trainer.storage, per_epoch)
        return losses | {k: round(metrics["irstd"][k], 2) for k in METRICS}

    points = train_and_watch(trainer, per_epoch * args.eval_every, evaluate)
    seconds = points[-1]["train_seconds"]
    return {
        "config": FLAVOURS[flavour][1],
        "iterations": total,
        "train_seconds": round(seconds, 1),
        "s_per_iter": round(seconds / total, 3),
        "curve": points,
    }


# ------------------------------------------------------------------------- lockstep, augmentation
def _official_module(clone: Path, name: str):
    """``model/<name>.py`` of the user's clone, imported from its file (never copied)."""
    spec = importlib.util.spec_from_file_location(
        f"_official_{name}", clone / "model" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: the official Res_CBAM_block's module names -> ir_d2's DNANet block's
_BLOCK_NAMES = {
    "conv1": "body.0",
    "bn1": "body.1",
    "conv2": "body.3",
    "bn2": "body.4",
    "shortcut": "shortcut",
    "ca.fc1": "channel_attention.mlp.0",
    "ca.fc2": "channel_attention.mlp.2",
    "sa.conv1": "spatial_attention.conv",
}


def _block_key(rest: str) -> str:
    for theirs, ours in _BLOCK_NAMES.items():
        if rest.startswith(theirs + "."):
            return ours + rest[len(theirs) :]
    return rest


def official_to_ir_d2(state: dict) -> dict:
    """The official DNANet's state dict with ir_d2's DNANet key names (the same tensors: the
    two nets are the same layers, which the tests check output for output)."""
    out = {}
    for key, value in state.items():
        if m := re.fullmatch(r"conv(\d)_(\d)\.(\d+)\.(.*)", key):
            i, j, b, rest = m.groups()
            out[f"nodes.{i}_{j}.{b}.{_block_key(rest)}"] = value
        elif m := re.fullmatch(r"conv0_4_final\.(\d+)\.(.*)", key):
            out[f"fuse.{m.group(1)}.{_block_key(m.group(2))}"] = value
        elif m := re.fullmatch(r"conv0_(\d)_1x1\.(.*)", key):
            out[f"project.{4 - int(m.group(1))}.{m.group(2)}"] = value
        elif m := re.fullmatch(r"final(\d)\.(.*)", key):
            out[f"heads.{int(m.group(1)) - 1}.{m.group(2)}"] = value
        elif m := re.fullmatch(r"final\.(.*)", key):
            out[f"heads.0.{m.group(1)}"] = value
        else:
            raise KeyError(f"official DNANet key {key!r} has no ir_d2 counterpart")
    return out


def _difference(reference: dict, other: dict, trainable) -> dict:
    """How far ``other``'s tensors are from ``reference``'s (same keys): all trainable weights
    as one vector (relative L2), the trainable tensor farthest relative to its largest value,
    and the same for the other tensors (BatchNorm running statistics)."""
    relative, num, den = {}, 0.0, 0.0
    for key, ref in reference.items():
        a, b = ref.double(), other[key].double()
        relative[key] = float((a - b).abs().max() / a.abs().max().clamp_min(1e-12))
        if key in trainable:
            num += float((a - b).pow(2).sum())
            den += float(a.pow(2).sum())
    params = {k: v for k, v in relative.items() if k in trainable}
    worst = max(params, key=params.get)
    return {
        "weights": (num / den) ** 0.5,
        "worst_tensor": worst,
        "worst_tensor_relative": params[worst],
        "running_statistics": max(
            (v for k, v in relative.items() if k not in trainable), default=0.0
        ),
    }


def _official_nets(args, flavour: str):
    """The official side of the same-batch runs (the lockstep and ``--coupled``): the official
    DNANet built and Xavier-initialised by the official code (after ``torch.manual_seed(seed)``),
    the control (a copy with its weights changed by float32 rounding, relative 2**-24), each
    with the official optimizer (its one scheduler step taken), and the official loss of a
    net's outputs (``SoftIoULoss`` averaged over the deep-supervision outputs)."""
    clone = Path(args.official).expanduser().resolve()
    net_code = _official_module(clone, "model_DNANet")
    loss_code = _official_module(clone, "loss")
    torch.manual_seed(args.seed)
    official = net_code.DNANet(
        num_classes=1,
        input_channels=3,
        block=net_code.Res_CBAM_block,
        num_blocks=BACKBONES[backbone(args, flavour)],
        nb_filter=CHANNEL_SIZES[args.channel_size],
        deep_supervision=True,
    )
    for m in official.modules():  # the official weights_init_xavier
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.xavier_normal_(m.weight.data)
    control = copy.deepcopy(official)
    with torch.no_grad():
        for p in control.parameters():
            p.mul_(1 + 2.0**-24 * torch.randn_like(p))

    def official_optimizer(net):
        params = [p for p in net.parameters() if p.requires_grad]
        if args.optimizer == "Adam":
            opt = torch.optim.Adam(params, lr=args.lr)
        else:
            opt = torch.optim.Adagrad(params, lr=args.lr)
        # the official code builds CosineAnnealingLR(T_max=epochs, eta_min=1e-5), steps it once
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "step() before optimizer.step()"
            torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=1500, eta_min=1e-5).step()
        return opt

    def official_loss(net, images, targets):
        preds = net(images)
        return sum(loss_code.SoftIoULoss(p, targets[:, None]) for p in preds) / len(preds)

    sides = {"official": official, "control": control}
    return {name: (net, official_optimizer(net)) for name, net in sides.items()}, official_loss


def _train_step(opt, loss_of, *inputs):
    """One side's whole step (forward, loss, backward, update): its loss and its seconds."""
    t0 = time.perf_counter()
    loss = loss_of(*inputs)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss, time.perf_counter() - t0


def lockstep(args, flavour: str, steps: int) -> dict:
    """
    The official net, loss and optimizer against ir_d2's, on the same batches: the official
    DNANet built and Xavier-initialised by the official code, its weights copied into ir_d2's
    DNANet, then ``steps`` training steps on each side from the same ir_d2 batches (the official
    loss ``SoftIoULoss`` averaged over the deep-supervision outputs and the official optimizer
    with its one scheduler step, against ``IRSTDSegmentor``'s loss and ir_d2's optimizer).

    Float arithmetic in another order (ir_d2's layers sum and concatenate in their own order)
    differs in the last bits, and adaptive optimizers amplify such bits where a gradient is
    nearly zero (Adagrad's and Adam's first steps are ``lr * sign(g)``). So a control runs
    beside them: the official code against itself with its initial weights changed by float32
    rounding (relative 2**-24). ir_d2 agrees with the official code when it stays as close to it
    as that control does; then any difference of the two trainings comes from their data
    (augmentation and sampling), not from net, loss or optimizer. Each side's whole step is
    timed too (``"step_seconds"``: the medians over the steps and ir_d2's ratio), the two in
    turn on the same batch, the one that goes first alternating from step to step: the time per
    iteration without the data loaders and trainers.
    """
    if flavour != "dnanet":
        return {"skipped": "the lockstep maps the DNANet code's layer names only"}
    sides, official_loss = _official_nets(args, flavour)
    (official, official_opt), (control, control_opt) = sides["official"], sides["control"]
    cfg = ir_d2_cfg(args, flavour, steps)
    model = IRTrainer.build_model(cfg)
    model.net.load_state_dict(official_to_ir_d2(official.state_dict()))
    optimizer = IRTrainer.build_optimizer(cfg, model)
    loader = iter(IRTrainer.build_train_loader(cfg))
    # drawn first, so that the loader's worker is idle while the steps are timed
    batches = [next(loader) for _ in range(steps)]
    for net in (official, control, model):
        net.train()

    def segmentor_loss(batch):
        return sum(model(batch).values())

    rows, seconds = [], {"official": [], "ir_d2": []}
    for step, batch in enumerate(batches):
        images = model.preprocess_image(batch)
        targets, _ = model.prepare_targets(batch, images)
        sides = {
            "ir_d2": (optimizer, segmentor_loss, batch),
            "official": (official_opt, official_loss, official, images.tensor, targets),
        }
        # the two sides in turn, the first one alternating (an order effect cancels out)
        order = ["ir_d2", "official"] if step % 2 == 0 else ["official", "ir_d2"]
        done = {side: _train_step(*sides[side]) for side in order}
        (ours, t_ours), (theirs, t_theirs) = done["ir_d2"], done["official"]
        again, _ = _train_step(control_opt, official_loss, control, images.tensor, targets)
        seconds["ir_d2"].append(t_ours)
        seconds["official"].append(t_theirs)
        rows.append([step, *(float(x.detach()) for x in (theirs, ours, again))])
    # the same batches, in turn on one CPU: each side's median step, and ir_d2's over the official
    step_time = {side: round(float(np.median(v)), 4) for side, v in seconds.items()}
    step_time["ratio"] = round(step_time["ir_d2"] / step_time["official"], 3)
    reference = official_to_ir_d2(official.state_dict())
    trainable = {name for name, _ in model.net.named_parameters()}
    ours_diff = _difference(reference, model.net.state_dict(), trainable)
    control_state = official_to_ir_d2(control.state_dict())
    itself = _difference(reference, control_state, trainable)
    ours_diff["loss"] = max(abs(r[1] - r[2]) for r in rows)
    itself["loss"] = max(abs(r[1] - r[3]) for r in rows)
    print(
        f"lockstep: {steps} steps; ir_d2 vs official: loss {ours_diff['loss']:.2e}, weights "
        f"{ours_diff['weights']:.2e}; official vs itself (float rounding): loss "
        f"{itself['loss']:.2e}, weights {itself['weights']:.2e}; median step: "
        + step_times_text(step_time)
    )
    return {
        "steps": steps,
        "optimizer": args.optimizer,
        "step_seconds": step_time,
        "losses": [
            {"step": s, "official": round(a, 6), "ir_d2": round(b, 6), "control": round(c, 6)}
            for s, a, b, c in rows
        ],
        "ir_d2": ours_diff,
        "control": itself,
    }


# ------------------------------------------------------------------------ the coupled training
#: the coupled run's three sides: the official code, its control (weights rounded), ir_d2
COUPLED_SIDES = {
    "official": "official code",
    "control": "official code, weights rounded",
    "ir_d2": "ir_d2",
}


class _Recording:
    """The trainer's batches, each kept as ``last`` once it is handed out."""

    def __init__(self, iterator):
        self.iterator, self.last = iterator, None

    def __iter__(self):
        return self

    def __next__(self):
        self.last = next(self.iterator)
        return self.last


class _OfficialSteps(HookBase):
    """After each of ir_d2's training steps, one official step of each of ``sides`` (name: (net,
    optimizer)) on the batch that ir_d2 just trained on (``recording.last``), normalised and with
    targets as ir_d2's segmentor makes them; each side's losses kept in ``losses[name]``."""

    def __init__(self, recording: _Recording, sides: dict, loss_of):
        self.recording, self.sides, self.loss_of = recording, sides, loss_of
        self.losses = {name: [] for name in sides}

    def after_step(self):
        model = self.trainer.model
        with torch.no_grad():
            images = model.preprocess_image(self.recording.last)
            targets, _ = model.prepare_targets(self.recording.last, images)
        for name, (net, opt) in self.sides.items():
            loss, _ = _train_step(opt, self.loss_of, net, images.tensor, targets)
            self.losses[name].append(float(loss.detach()))


def coupled(args, flavour: str, out: Path) -> dict:
    """
    The whole training, coupled: ir_d2's DNANet trained by ``IRTrainer`` (its config, loader,
    optimizer, schedule and hooks, as :func:`run_ir_d2`) from the official code's initial
    weights, and after each of its steps one step of the official net, loss and optimizer on the
    same batch, with the control (the official code with its initial weights rounded, the
    lockstep's) beside them; ``--epochs`` epochs of 663 // batch iterations, all three scored by
    IRSTDEvaluator every ``--eval-every`` epochs (the official weights through ir_d2's DNANet,
    the same layers). With the initial draw and the batches shared, what is left to differ is the
    arithmetic: ir_d2 trains as the official code does when it ends as close to it as the control
    does (Adam's and Adagrad's amplification of rounding makes the control drift too). The
    report is rewritten after each test, ``"finished": false`` until the last one.
    """
    if flavour != "dnanet":
        raise CommandLineError("--coupled maps the DNANet code's layer names only")
    per_epoch = len(DatasetCatalog.get(TRAIN)) // args.batch  # the official drop_last loader
    total = per_epoch * args.epochs
    random.seed(args.seed)
    np.random.seed(args.seed)
    sides, official_loss = _official_nets(args, flavour)  # seeds torch
    cfg = ir_d2_cfg(args, flavour, total)
    trainer = IRTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.model.net.load_state_dict(official_to_ir_d2(sides["official"][0].state_dict()))
    recording = _Recording(iter(trainer._trainer.data_loader))
    trainer._trainer._data_loader_iter_obj = recording
    steps = _OfficialSteps(recording, sides, official_loss)
    trainer.register_hooks([steps])  # before train_and_watch's tests
    for net, _ in sides.values():
        net.train()
    probe = copy.deepcopy(trainer.model)  # scores the official weights
    report = {"conditions": conditions(args) | {"coupled": True}, "flavour": flavour}
    report["code"] = code_version()  # the digest of ir_d2/ and configs/ that trained
    report |= {"iterations": total, "finished": False, "curve": []}

    loader = IRTrainer.build_test_loader(cfg, TEST)  # the three sides' tests, every test

    def evaluate(trainer):
        point = {}
        for side in COUPLED_SIDES:
            model = trainer.model
            if side in sides:
                probe.net.load_state_dict(official_to_ir_d2(sides[side][0].state_dict()))
                model = probe
            metrics = inference_on_dataset(model, loader, build_irstd_evaluator(cfg, TEST))
            point[side] = {k: round(metrics["irstd"][k], 2) for k in METRICS}
            losses = steps.losses.get(side)
            point[side]["train_loss"] = (
                round(float(np.mean(losses[-per_epoch:])), 4)
                if losses
                else epoch_loss(trainer.storage, per_epoch)
            )
        print(
            f"coupled: iteration {trainer.iter + 1}, IoU "
            + ", ".join(f"{side} {point[side]['IoU']:.2f}" for side in COUPLED_SIDES),
            flush=True,
        )
        report["curve"].append({"iteration": trainer.iter + 1} | point)
        write_report(out, "bench_parity_coupled", TOOL, report, coupled_markdown(report))
        return point

    train_and_watch(trainer, per_epoch * args.eval_every, evaluate)
    report["finished"] = True
    return report


def coupled_markdown(report) -> str:
    """The coupled run's curve: each side's test IoU and epoch training loss, and how far ir_d2
    and the control each ended from the official code."""
    rows = []
    for p in report["curve"]:
        off = p["official"]["IoU"]
        rows.append(
            [p["iteration"], *(p[side]["IoU"] for side in COUPLED_SIDES)]
            + [f"{p[side]['IoU'] - off:+.2f}" for side in ("ir_d2", "control")]
            + [p[side]["train_loss"] for side in COUPLED_SIDES]
        )
    header = ["iteration", "test IoU: official", "official, weights rounded", "ir_d2"]
    header += ["ir_d2 - official", "rounded - official", "train loss: official"]
    header += ["official, weights rounded", "ir_d2"]
    c = report["conditions"]
    state = "" if report["finished"] else " (unfinished: the run stopped or goes on)"
    return (
        f"{report['flavour']} on {TEST}, coupled{state}: the official initial weights and the "
        f"same batches for all three; {c['epochs']} epochs at batch {c['batch']}, crop "
        f"{c['crop']}, {c['optimizer']} lr {c['lr']}, seed {c['seed']}\n\n"
        + markdown_table(header, rows)
    )


def coupled_plot(report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    x = [p["iteration"] for p in report["curve"]]
    for side, label in COUPLED_SIDES.items():
        ax.plot(x, [p[side]["IoU"] for p in report["curve"]], "o-", label=label)
    title = f"{report['flavour']}, coupled, seed {report['conditions']['seed']}: {TEST}"
    _finish_plot(fig, ax, title, path)


def augmentation_stats(args, flavour: str, nudt: Path, samples: int) -> dict:
    """
    The training crops of the official ``TrainSetLoader`` against ir_d2's mapper with the same
    arguments, ``samples`` crops each (frames in the split's order, cycled): the share of crops
    with no target pixel, target pixels per crop, the mean normalised intensity and the share of
    zero (padded) pixels. Equal statistics mean the two pipelines feed the nets alike.
    """
    from ir_d2.data import IRSTDDatasetMapper

    clone = Path(args.official).expanduser().resolve()
    utils_code = _official_module(clone, "utils")
    ids = [line.strip() for line in (nudt / "50_50" / "train.txt").read_text().splitlines()]
    from torchvision import transforms

    transform = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]
    )
    official = utils_code.TrainSetLoader(
        str(nudt), img_id=[i for i in ids if i], base_size=args.base, crop_size=args.crop,
        transform=transform, suffix=".png",
    )  # fmt: skip
    cfg = ir_d2_cfg(args, flavour, 1)
    mapper = IRSTDDatasetMapper(cfg, True)
    records = DatasetCatalog.get(TRAIN)
    mean = torch.tensor(cfg.MODEL.PIXEL_MEAN).view(-1, 1, 1)
    std = torch.tensor(cfg.MODEL.PIXEL_STD).view(-1, 1, 1)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    stats = {"official": [], "ir_d2": []}
    imagenet_mean = torch.tensor([0.485, 0.456, 0.406]).view(-1, 1, 1)
    imagenet_std = torch.tensor([0.229, 0.224, 0.225]).view(-1, 1, 1)
    for i in range(samples):
        image, mask = official[i % len(official)]
        raw = image * imagenet_std + imagenet_mean  # in [0, 1]: padding is 0
        padded = (raw.abs() < 1e-6).all(0).float().mean()
        stats["official"].append((float(mask.sum()), float(image.mean()), float(padded)))
        out = mapper(records[i % len(records)])
        x = (out["image"].float() - mean) / std
        padded = (out["image"] == 0).all(0).float().mean()
        stats["ir_d2"].append((float(out["sem_seg"].sum()), float(x.mean()), float(padded)))
    result = {}
    for side, values in stats.items():
        pixels = np.array([v[0] for v in values])
        result[side] = {
            "empty_crops": round(float((pixels == 0).mean()), 3),
            "target_pixels_mean": round(float(pixels.mean()), 2),
            "target_pixels_median_nonempty": (
                float(np.median(pixels[pixels > 0])) if (pixels > 0).any() else 0.0
            ),
            "intensity_mean": round(float(np.mean([v[1] for v in values])), 3),
            "padded_share": round(float(np.mean([v[2] for v in values])), 3),
        }
    result["samples"] = samples
    return result


# ------------------------------------------------------------------------------------ report
def conditions(args) -> dict:
    keys = ("epochs", "eval_every", "batch", "crop", "base", "seed", "workers", "channel_size")
    keys += ("backbone", "optimizer", "lr", "device")
    return {k: getattr(args, k) for k in keys} | {"threads": torch.get_num_threads()}


def plot(report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for side, label in SIDE_LABELS.items():
        curve = report[side]["curve"]
        ax.plot([p["iteration"] for p in curve], [p["IoU"] for p in curve], "o-", label=label)
    _finish_plot(fig, ax, f"{report['official']['flavour']}: {TEST}", path)


def _finish_plot(fig, ax, title: str, path: Path) -> None:
    """The test-IoU axes of both parity plots, saved to ``path``."""
    import matplotlib.pyplot as plt

    ax.set_xlabel("iteration")
    ax.set_ylabel("test IoU (%) by IRSTDEvaluator")
    ax.set_title(title)
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
        # the final output's loss: none in older reports, nor where the segmentor logs none
        finals = ["—" if x.get("final_loss") is None else x["final_loss"] for x in (a, b)]
        rows.append(
            [a["iteration"], a["train_loss"], b["train_loss"], *finals, a["official_mIoU"]]
            + [a["IoU"], b["IoU"], delta]
        )
    header = ["iteration", "train loss: official", "ir_d2", "final output's loss: official"]
    header += ["ir_d2", "IoU: official (own mIoU)", "official (IRSTDEvaluator)", "ir_d2"]
    header += ["ir_d2 - official"]
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


def step_times_text(step_time: dict) -> str:
    """The lockstep's ``"step_seconds"`` in words: each side's median step and the ratio."""
    return (
        f"official {step_time['official']} s, ir_d2 {step_time['ir_d2']} s "
        f"({step_time['ratio']}x)"
    )


def checks_markdown(report) -> str:
    parts = []
    step = report.get("lockstep")
    if step and "skipped" not in step:
        every = max(1, len(step["losses"]) // 5)
        rows = [
            [r["step"], r["official"], r["ir_d2"], r["control"]] for r in step["losses"][::every]
        ]
        header = ["step", "loss: official", "ir_d2", "official, weights rounded"]
        summary = markdown_table(
            ["after the steps", "largest loss difference", "weights (relative L2)"]
            + ["farthest tensor (relative)", "BN running statistics (relative)"],
            [
                [name, f"{d['loss']:.2e}", f"{d['weights']:.2e}"]
                + [f"{d['worst_tensor_relative']:.2e} (`{d['worst_tensor']}`)"]
                + [f"{d['running_statistics']:.2e}"]
                for name, d in (
                    ("ir_d2 vs official", step["ir_d2"]),
                    ("official vs itself, weights rounded (control)", step["control"]),
                )
            ],
        )
        timed = step.get("step_seconds")
        timing = (
            "\nMedian step on the same batches, in turn (forward, loss, backward, update): "
            f"{step_times_text(timed)}\n"
            if timed
            else ""
        )
        parts.append(
            f"Lockstep: same batches, same initial weights, {step['steps']} steps, "
            f"{step['optimizer']}\n\n{markdown_table(header, rows)}\n\n{summary}{timing}"
        )
    elif step:
        parts.append(f"Lockstep check skipped: {step['skipped']}")
    aug = report.get("augmentation")
    if aug:
        keys = ["empty_crops", "target_pixels_mean", "target_pixels_median_nonempty"]
        keys += ["intensity_mean", "padded_share"]
        parts.append(
            f"Training crops, {aug['samples']} per side:\n\n"
            + markdown_table(
                ["pipeline", *keys],
                [[s, *(aug[s][k] for k in keys)] for s in ("official", "ir_d2")],
            )
        )
    return "\n\n".join(parts) + "\n"


# --------------------------------------------------------------------------- several seeds
#: what may differ between the runs whose seeds are set side by side (the lr schedule does not
#: depend on the number of epochs: both sides keep the official 1500-epoch T_max, a constant lr)
SEED_KEYS = ("seed", "epochs", "eval_every")
#: a test IoU (%) below this: the net sits at the empty-prediction minimum of the batch Soft-IoU
EMPTY_IOU = 1.0
#: the goal: ir_d2's mean test IoU within this many points of the official code's
GOAL_POINTS = 2.0
#: the fewest seeds a t interval needs for a verdict of parity (two equal differences make a
#: zero-width interval by chance)
VERDICT_SEEDS = 3


def distribution(values) -> dict:
    """Mean, sample standard deviation, median, extremes and the count at the empty minimum."""
    v = np.asarray(values, dtype=np.float64)
    return {
        "n": len(v),
        "mean": round(float(v.mean()), 2),
        "std": round(float(v.std(ddof=1)), 2) if len(v) > 1 else None,
        "median": round(float(np.median(v)), 2),
        "min": round(float(v.min()), 2),
        "max": round(float(v.max()), 2),
        "at_empty_minimum": int((v < EMPTY_IOU).sum()),
    }


def welch_interval(official, ours) -> tuple[float, float]:
    """The 95% Welch t interval of ir_d2's mean minus the official code's (independent seeds,
    unequal variances: the difference of means +- t(0.975, df) se, se^2 = s_a^2/n_a + s_b^2/n_b,
    df by Welch-Satterthwaite). A percentile bootstrap over three seeds a side only spans the
    seeds' own means and reads narrower than a 95% interval. With both sides constant the
    interval is the difference itself; fewer than two seeds a side: CommandLineError."""
    from scipy.stats import t as student_t

    a, b = np.asarray(official, np.float64), np.asarray(ours, np.float64)
    if min(len(a), len(b)) < 2:
        raise CommandLineError("a difference of means needs at least two seeds a side")
    delta = float(b.mean() - a.mean())
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va + vb == 0:
        return delta, delta
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(student_t.ppf(0.975, df) * math.sqrt(va + vb))
    return delta - half, delta + half


def mean_difference(official, ours, draws: int = 20000, seed: int = 0) -> dict:
    """ir_d2's mean minus the official code's, with its 95% Welch t interval
    (:func:`welch_interval`) and the two-sided permutation p-value of the difference of means
    (exact over every relabelling of the seeds while there are at most ``draws`` of them, else
    ``draws`` random ones; ``seed`` fixes those). The verdict: parity shown when the interval
    lies within +-GOAL_POINTS; the codes differ when p < 0.05; else not resolved."""
    a, b = np.asarray(official, np.float64), np.asarray(ours, np.float64)
    low, high = welch_interval(a, b)
    delta = float(b.mean() - a.mean())
    rng = np.random.default_rng(seed)
    pooled, n = np.concatenate([a, b]), len(a) + len(b)
    if math.comb(n, len(b)) <= draws:  # (splits, len(b)): the indices labelled ir_d2's
        chosen = np.array(list(itertools.combinations(range(n), len(b))))
    else:
        chosen = np.array([rng.permutation(n)[: len(b)] for _ in range(draws)])
    ours_sum = pooled[chosen].sum(1)
    diffs = ours_sum / len(b) - (pooled.sum() - ours_sum) / len(a)
    p = float(np.mean(np.abs(diffs) >= abs(delta) - 1e-9))
    if -GOAL_POINTS <= low and high <= GOAL_POINTS:
        verdict = f"parity shown: the 95% interval lies within +-{GOAL_POINTS:g} points"
    elif p < 0.05:
        verdict = "the codes differ (permutation p < 0.05)"
    else:
        verdict = (
            f"not resolved: permutation p >= 0.05, and the 95% interval is not within "
            f"+-{GOAL_POINTS:g} points"
        )
    return {
        "mean": round(delta, 2),
        "interval_95": [round(float(low), 2), round(float(high), 2)],
        "permutation_p": round(p, 3),
        "verdict": verdict,
    }


def _iou_at(report, side: str, iteration: int) -> float:
    return next(p["IoU"] for p in report[side]["curve"] if p["iteration"] == iteration)


def seeds_report(reports, names) -> dict:
    """Parity as distributions: several reports of this script (``names``: where each was read),
    one seed each and the same recipe (only SEED_KEYS may differ), set side by side at every
    iteration that each run scored on both sides: each side's test IoU over the seeds
    (:func:`distribution`), ir_d2's mean minus the official code's (:func:`mean_difference`)
    and the time per iteration. One seed cannot show parity under this recipe: an empty
    prediction is a minimum of the batch Soft-IoU that both codes enter and leave at random
    iterations, so one code against itself can differ by 27 points."""
    if len(reports) < 2:
        raise CommandLineError("parity over seeds needs the reports of at least two seeds")
    for report, name in zip(reports, names):
        missing = [k for k in ("conditions", *SIDES) if k not in report]
        if missing:
            raise CommandLineError(f"{name}: not a report of a parity run (no {missing})")

    seeds, base = _same_recipe(reports, names)
    scored = [{p["iteration"] for p in r[side]["curve"]} for r in reports for side in SIDES]
    iterations = sorted(set.intersection(*scored))
    if not iterations:
        raise CommandLineError(f"no iteration was scored by every run of {names}")
    points = []
    for iteration in iterations:
        iou = {side: [_iou_at(r, side, iteration) for r in reports] for side in SIDES}
        points.append(
            {
                "iteration": iteration,
                **{side: distribution(iou[side]) | {"IoU": iou[side]} for side in SIDES},
                "difference": mean_difference(iou["official"], iou["ir_d2"]),
            }
        )
    times = {side: [r[side]["s_per_iter"] for r in reports] for side in SIDES}
    return {
        "recipe": base,
        "seeds": seeds,
        "reports": [str(n) for n in names],
        "flavour": reports[0]["official"]["flavour"],
        "points": points,
        "s_per_iter": times,
        "time_ratio": round(float(np.mean(times["ir_d2"]) / np.mean(times["official"])), 3),
    }


def seeds_markdown(report) -> str:
    def spread(d):
        std = "" if d["std"] is None else f" +- {d['std']}"
        return f"{d['mean']}{std} (median {d['median']}, {d['min']}-{d['max']})"

    rows = []
    for p in report["points"]:
        off, ours, diff = p["official"], p["ir_d2"], p["difference"]
        rows.append(
            [p["iteration"], spread(off), spread(ours)]
            + [f"{off['at_empty_minimum']} / {ours['at_empty_minimum']}"]
            + [f"{diff['mean']} [{diff['interval_95'][0]}, {diff['interval_95'][1]}]"]
            + [diff["permutation_p"], diff["verdict"]]
        )
    header = ["iteration", "test IoU: official, mean +- std", "ir_d2"]
    header += [f"seeds below IoU {EMPTY_IOU:g}: official / ir_d2"]
    header += ["ir_d2 - official [95% Welch t interval]", "permutation p", "verdict"]
    per_seed = markdown_table(
        ["seed", *(f"{p['iteration']}: official / ir_d2" for p in report["points"])],
        [
            [
                seed,
                *(f"{p['official']['IoU'][i]} / {p['ir_d2']['IoU'][i]}" for p in report["points"]),
            ]
            for i, seed in enumerate(report["seeds"])
        ],
    )
    r, t = report["recipe"], report["s_per_iter"]
    return (
        f"{report['flavour']} on {TEST}, {len(report['seeds'])} seeds "
        f"({', '.join(map(str, report['seeds']))}): batch {r['batch']}, crop {r['crop']}, "
        f"{r['optimizer']} lr {r['lr']}, {r['threads']} threads\n\n"
        f"{markdown_table(header, rows)}\nTest IoU of each seed:\n\n{per_seed}\n"
        f"Time per iteration: official {np.mean(t['official']):.3f} s, ir_d2 "
        f"{np.mean(t['ir_d2']):.3f} s (mean over the seeds; ir_d2 / official "
        f"{report['time_ratio']})\n"
    )


def seeds_plot(report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    points = report["points"]  # one column per scored iteration, the two sides side by side
    for k, (side, label) in enumerate(SIDE_LABELS.items()):
        x = np.arange(len(points)) + (k - 0.5) * 0.3
        for xi, p in zip(x, points):
            seeds = len(p[side]["IoU"])
            jitter = np.linspace(-0.05, 0.05, seeds) if seeds > 1 else [0.0]
            ax.scatter(xi + np.asarray(jitter), p[side]["IoU"], color=f"C{k}", alpha=0.6, s=18)
        means = [p[side]["mean"] for p in points]
        ax.plot(x, means, "_-", color=f"C{k}", ms=20, label=f"{label} (dots: seeds; bar: mean)")
    ax.set_xticks(range(len(points)), [str(p["iteration"]) for p in points])
    ax.set_xlim(-0.6, len(points) - 0.4)
    _finish_plot(fig, ax, f"{report['flavour']}, {len(report['seeds'])} seeds: {TEST}", path)


def _t_interval(values) -> tuple[float, float]:
    """The 95% Student t interval of the mean of ``values`` (at least two):
    mean +- t(0.975, n-1) s / sqrt(n)."""
    from scipy.stats import t as student_t

    v = np.asarray(values, np.float64)
    half = student_t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean() - half), float(v.mean() + half)


def distance_excess(ours, control) -> dict:
    """How much further ir_d2 lies from the official code than the official code's own rounded
    copy, seed by seed: |ir_d2 - official| - |control - official| (``ours`` and ``control``:
    each seed's difference to the official code), its mean with the 95% Student t interval,
    the seeds where ir_d2 is the closer, and the verdict against the benchmark's goal, ir_d2 as
    close to the official code as the official code to itself: further than the control when
    the interval lies above 0, closer when below; else parity shown when three seeds or more
    put its upper end at +GOAL_POINTS or below (ir_d2 at most that much further than the
    control: a one-sided margin, as the distance is the official code's own noise plus
    ir_d2's), else no further than the seeds' spread."""
    e = np.abs(np.asarray(ours, np.float64)) - np.abs(np.asarray(control, np.float64))
    low, high = _t_interval(e)
    if low > 0:
        verdict = "ir_d2 further from the official code than its rounded copy"
    elif high < 0:
        verdict = "ir_d2 closer to the official code than its rounded copy"
    elif len(e) >= VERDICT_SEEDS and high <= GOAL_POINTS:
        verdict = (
            f"parity shown: ir_d2 at most {GOAL_POINTS:g} points further from the official code"
            " than its rounded copy (the 95% interval's upper end)"
        )
    else:
        verdict = "ir_d2 as far from the official code as its rounded copy, within the spread"
    return {
        "mean": round(float(e.mean()), 2),
        "interval_95": [round(low, 2), round(high, 2)],
        "seeds_closer": f"{int((e < 0).sum())} of {len(e)}",
        "verdict": verdict,
    }


def paired_difference(differences) -> dict:
    """The mean of per-seed differences (coupled runs: each seed's ir_d2 minus its official
    code) with its 95% Student t interval (mean +- t(0.975, n-1) s / sqrt(n): the seeds'
    differences taken as normal; a percentile bootstrap over three seeds is the range of the
    seeds, not a 95% interval), how many seeds lie within +-GOAL_POINTS, and the verdict against
    the 2-point goal: parity shown when the interval of three seeds or more lies within
    +-GOAL_POINTS, a difference when it excludes 0, else not resolved."""
    d = np.asarray(differences, np.float64)
    low, high = _t_interval(d)
    if len(d) < VERDICT_SEEDS:
        verdict = f"not resolved: {len(d)} seeds cannot bound the mean"
    elif -GOAL_POINTS <= low and high <= GOAL_POINTS:
        verdict = f"parity shown: the 95% interval lies within +-{GOAL_POINTS:g} points"
    elif low > 0 or high < 0:
        verdict = "the codes differ: the 95% interval excludes 0"
    else:
        verdict = f"not resolved: the 95% interval is not within +-{GOAL_POINTS:g} points"
    return {
        "mean": round(float(d.mean()), 2),
        "mean_absolute": round(float(np.abs(d).mean()), 2),
        "interval_95": [round(float(low), 2), round(float(high), 2)],
        "seeds_within_goal": f"{int((np.abs(d) <= GOAL_POINTS).sum())} of {len(d)}",
        "verdict": verdict,
    }


def _same_recipe(reports, names):
    """The seeds of ``reports`` (parity reports, one seed each) and their recipe (the conditions
    but SEED_KEYS), which they must share, with no seed twice; else CommandLineError."""

    def recipe(report):  # a report from before --device trained on the CPU
        conditions = {"device": "cpu", **report["conditions"]}
        return {k: v for k, v in conditions.items() if k not in SEED_KEYS}

    base = recipe(reports[0])
    for report, name in zip(reports[1:], names[1:]):
        other = recipe(report)
        differ = sorted(k for k in base.keys() | other.keys() if base.get(k) != other.get(k))
        if differ:
            raise CommandLineError(f"{name}: another recipe than {names[0]} ({', '.join(differ)})")
    seeds = [r["conditions"]["seed"] for r in reports]
    if len(set(seeds)) != len(seeds):
        raise CommandLineError(f"a seed appears twice among {names}: {seeds}")
    return seeds, base


def _coupled_point(at) -> dict:
    """The three sides' test IoUs of one curve point a seed (``at``), and over the seeds the
    official code's distance to ir_d2 and to its own control, ir_d2's to the control
    (:func:`paired_difference` of each) and how much further ir_d2 lies from the official code
    than the control (:func:`distance_excess`)."""
    iou = {side: [p[side]["IoU"] for p in at] for side in COUPLED_SIDES}
    pairs = [("ir_d2", "official"), ("control", "official"), ("ir_d2", "control")]
    minus = {
        f"{side}_minus_{base}": [b - a for a, b in zip(iou[base], iou[side])]
        for side, base in pairs
    }
    excess = distance_excess(minus["ir_d2_minus_official"], minus["control_minus_official"])
    return (
        {"IoU": iou}
        | {k: paired_difference(d) for k, d in minus.items()}
        | {"distance_excess": excess}
    )


def coupled_seeds_report(reports, names) -> dict:
    """Coupled runs (:func:`coupled`) of several seeds set side by side (:func:`_coupled_point`)
    at every iteration that all of them scored (``points``, none where their lengths differ),
    and at each seed's last test (``final``: every seed, each a pair of codes trained alike, so
    runs of different lengths pool there; the lr is constant whatever the length)."""
    if len(reports) < 2:
        raise CommandLineError("parity over seeds needs the reports of at least two seeds")
    for report, name in zip(reports, names):
        if not report.get("finished"):
            raise CommandLineError(f"{name}: an unfinished coupled run")
    seeds, recipe = _same_recipe(reports, names)
    scored = [{p["iteration"] for p in r["curve"]} for r in reports]
    points = []
    for iteration in sorted(set.intersection(*scored)):
        at = [next(p for p in r["curve"] if p["iteration"] == iteration) for r in reports]
        points.append({"iteration": iteration} | _coupled_point(at))
    last = [max(r["curve"], key=lambda p: p["iteration"]) for r in reports]
    final = {"iterations": [p["iteration"] for p in last]} | _coupled_point(last)
    report = {"recipe": recipe, "seeds": seeds, "reports": list(map(str, names))}
    return report | {"points": points, "final": final}


def coupled_seeds_markdown(report) -> str:
    def text(d):
        return (
            f"{d['mean']} [{d['interval_95'][0]}, {d['interval_95'][1]}], mean abs "
            f"{d['mean_absolute']}, within {GOAL_POINTS:g}: {d['seeds_within_goal']}"
        )

    def excess(d):
        low, high = d["interval_95"]
        return f"{d['mean']} [{low}, {high}], closer in {d['seeds_closer']}: {d['verdict']}"

    def row(name, p):
        ours = p["ir_d2_minus_official"]
        return [name, text(ours), ours["verdict"], text(p["control_minus_official"])] + [
            text(p["ir_d2_minus_control"]),
            excess(p["distance_excess"]),
        ]

    final = report["final"]
    last = ", ".join(map(str, final["iterations"]))
    rows = [row(p["iteration"], p) for p in report["points"]]
    rows.append(row(f"each seed's last test ({last})", final))
    header = ["iteration", "ir_d2 - official: mean [95% t interval], mean absolute, seeds within"]
    header += ["verdict"]
    header += ["official weights rounded - official (the control)", "ir_d2 - control"]
    header += ["abs(ir_d2 - official) - abs(control - official) [95% t interval]"]

    def ious(p, i):
        return " / ".join(str(p["IoU"][side][i]) for side in COUPLED_SIDES)

    per_seed = markdown_table(
        ["seed", *(f"{p['iteration']}: official / rounded / ir_d2" for p in report["points"])]
        + ["last test: iteration, official / rounded / ir_d2"],
        [
            [seed, *(ious(p, i) for p in report["points"])]
            + [f"{final['iterations'][i]}: {ious(final, i)}"]
            for i, seed in enumerate(report["seeds"])
        ],
    )
    r = report["recipe"]
    return (
        f"Coupled runs on {TEST}, {len(report['seeds'])} seeds "
        f"({', '.join(map(str, report['seeds']))}): batch {r['batch']}, crop {r['crop']}, "
        f"{r['optimizer']} lr {r['lr']}\n\n{markdown_table(header, rows)}\n"
        f"Test IoU of each seed:\n\n{per_seed}"
    )


def summarise(paths, out: Path) -> dict:
    """:func:`seeds_report` of the ``bench_parity.json`` in each folder of ``paths`` (or
    :func:`coupled_seeds_report` where they hold ``bench_parity_coupled.json``), written to
    ``out`` as ``bench_parity_seeds.{json,md,png}`` (``bench_parity_coupled_seeds.{json,md}``)."""
    reports, names = [], []
    for folder in map(Path, paths):
        path = folder
        if folder.is_dir():
            path = folder / "bench_parity.json"
            if not path.is_file() and (folder / "bench_parity_coupled.json").is_file():
                path = folder / "bench_parity_coupled.json"
        try:
            reports.append(json.loads(path.read_text()))
        except (OSError, ValueError) as e:
            raise CommandLineError(f"{path}: cannot read a parity report ({e})") from e
        if reports[-1].get("tool") != TOOL:
            raise CommandLineError(f"{path}: not written by {TOOL}")
        names.append(str(path))
    kinds = {bool(r.get("conditions", {}).get("coupled")) for r in reports}
    if len(kinds) > 1:
        raise CommandLineError(f"coupled and independent runs cannot be set side by side: {names}")
    if kinds == {True}:
        report = coupled_seeds_report(reports, names)
        text = coupled_seeds_markdown(report)
        write_report(out, "bench_parity_coupled_seeds", TOOL, report, text)
    else:
        report = seeds_report(reports, names)
        text = seeds_markdown(report)
        write_report(out, "bench_parity_seeds", TOOL, report, text, lambda p: seeds_plot(report, p))
    print(text)
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--official", default=None, help="a clone of the authors' repository")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of 663 // batch iterations")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--channel-size", choices=sorted(CHANNEL_SIZES), default="three")
    parser.add_argument("--optimizer", choices=["Adagrad", "Adam"], default="Adagrad")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--backbone", choices=sorted(BACKBONES), default=None)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--base", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=1, help="evaluate every N epochs")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default="cpu",
        help="where both sides train and test (the official code's .cuda() become .to(device); "
        "the lockstep and augmentation checks stay on the CPU)",
    )
    parser.add_argument("--datasets", default=None, help="folder holding nudt-sirst/")
    parser.add_argument(
        "--lockstep", type=int, default=20, help="steps of the same-batch check (0: none)"
    )
    parser.add_argument(
        "--augmentation-samples", type=int, default=800, help="crops compared per side (0: none)"
    )
    parser.add_argument(
        "--checks-only", action="store_true", help="the lockstep and augmentation checks only"
    )
    parser.add_argument(
        "--coupled",
        action="store_true",
        help="instead of the two independent trainings, one coupled training: ir_d2's trainer "
        "from the official initial weights, the official code and its control stepped on the "
        "same batches, all three scored (bench_parity_coupled.{json,md,png})",
    )
    parser.add_argument("--output", default="output/bench_parity")
    parser.add_argument("--resume", action="store_true", help="keep a side already run alike")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="run each seed into <output>/seed<N> (the checks with the first only), then set "
        "them side by side in <output>/bench_parity_seeds.{json,md,png}",
    )
    parser.add_argument(
        "--summarise",
        nargs="+",
        default=None,
        metavar="REPORT",
        help="no training: set the parity reports (folders holding bench_parity.json) of "
        "several seeds side by side in <output>",
    )
    args = parser.parse_args(argv)
    out = Path(args.output)
    if args.summarise:
        return summarise(args.summarise, out)
    if not args.official:
        parser.error("--official is needed unless --summarise")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch finds no CUDA device here")
    use_datasets(args.datasets)
    setup_logger(name="ir_d2")
    nudt = Path(os.environ.get("IR_D2_DATASETS", "datasets")).resolve() / "nudt-sirst"
    if not (nudt / "50_50" / "test.txt").is_file():
        raise CommandLineError(f"NUDT-SIRST not found at {nudt} (set --datasets or IR_D2_DATASETS)")
    flavour = official_flavour(Path(args.official).expanduser().resolve())
    if not args.seeds:
        return run_seed(args, out, nudt, flavour)
    if args.checks_only:
        parser.error("--checks-only runs no seed; leave --seeds out")
    folders = []
    for k, seed in enumerate(args.seeds):
        one = copy.copy(args)
        one.seed, one.output = seed, str(out / f"seed{seed}")
        if k:  # the model and data checks do not depend on the seed
            one.lockstep, one.augmentation_samples = 0, 0
        run_seed(one, Path(one.output), nudt, flavour)
        folders.append(one.output)
    return summarise(folders, out)


def run_seed(args, out: Path, nudt: Path, flavour: str) -> dict:
    """One seed: the checks, then both trainings (each kept with ``--resume``), in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    report = {"conditions": conditions(args)}
    report["lockstep"] = lockstep(args, flavour, args.lockstep) if args.lockstep else None
    report["augmentation"] = (
        augmentation_stats(args, flavour, nudt, args.augmentation_samples)
        if args.augmentation_samples
        else None
    )
    if args.checks_only:
        text = checks_markdown(report)
        write_report(out, "bench_parity_checks", TOOL, report, text)
        print(text)
        return report
    if args.coupled:
        return run_coupled(args, out, flavour, report)
    for side in SIDES:
        path = out / f"{side}.json"
        result = saved_result(path, conditions(args), args.resume)
        if result is None:
            result = (
                run_official(args, out, nudt) if side == "official" else run_ir_d2(args, flavour)
            )
            save_result(path, TOOL, conditions(args), result)
        report[side] = result
    text = markdown(report) + "\n" + checks_markdown(report)
    write_report(out, "bench_parity", TOOL, report, text, lambda p: plot(report, p))
    print(text)
    return report


def run_coupled(args, out: Path, flavour: str, checks: dict) -> dict:
    """:func:`coupled` into ``out`` (``bench_parity_coupled.{json,md,png}``, the checks' report
    beside it); with ``--resume`` a finished coupled report of the same conditions and code
    (:func:`_common.code_version`, as :func:`_common.saved_result` keeps a side) is kept."""
    path = out / "bench_parity_coupled.json"
    expected = conditions(args) | {"coupled": True}
    if args.resume and path.is_file():
        kept = json.loads(path.read_text())
        same = kept.get("conditions") == expected and kept.get("code") == code_version()
        if kept.get("tool") == TOOL and kept.get("finished") and same:
            print(f"kept {path} (--resume)")
            return kept
    report = coupled(args, flavour, out)
    text = coupled_markdown(report)
    write_report(out, "bench_parity_coupled", TOOL, report, text, lambda p: coupled_plot(report, p))
    if checks.get("lockstep") or checks.get("augmentation"):
        write_report(out, "bench_parity_checks", TOOL, checks, checks_markdown(checks))
    print(text)
    return report


if __name__ == "__main__":
    main()
