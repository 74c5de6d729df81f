"""
ir_d2: a detectron2 extension for infrared (thermal) image segmentation.

``import ir_d2`` registers every backbone, head, meta-architecture and dataset the package defines
in detectron2's registries; ``ir_d2.add_ir_config(cfg)`` adds its config keys.
"""

from . import data, engine, evaluation, modeling  # noqa: F401  (registration)
from .config import add_ir_config

__version__ = "0.1.0"
__all__ = ["add_ir_config", "__version__"]
