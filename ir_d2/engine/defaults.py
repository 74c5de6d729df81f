"""Config set-up and weight loading shared by the command-line tools."""

import os

from detectron2.config import get_cfg
from detectron2.engine import default_setup
from detectron2.utils.file_io import PathManager

from ir_d2.config import add_ir_config

__all__ = ["setup_cfg", "WeightsUnavailableError", "ensure_weights"]


class WeightsUnavailableError(SystemExit):
    """``MODEL.WEIGHTS`` names a file that cannot be read or downloaded (exits with one line)."""


def setup_cfg(config_file, opts=(), args=None, freeze=True):
    """
    detectron2's default config with the ir_d2 keys, merged from ``config_file`` and ``opts``
    (``KEY VALUE`` pairs). With ``args`` (a ``default_argument_parser`` namespace) it also runs
    detectron2's ``default_setup`` (logger, output dir, config dump, seed).
    """
    cfg = get_cfg()
    add_ir_config(cfg)
    if config_file:
        cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    if freeze:
        cfg.freeze()
    if args is not None:
        default_setup(cfg, args)
    return cfg


def ensure_weights(weights):
    """
    Check that ``MODEL.WEIGHTS`` can be read before a model loads it; on failure exit with one line
    telling what to set. "" (random initialisation) always passes. detectron2 downloads
    ``detectron2://`` and ``https://`` weights on first use (offline machines cannot) and caches
    them.
    """
    if not weights:
        return
    try:
        local = PathManager.get_local_path(weights)
    except Exception as e:  # URLError, OSError, HTTP errors, unknown path handlers
        reason = f"{type(e).__name__}: {e}"
    else:
        if os.path.isfile(local):
            return
        reason = "no such file"
    raise WeightsUnavailableError(
        f"Cannot read MODEL.WEIGHTS {weights!r} ({reason}). "
        'Set MODEL.WEIGHTS to a local file, or to "" to start from random initialisation.'
    )
