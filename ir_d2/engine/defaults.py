"""Config set-up and weight loading shared by the command-line tools."""

import difflib
import logging
import os
import re
import sys

import torch
from detectron2.engine import default_setup
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager
from detectron2.utils.logger import setup_logger

from ir_d2.config import get_ir_cfg
from ir_d2.data.ir_datasets.from_config import register_datasets_from_config
from ir_d2.utils.config_paths import CONFIG_PREFIX, get_config_file

__all__ = [
    "setup_cfg",
    "resolve_config_file",
    "check_cfg",
    "WeightsUnavailableError",
    "ensure_weights",
    "weights_problem",
]

logger = logging.getLogger(__name__)


class WeightsUnavailableError(FileNotFoundError):
    """``MODEL.WEIGHTS`` names a file that cannot be read or downloaded; the message is one line
    telling what to set (the tools end with it, :func:`ir_d2.utils.cli.one_line_errors`)."""


def resolve_config_file(config_file: str) -> str:
    """``config_file`` when it is a file, else the model-zoo config of that name
    (``IRSTD/...yaml`` or ``ir_d2://IRSTD/...yaml``); FileNotFoundError naming it otherwise."""
    config_file = os.fspath(config_file)
    if not config_file.startswith(CONFIG_PREFIX) and os.path.isfile(config_file):
        return config_file
    try:
        return get_config_file(config_file)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"config file {config_file!r} does not exist, nor is it a model-zoo config "
            "(python -m ir_d2.model_zoo lists them)"
        ) from None


def _use_cpu_without_cuda(cfg) -> str:
    """``MODEL.DEVICE`` "cuda" (detectron2's default) on a machine without CUDA becomes "cpu";
    returns the line that says so, or ""."""
    if str(cfg.MODEL.DEVICE).startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
        note = "MODEL.DEVICE is 'cuda' but this machine has no CUDA device: running on the CPU"
        if cfg.SOLVER.AMP.ENABLED:  # detectron2's AMPTrainer needs CUDA
            cfg.SOLVER.AMP.ENABLED = False
            note += " in float32 (SOLVER.AMP.ENABLED set to False)"
        return note
    return ""


#: norm keys whose "SyncBN" (torch's SyncBatchNorm) refuses CPU tensors once processes sync
_NORM_KEYS = (
    "MODEL.IRSTD.NORM",
    "MODEL.BNSA.NORM",
    "MODEL.RESNETS.NORM",
    "MODEL.FPN.NORM",
    "MODEL.ROI_BOX_HEAD.NORM",
    "MODEL.ROI_MASK_HEAD.NORM",
)


def _check_device(cfg) -> None:
    """What needs CUDA, refused on the CPU with the key to change."""
    if str(cfg.MODEL.DEVICE).startswith("cuda"):
        return
    if cfg.SOLVER.AMP.ENABLED:
        raise ValueError(
            f"SOLVER.AMP.ENABLED is True but MODEL.DEVICE is {cfg.MODEL.DEVICE!r}: detectron2's "
            "mixed-precision trainer needs CUDA; set SOLVER.AMP.ENABLED False on the CPU"
        )
    if comm.get_world_size() > 1:
        for key in _NORM_KEYS:
            node = cfg
            for part in key.split("."):
                node = node[part]
            if node == "SyncBN":
                raise ValueError(
                    f"{key} is 'SyncBN' (torch's SyncBatchNorm, CUDA only) but "
                    f"{comm.get_world_size()} CPU processes train: use 'naiveSyncBN' "
                    "(detectron2's, synchronises CPU processes too)"
                )


def _check_device_name(cfg) -> None:
    """``MODEL.DEVICE`` must be a device torch knows ("gpu" is not)."""
    try:
        torch.device(cfg.MODEL.DEVICE)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"MODEL.DEVICE {cfg.MODEL.DEVICE!r} is not a device torch knows: use 'cpu', 'cuda' or "
            "'cuda:N'"
        ) from None


def check_cfg(cfg) -> None:
    """Values that detectron2 would only trip over deep in a run: a ValueError naming the key."""
    _check_device_name(cfg)
    positive = {
        "SOLVER.IMS_PER_BATCH": cfg.SOLVER.IMS_PER_BATCH,
        "SOLVER.CHECKPOINT_PERIOD": cfg.SOLVER.CHECKPOINT_PERIOD,
    }
    for key, value in positive.items():
        if not value > 0:
            raise ValueError(f"{key} must be > 0, got {value}")
    non_negative = {
        "SOLVER.MAX_ITER": cfg.SOLVER.MAX_ITER,
        "SOLVER.BASE_LR": cfg.SOLVER.BASE_LR,
        "DATALOADER.NUM_WORKERS": cfg.DATALOADER.NUM_WORKERS,
        "TEST.EVAL_PERIOD": cfg.TEST.EVAL_PERIOD,
    }
    for key, value in non_negative.items():
        if value < 0:
            raise ValueError(f"{key} must be >= 0, got {value}")
    _check_device(cfg)


