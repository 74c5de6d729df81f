"""Helpers shared by the benchmark scripts (no timing asserts: they print figures)."""

import functools
import hashlib
import json
import os
import time
from pathlib import Path

import torch

from ir_d2.utils.timing import count_parameters, time_call  # noqa: F401  (re-exported)

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = REPO_ROOT / "configs"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


#: The nets of the papers' comparison tables, each built from its NUDT-SIRST config, with the
#: figures the papers print for it: parameters (M) and GFLOPs at 256x256 in SGEM's Table 1
#: ("sgem"), parameters in SIRST-5K's Table II ("sirst5k"), FPS on the SGEM authors' GPU.
COMPARISON_NETS = [
    (
        "SGEM U-Net",
        "IRSTD/irstd_sgem_unet_W40_1500e_nudt_sirst.yaml",
        {"sgem": (8.69, 15.92), "fps": 342},
    ),
    ("U-Net", "IRSTD/irstd_unet_W32_1500e_nudt_sirst.yaml", {}),
    ("SIRST-5K net", "IRSTD/irstd_sirst5k_net_W16_bs256-1500e_nudt_sirst.yaml", {"sirst5k": 8.79}),
    ("AFF U-Net", "IRSTD/irstd_aff_unet_W32_bs256-1500e_nudt_sirst.yaml", {}),
    (
        "DNANet",
        "IRSTD/irstd_dnanet_W16_bs16-1500e_nudt_sirst.yaml",
        {"sgem": (4.70, 14.28), "sirst5k": 4.70, "fps": 27},
    ),
    ("ACM", "IRSTD/irstd_acm_W8_bs8-300e_nudt_sirst.yaml", {"sgem": (1.54, 1.31), "sirst5k": 0.29}),
    (
        "ALCNet",
        "IRSTD/irstd_alcnet_W8_bs2-300e_nudt_sirst.yaml",
        {"sgem": (0.37, 4.34), "sirst5k": 0.38},
    ),
    ("ISNet", "IRSTD/irstd_isnet_W8_bs12-3000e_nudt_sirst.yaml", {"sgem": (1.09, 30.63)}),
    (
        "UIU-Net",
        "IRSTD/irstd_uiunet_W64_bs3-500e_nudt_sirst.yaml",
        {"sgem": (50.54, 54.50), "sirst5k": 50.54},
    ),
]
#: the paper's FPS claims (SGEM, Deng & Yang 2025): 342 against DNANet's 27, and more than 3x
#: the fastest compared method
PAPER_FPS_RATIO_DNANET = 342 / 27
PAPER_FPS_RATIO_FASTEST = 3.0


def gflops(net, x) -> float:
    """GFLOPs of ``net`` on ``x`` by fvcore (one multiply-add = one flop), warnings off."""
    from fvcore.nn import FlopCountAnalysis

    counter = FlopCountAnalysis(net, x)
    counter.unsupported_ops_warnings(False)
    counter.uncalled_modules_warnings(False)
    return counter.total() / 1e9


def ir_cfg(config_file, opts=()):
    """A config with ir_d2's keys from ``configs/<config_file>``, no pretrained weights, on the GPU
    when there is one."""
    from ir_d2.engine.defaults import setup_cfg

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return setup_cfg(
        str(CONFIGS / config_file),
        ["MODEL.DEVICE", device, "MODEL.WEIGHTS", "", *opts],
        freeze=False,
    )


def n_params(module):
    """Parameters of ``module`` in millions."""
    return count_parameters(module) / 1e6


def use_datasets(root=None) -> None:
    """Point ``IR_D2_DATASETS`` at ``root`` (else keep the environment's, else the project's
    shared data when it is there)."""
    if root:
        os.environ["IR_D2_DATASETS"] = str(root)
    elif not os.environ.get("IR_D2_DATASETS") and SHARED_DATA.is_dir():
        os.environ["IR_D2_DATASETS"] = str(SHARED_DATA)


