"""Registered on import of ir_d2.modeling."""

from .irstd_segmentor import IRSTDSegmentor

__all__ = ["IRSTDSegmentor"]
