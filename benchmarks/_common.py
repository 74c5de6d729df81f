"""Helpers shared by the benchmark scripts (no timing asserts: they print figures)."""

import functools
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from detectron2.engine import HookBase

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


def cropped_frames(dataset: str, n: int, size: int, folder) -> str:
    """The name of a set of the first ``n`` frames of the semantic set ``dataset``, each cut to
    the ``size`` x ``size`` window that holds the most target pixels (the top-most, then
    left-most on a tie; a frame smaller than ``size`` is kept whole), written as PNGs under
    ``folder`` (``images/``, ``masks/``, and ``first<n>.txt`` naming them in their order: other
    crops there are not part of the set) and registered on first use. A smaller input for the
    nets the CPU needs it for, with the targets at their own resolution."""
    import cv2
    import numpy as np
    from detectron2.data import DatasetCatalog

    from ir_d2.data.ir_datasets.irstd import register_irstd

    name = f"{dataset}_first{n}_crop{size}"
    if name in DatasetCatalog:
        return name
    folder = Path(folder)
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    stems = []
    for record in DatasetCatalog.get(first_frames(dataset, n)):
        image = cv2.imread(record["file_name"], cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(record["sem_seg_file_name"], cv2.IMREAD_UNCHANGED)
        if image is None or mask is None:
            raise OSError(f"cannot read {record['file_name']} or {record['sem_seg_file_name']}")
        h, w = mask.shape[:2]
        ch, cw = min(size, h), min(size, w)
        target = (mask.reshape(h, w, -1)[..., 0] > 127).astype(np.int64)
        sums = np.pad(target.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        windows = sums[ch:, cw:] - sums[:-ch, cw:] - sums[ch:, :-cw] + sums[:-ch, :-cw]
        y, x = np.unravel_index(int(windows.argmax()), windows.shape)
        stem = str(record["image_id"])
        stems.append(stem)
        cv2.imwrite(str(folder / "images" / f"{stem}.png"), image[y : y + ch, x : x + cw])
        cv2.imwrite(str(folder / "masks" / f"{stem}.png"), mask[y : y + ch, x : x + cw])
    split = folder / f"first{n}.txt"
    split.write_text("".join(f"{stem}\n" for stem in stems))
    register_irstd(name, str(folder / "images"), str(folder / "masks"), str(split))
    return name


class _StopTraining(BaseException):
    """Ends ``TrainerBase.train`` early from a hook. A BaseException: ``train`` catches
    ``Exception`` to log a traceback, which a planned stop is not; its ``finally`` still runs
    ``after_train``."""


class _Watch(HookBase):
    """The hook of :func:`train_and_watch`; registered last, it sees each step after the others."""

    def __init__(self, every: int, evaluate, seconds: float, done):
        self.every, self.evaluate, self.seconds, self.done = every, evaluate, seconds, done
        self.curve = []

    def before_train(self):
        self._spent, self._t0, self._last = 0.0, time.perf_counter(), self.trainer.start_iter

    def after_step(self):
        trainer, finished = self.trainer, self.trainer.iter + 1
        spent = self._spent + time.perf_counter() - self._t0
        out_of_time = spent > self.seconds
        if not (finished % self.every == 0 or finished == trainer.max_iter or out_of_time):
            return
        self._spent = spent
        losses = trainer.storage.history("total_loss").values()[self._last - trainer.start_iter :]
        trainer.model.eval()
        with torch.no_grad():
            metrics = self.evaluate(trainer)
        trainer.model.train()
        self.curve.append(
            {
                "iteration": finished,
                "train_seconds": round(spent, 1),
                "train_loss": round(sum(v for v, _ in losses) / max(len(losses), 1), 4),
                **metrics,
            }
        )
        self._last, self._t0 = finished, time.perf_counter()
        if out_of_time or (self.done is not None and self.done(metrics)):
            raise _StopTraining


def train_and_watch(trainer, every: int, evaluate, seconds: float = float("inf"), done=None):
    """
    Run ``trainer`` (set up with ``resume_or_load``) by its own ``train()``, hooks and all, with
    one more hook that calls ``evaluate(trainer)`` (the model in eval mode, no gradients;
    ``trainer.iter + 1`` iterations done) after every ``every`` iterations and after the last one.
    It stops at ``trainer.max_iter``, once the training time (evaluations excluded) spends
    ``seconds``, or as soon as ``done(metrics)`` is true. Returns the curve: ``[{"iteration",
    "train_seconds", "train_loss", **metrics}, ...]``, ``train_loss`` the mean ``total_loss`` of
    the iterations since the previous point. The trainer's own EvalHook is left out (``evaluate``
    replaces it; it would score the test set once more at the end).
    """
    from detectron2.engine.hooks import EvalHook

    trainer._hooks = [h for h in trainer._hooks if not isinstance(h, EvalHook)]
    watch = _Watch(every, evaluate, seconds, done)
    trainer.register_hooks([watch])
    try:
        trainer.train()
    except _StopTraining:
        pass
    return watch.curve


def train_for(trainer, seconds: float):
    """``trainer`` run by :func:`train_and_watch` until the step that spends the wall-clock
    budget ``seconds``. Returns (iterations done, training seconds)."""
    (point,) = train_and_watch(trainer, trainer.max_iter, lambda trainer: {}, seconds)
    return point["iteration"] - trainer.start_iter, point["train_seconds"]


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


def _results_of(tool: str, *names: str):
    """``recognise`` of an :class:`~ir_d2.utils.fileio.OutputFolder` holding a benchmark's files:
    ``names`` are ``tool``'s when the first, a JSON record, names ``tool``."""

    def recognise(folder: Path):
        try:
            ours = json.loads((folder / names[0]).read_text()).get("tool") == tool
        except (OSError, ValueError, AttributeError):
            return []
        return list(names) if ours else []

    return recognise


def _output_folder(folder, tool: str, *names: str):
    """``folder`` as ``tool``'s output folder for ``names`` (the first a JSON record naming
    ``tool``): its own files there are replaced, any other file of those names is refused
    (ValueError)."""
    from ir_d2.utils.fileio import OutputFolder

    out = OutputFolder(folder, tool, recognise=_results_of(tool, *names), overwrite=True)
    out.check(names)
    return out


def save_result(path, tool: str, conditions: dict, result) -> None:
    """Save one finished piece of a benchmark (a row, a run) at ``path``, atomically: a
    half-written result never looks finished, so a killed benchmark resumes without it. A file
    at ``path`` that ``tool`` did not save is never replaced (ValueError)."""
    path = Path(path)
    folder = _output_folder(path.parent, tool, path.name)
    with folder.write(path.name) as f:
        record = {"tool": tool, "code": code_version(), "conditions": conditions}
        json.dump({**record, "result": result}, f)


def write_report(folder, stem: str, tool: str, record: dict, markdown: str, figure=None) -> None:
    """
    ``<folder>/<stem>.json`` (``record`` plus ``"tool"``) and ``<folder>/<stem>.md``, and with
    ``figure`` (a function that saves a PNG at the path it is given) ``<folder>/<stem>.png``, each
    written atomically. A report of that name not written by ``tool`` is never replaced
    (ValueError), its figure included.
    """
    json_name, md_name, png_name = f"{stem}.json", f"{stem}.md", f"{stem}.png"
    out = _output_folder(folder, tool, json_name, md_name, png_name)
    if figure is not None:  # first: a figure that fails leaves no report that looks complete
        with out.write(png_name, mode=None) as path:
            figure(path)
    with out.write(json_name) as f:
        json.dump({"tool": tool, **record}, f, indent=2)
    with out.write(md_name) as f:
        f.write(markdown)


def markdown_table(header, rows) -> str:
    """A Markdown table of ``rows`` (sequences, formatted with str) under ``header``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def measure_in_child(script: str, case: dict) -> dict:
    """``script --child <case as JSON>`` in a fresh Python process (``sys.executable``), for a
    measurement that must not share its process (peak memory, a process-wide setting): the
    child's result is its last stdout line, JSON. A failed child raises with its stderr's end."""
    cmd = [sys.executable, os.path.abspath(script), "--child", json.dumps(case)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(script).name}: case {case} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peak_rss_mib() -> float:
    """This process's peak resident set so far, MiB (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