def first_frames(dataset: str, n: int) -> str:
    """The name of a set of the first ``n`` frames of ``dataset`` (``dataset`` itself for n <= 0),
    registered on first use."""
    from detectron2.data import DatasetCatalog

    from ir_d2.data import register_subset

    if n <= 0:
        return dataset
    name = f"{dataset}_first{n}"
    if name not in DatasetCatalog:
        register_subset(name, dataset, n)
    return name


def train_for(trainer, seconds: float):
    """
    Run ``trainer`` (a detectron2 ``TrainerBase`` set up with ``resume_or_load``) as its own
    ``train()`` does, hooks and all, but stop after the step that spends the wall-clock budget.
    Returns (iterations done, seconds spent).
    """
    from detectron2.utils.events import EventStorage

    start = time.perf_counter()
    trainer.iter = trainer.start_iter
    with EventStorage(trainer.start_iter) as trainer.storage:
        trainer.before_train()
        for iteration in range(trainer.start_iter, trainer.max_iter):
            trainer.iter = iteration
            trainer.before_step()
            trainer.run_step()
            trainer.after_step()
            if time.perf_counter() - start > seconds:
                break
        trainer.iter += 1
        trainer.after_train()
    return trainer.iter - trainer.start_iter, time.perf_counter() - start


def train_and_watch(trainer, every: int, evaluate, seconds: float = float("inf"), done=None):
    """
    Run ``trainer`` (set up with ``resume_or_load``) as its own ``train()`` does, hooks and all,
    calling ``evaluate(trainer)`` (the model in eval mode, no gradients) after every ``every``
    iterations and after the last one. It stops at ``trainer.max_iter``, once the training time
    (evaluations excluded) spends ``seconds``, or as soon as ``done(metrics)`` is true. Returns the
    curve: ``[{"iteration", "train_seconds", "train_loss", **metrics}, ...]``, ``train_loss`` the
    mean ``total_loss`` of the iterations since the previous point. The trainer's own EvalHook is
    left out (``evaluate`` replaces it; it would score the test set once more at the end).
    """
    from detectron2.engine.hooks import EvalHook
    from detectron2.utils.events import EventStorage

    trainer._hooks = [h for h in trainer._hooks if not isinstance(h, EvalHook)]
    curve, spent = [], 0.0
    with EventStorage(trainer.start_iter) as trainer.storage:
        trainer.before_train()
        trainer.iter = trainer.start_iter
        while trainer.iter < trainer.max_iter:
            t0 = time.perf_counter()
            stop = min(trainer.max_iter, (trainer.iter // every + 1) * every)
            for iteration in range(trainer.iter, stop):
                trainer.iter = iteration
                trainer.before_step()
                trainer.run_step()
                trainer.after_step()
                if spent + time.perf_counter() - t0 > seconds:
                    break
            spent += time.perf_counter() - t0
            done_before = curve[-1]["iteration"] if curve else trainer.start_iter
            trainer.iter += 1
            losses = trainer.storage.history("total_loss").values()[
                done_before - trainer.start_iter :
            ]
            trainer.model.eval()
            with torch.no_grad():
                metrics = evaluate(trainer)
            trainer.model.train()
            curve.append(
                {
                    "iteration": trainer.iter,
                    "train_seconds": round(spent, 1),
                    "train_loss": round(sum(v for v, _ in losses) / max(len(losses), 1), 4),
                    **metrics,
                }
            )
            if spent > seconds or (done is not None and done(metrics)):
                break
        trainer.after_train()
    return curve


def train_briefly(config_file: str, minutes: float, output: str, name: str, opts=()):
    """
    ``config_file`` trained on the CPU for ``minutes`` (with ``opts``) into ``output``, saved as
    ``<output>/<name>.pth``; returns the config with ``MODEL.WEIGHTS`` set to it.
    """
    from ir_d2.engine.defaults import setup_cfg
    from ir_d2.engine.trainer import IRTrainer

    common = ["MODEL.DEVICE", "cpu", *opts]
    cfg = setup_cfg(
        config_file,
        [
            *common,
            "SOLVER.MAX_ITER",
            10**8,
            "SOLVER.CHECKPOINT_PERIOD",
            10**8,
            "OUTPUT_DIR",
            output,
        ],
    )
    trainer = IRTrainer(cfg)
    trainer.resume_or_load(resume=False)
    iterations, _ = train_for(trainer, minutes * 60)
    trainer.checkpointer.save(name)
    print(
        f"trained {config_file} for {iterations} iterations ({minutes} min) on {cfg.DATASETS.TRAIN}"
    )
    return setup_cfg(config_file, [*common, "MODEL.WEIGHTS", f"{output}/{name}.pth"])


def given_or_trained(config_file: str, weights: str, minutes: float, output: str, name: str):
    """The config of ``config_file`` with ``weights`` on the CPU, or, without weights, the model
    trained :func:`train_briefly` on ``sirst_train`` (tested on ``sirst_test``)."""
    from ir_d2.engine.defaults import setup_cfg

    if weights:
        return setup_cfg(config_file, ["MODEL.WEIGHTS", weights, "MODEL.DEVICE", "cpu"])
    data = ["DATASETS.TRAIN", "('sirst_train',)", "DATASETS.TEST", "('sirst_test',)"]
    return train_briefly(config_file, minutes, f"{output}/train", name, data)


@functools.lru_cache(maxsize=None)
def code_version() -> str:
    """A digest of ir_d2's code and configs (every ``ir_d2/**/*.py`` and ``configs/**/*.yaml``
    of this checkout): a saved result is resumed only by the code that made it."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha1()
    files = sorted([*root.glob("ir_d2/**/*.py"), *root.glob("configs/**/*.yaml")])
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def saved_result(path, conditions: dict, resume: bool):
    """The result an earlier run saved at ``path`` (:func:`save_result`) under the same
    ``conditions`` and with the same code (:func:`code_version`: a result of an older ir_d2
    is run again, never mixed into a table of the current one), when ``resume`` (a benchmark's
    ``--resume``); else None."""
    if not (resume and os.path.isfile(path)):
        return None
    with open(path) as f:
        saved = json.load(f)
    same = saved.get("conditions") == conditions and saved.get("code") == code_version()
    return saved["result"] if same else None


def save_result(path, tool: str, conditions: dict, result) -> None:
    """Save one finished piece of a benchmark (a row, a run) at ``path``, atomically: a
    half-written result never looks finished, so a killed benchmark resumes without it."""
    from ir_d2.utils.fileio import atomic_write

    with atomic_write(str(path)) as f:
        record = {"tool": tool, "code": code_version(), "conditions": conditions}
        json.dump({**record, "result": result}, f)


def write_report(folder, stem: str, tool: str, record: dict, markdown: str) -> None:
    """
    ``<folder>/<stem>.json`` (``record`` plus ``"tool"``) and ``<folder>/<stem>.md``, each written
    atomically. A report of that name not written by ``tool`` is never replaced (ValueError).
    """
    from ir_d2.utils.fileio import atomic_write

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    json_file, md_file = folder / f"{stem}.json", folder / f"{stem}.md"
    for path in (json_file, md_file):
        if path.exists() and not _written_by(json_file, tool):
            raise ValueError(
                f"{path} exists and was not written by {tool}: choose another --output"
            )
    with atomic_write(json_file) as f:
        json.dump({"tool": tool, **record}, f, indent=2)
    with atomic_write(md_file) as f:
        f.write(markdown)


def _written_by(json_file: Path, tool: str) -> bool:
    try:
        return json.loads(json_file.read_text()).get("tool") == tool
    except (OSError, ValueError, AttributeError):
        return False


def markdown_table(header, rows) -> str:
    """A Markdown table of ``rows`` (sequences, formatted with str) under ``header``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
