"""
ir_d2: a detectron2 extension for infrared (thermal) image segmentation.

``import ir_d2`` registers every backbone, head, meta-architecture and dataset the package defines
in detectron2's registries; ``ir_d2.add_ir_config(cfg)`` adds its config keys.
"""

import warnings

# detectron2 and fvcore call torch.jit.script when they are imported, and ir_d2's TorchScript
# export and loading call torch.jit.trace / save / load, which torch >= 2.10 answers with a
# FutureWarning each time; nothing a user of ir_d2 can act on.
warnings.filterwarnings(
    "ignore", message=r"`torch\.jit\.[a-z_]+` is deprecated", category=FutureWarning
)

from . import data, engine, evaluation, modeling  # noqa: E402, F401  (registration)
from .config import add_ir_config, get_ir_cfg  # noqa: E402

__version__ = "0.1.0"
__all__ = ["add_ir_config", "get_ir_cfg", "__version__"]
