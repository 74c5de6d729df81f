"""
ir_d2's model zoo, as ``detectron2.model_zoo``: the configs of ``configs/`` ship inside the
package, so an installed ir_d2 (a wheel or ``pip install .``) finds them without the source tree.

    from ir_d2 import model_zoo

    path = model_zoo.get_config_file("IRSTD/irstd_sgem_unet_W40_1500e_nudt_sirst.yaml")
    cfg = model_zoo.get_config("IRSTD/irstd_sgem_unet_W40_1500e_nudt_sirst.yaml")

A zoo path may carry the prefix ``ir_d2://`` (resolved by the ``PathHandler`` of
:mod:`ir_d2.utils.config_paths`, as detectron2 resolves ``detectron2://``); so may ``_BASE_`` in a
user's own YAML file loaded by ir_d2's tools (``_BASE_: "ir_d2://IRSTD/Base-IRSTD.yaml"``), and
``train_net.py --config-file`` accepts a zoo path wherever a file of that name does not exist.
"""

from ir_d2.engine.defaults import setup_cfg
from ir_d2.utils.config_paths import CONFIG_PREFIX, configs_root, get_config_file, list_configs

__all__ = ["CONFIG_PREFIX", "configs_root", "get_config_file", "get_config", "list_configs"]


def get_config(config_path: str, opts=()):
    """
    A config from the zoo (detectron2's defaults with ir_d2's keys, merged from the file and the
    ``KEY VALUE`` ``opts``), not frozen; ``MODEL.DEVICE`` falls back to the CPU without CUDA.
    """
    return setup_cfg(get_config_file(config_path), opts, freeze=False)
