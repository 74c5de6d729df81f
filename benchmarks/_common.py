"""Helpers shared by the benchmark scripts (no timing asserts: they print figures)."""

import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = REPO_ROOT / "configs"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def ir_cfg(config_file, opts=()):
    """A CPU config with ir_d2's keys from ``configs/<config_file>``, no pretrained weights."""
    from detectron2.config import get_cfg

    from ir_d2 import add_ir_config

    cfg = get_cfg()
    add_ir_config(cfg)
    cfg.merge_from_file(str(CONFIGS / config_file))
    cfg.MODEL.DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.merge_from_list(list(opts))
    return cfg


def time_call(fn, warmup=2, repeat=5):
    """Median wall time of ``fn()`` in seconds (synchronising CUDA if used)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def n_params(module):
    """Parameters of ``module`` in millions."""
    return sum(p.numel() for p in module.parameters()) / 1e6
