"""Pure-torch layers and losses of ir_d2 (no detectron2 import)."""

from .norm import get_norm

__all__ = ["get_norm"]
