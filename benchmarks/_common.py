"""Helpers shared by the benchmark scripts (no timing asserts: they print figures)."""

from pathlib import Path

import torch

from ir_d2.utils.timing import count_parameters, time_call  # noqa: F401  (re-exported)

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = REPO_ROOT / "configs"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


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
