"""Meta-architectures of ir_d2, registered in detectron2's META_ARCH_REGISTRY on import."""

from .irstd_io import check_uint8_range, irstd_input, irstd_results
from .irstd_segmentor import IRSTDSegmentor

__all__ = ["IRSTDSegmentor", "check_uint8_range", "irstd_input", "irstd_results"]
