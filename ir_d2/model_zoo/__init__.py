"""
ir_d2's model zoo, as ``detectron2.model_zoo``: the configs of ``configs/`` ship inside the
package, so an installed ir_d2 (a wheel or ``pip install .``) finds them without the source tree.

    from ir_d2 import model_zoo

    path = model_zoo.get_config_file("IRSTD/irstd_sgem_unet_W40_1500e_nudt_sirst.yaml")
    cfg = model_zoo.get_config("IRSTD/irstd_sgem_unet_W40_1500e_nudt_sirst.yaml")

A zoo path may carry the prefix ``ir_d2://``; so may ``_BASE_`` in a user's own YAML file loaded
by ir_d2's tools (``_BASE_: "ir_d2://IRSTD/Base-IRSTD.yaml"``), and ``train_net.py
--config-file`` accepts a zoo path wherever a file of that name does not exist.
"""

import os
from pathlib import Path
from typing import List

__all__ = ["CONFIG_PREFIX", "configs_root", "get_config_file", "get_config", "list_configs"]

#: Optional prefix of a zoo path (also in ``_BASE_``).
CONFIG_PREFIX = "ir_d2://"


def configs_root() -> Path:
    """The folder of the zoo configs: inside the installed package, or, in a source checkout
    (an editable install), the repository's ``configs/``."""
    packaged = Path(__file__).resolve().parent / "configs"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "configs"


def list_configs() -> List[str]:
    """Every zoo config, as a path relative to :func:`configs_root` (POSIX separators)."""
    root = configs_root()
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.yaml"))


def get_config_file(config_path: str) -> str:
    """
    The file of a zoo config, e.g. ``"IRSTD/irstd_sgem_unet_W40_1500e_nudt_sirst.yaml"`` (with or
    without ``ir_d2://``). Raises ``FileNotFoundError`` naming it when the zoo has no such config.
    """
    relative = config_path
    if relative.startswith(CONFIG_PREFIX):
        relative = relative[len(CONFIG_PREFIX) :]
    root = configs_root()
    path = (root / relative).resolve()
    if root.resolve() not in path.parents or not path.is_file():
        raise FileNotFoundError(
            f"{config_path!r} is not in ir_d2's model zoo ({root}); e.g. "
            f"{', '.join(c for c in list_configs() if c.startswith('IRSTD/irstd_sgem'))}"
        )
    return os.fspath(path)


def get_config(config_path: str, opts=()):
    """
    A config from the zoo (detectron2's defaults with ir_d2's keys, merged from the file and the
    ``KEY VALUE`` ``opts``), not frozen; ``MODEL.DEVICE`` falls back to the CPU without CUDA.
    """
    from ir_d2.engine.defaults import setup_cfg

    return setup_cfg(get_config_file(config_path), opts, freeze=False)