def setup_cfg(config_file, opts=(), args=None, freeze=True):
    """
    detectron2's default config with the ir_d2 keys (:func:`ir_d2.config.get_ir_cfg`), merged from
    ``config_file`` (a file or a model-zoo path) and ``opts`` (``KEY VALUE`` pairs), then:

    - ``MODEL.DEVICE`` "cuda" runs on the CPU, with one log line, where there is no CUDA;
    - values that would fail deep in a run are refused, naming the key (:func:`check_cfg`);
    - the datasets of ``DATASETS.IR_REGISTER`` are registered and ``INPUT.IR.MASK_THRESHOLD``
      applies to mask-derived instance sets (:func:`register_datasets_from_config`).

    With ``args`` (a ``default_argument_parser`` namespace) it also runs detectron2's
    ``default_setup`` (loggers, output dir, config dump, seed) and sends ir_d2's own log lines to
    the console and ``OUTPUT_DIR/log.txt`` as detectron2's.
    """
    cfg = get_ir_cfg()
    if config_file:
        config_file = resolve_config_file(config_file)
        _merge_file(cfg, config_file)
        if args is not None:
            args.config_file = config_file  # default_setup logs the file: the resolved one
    _merge_list(cfg, list(opts))
    if args is not None:  # the saved config.yaml then names this run's folder from anywhere
        cfg.OUTPUT_DIR = os.path.abspath(cfg.OUTPUT_DIR)
    note = _use_cpu_without_cuda(cfg)
    check_cfg(cfg)
    register_datasets_from_config(cfg)  # it writes absolute paths: before the config is saved
    if args is not None:
        _plain_log_files(cfg.OUTPUT_DIR)
        default_setup(cfg, args)
        _setup_ir_logger(cfg.OUTPUT_DIR)
    if note:
        logger.warning(note)
    if freeze:
        cfg.freeze()
    return cfg


def _config_keys(node, prefix: str = ""):
    """Every full key of a config (``SOLVER.MAX_ITER``), for suggestions."""
    for key, value in node.items():
        full = f"{prefix}{key}"
        yield full
        if isinstance(value, dict):
            yield from _config_keys(value, full + ".")


def unknown_key_message(cfg, key: str, where: str) -> str:
    """One line naming an unknown config key, where it was given and the closest known key."""
    close = difflib.get_close_matches(key, list(_config_keys(cfg)), n=1, cutoff=0.8)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"{where}: unknown config key {key}{hint}"


def _merge_file(cfg, config_file: str) -> None:
    """``cfg.merge_from_file``; an unknown key in the file is a ValueError naming it and the
    file (yacs raises ``KeyError('Non-existent config key: ...')``)."""
    try:
        cfg.merge_from_file(config_file)
    except KeyError as e:
        text = str(e.args[0]) if e.args else ""
        prefix = "Non-existent config key: "
        if not text.startswith(prefix):
            raise
        raise ValueError(unknown_key_message(cfg, text[len(prefix) :], config_file)) from None


def _merge_list(cfg, opts) -> None:
    """``cfg.merge_from_list``; an unknown key among the overrides is a ValueError naming it
    (yacs asserts it deep inside, with a traceback)."""
    for key in opts[0::2]:
        node = cfg
        for part in str(key).split("."):
            if not isinstance(node, dict) or part not in node:
                raise ValueError(unknown_key_message(cfg, str(key), "config override"))
            node = node[part]
    cfg.merge_from_list(opts)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _PlainFormatter(logging.Formatter):
    """A file handler's formatter without ANSI colour codes (detectron2's ``default_setup`` logs
    the config highlighted by pygments, and its file handler would write the codes)."""

    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self.inner = inner

    def format(self, record):
        return _ANSI.sub("", self.inner.format(record))


def _plain_log_files(output_dir) -> None:
    """
    Give the file handlers of the loggers ``default_setup`` sets up (detectron2's, fvcore's)
    formatters without colour codes, before it logs: ``setup_logger`` is cached on its
    arguments, so the calls below create the handlers ``default_setup``'s identical calls get.
    """
    rank = comm.get_rank()
    if comm.is_main_process() and output_dir:
        PathManager.mkdirs(output_dir)
    loggers = [setup_logger(output_dir, distributed_rank=rank, name="fvcore")]
    loggers.append(setup_logger(output_dir, distributed_rank=rank))  # default_setup's calls
    for lg in loggers:
        for handler in lg.handlers:
            stream = getattr(handler, "stream", None)
            if stream not in (sys.stdout, sys.stderr) and handler.formatter is not None:
                if not isinstance(handler.formatter, _PlainFormatter):
                    handler.setFormatter(_PlainFormatter(handler.formatter))


def _setup_ir_logger(output_dir):
    """
    Send ir_d2's log lines to ``output_dir/log.txt`` and, once only, to the console (a tool that
    set up the ``ir_d2`` console logger before, as the quickstart does, would print them twice).
    """
    ir_logger = logging.getLogger("ir_d2")
    has_console = any(
        type(h) is logging.StreamHandler and getattr(h, "stream", None) is sys.stdout
        for h in ir_logger.handlers
    )
    setup_logger(
        output_dir, distributed_rank=comm.get_rank(), name="ir_d2", configure_stdout=not has_console
    )


def ensure_weights(weights):
    """
    Check that ``MODEL.WEIGHTS`` can be read before a model loads it; on failure raise
    :class:`WeightsUnavailableError`, one line telling what to set. "" (random initialisation)
    always passes. detectron2 downloads ``detectron2://`` and ``https://`` weights on first use
    (offline machines cannot) and caches them.
    """
    problem = weights_problem(weights)
    if problem:
        raise WeightsUnavailableError(problem)


def weights_problem(weights) -> str:
    """Why ``MODEL.WEIGHTS`` cannot be read, in one line telling what to set; "" when it can
    (or is "", random initialisation)."""
    if not weights:
        return ""
    try:
        local = PathManager.get_local_path(weights)
    except Exception as e:  # URLError, OSError, HTTP errors, unknown path handlers
        reason = f"{type(e).__name__}: {e}"
    else:
        if os.path.isfile(local):
            return ""
        reason = "no such file"
    return (
        f"Cannot read MODEL.WEIGHTS {weights!r} ({reason}). "
        'Set MODEL.WEIGHTS to a local file, or to "" to start from random initialisation.'
    )
