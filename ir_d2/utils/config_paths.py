"""
The ``ir_d2://`` prefix of model-zoo configs, resolved as detectron2 resolves ``detectron2://``
(:mod:`detectron2.utils.file_io`): a :class:`~iopath.common.file_io.PathHandler` registered with
detectron2's ``PathManager`` when this module is imported, so ``PathManager.open``,
``PathManager.isfile`` and ``CfgNode.merge_from_file`` take ``ir_d2://IRSTD/...yaml`` as they take
a local path. The configs of ``configs/`` ship inside the package (``ir_d2/model_zoo/configs``).
"""

import os
from pathlib import Path
from typing import List

from detectron2.utils.file_io import PathManager
from iopath.common.file_io import PathHandler

__all__ = [
    "CONFIG_PREFIX",
    "IRConfigHandler",
    "PathManager",
    "configs_root",
    "get_config_file",
    "list_configs",
]

#: Optional prefix of a zoo path (also in ``_BASE_``).
CONFIG_PREFIX = "ir_d2://"


def configs_root() -> Path:
    """The folder of the zoo configs: inside the installed package, or, in a source checkout
    (an editable install), the repository's ``configs/``."""
    package = Path(__file__).resolve().parents[1]
    packaged = package / "model_zoo" / "configs"
    if packaged.is_dir():
        return packaged
    return package.parent / "configs"


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


class IRConfigHandler(PathHandler):
    """Resolves ``ir_d2://NAME`` to the zoo config ``NAME`` (:func:`get_config_file`)."""

    PREFIX = CONFIG_PREFIX

    def _get_supported_prefixes(self):
        return [self.PREFIX]

    def _get_local_path(self, path, **kwargs):
        return get_config_file(path)

    def _open(self, path, mode="r", **kwargs):
        return PathManager.open(get_config_file(path), mode, **kwargs)

    def _exists(self, path, **kwargs):
        return self._isfile(path)

    def _isfile(self, path, **kwargs):
        try:
            get_config_file(path)
        except FileNotFoundError:
            return False
        return True


PathManager.register_handler(IRConfigHandler())
