"""IR datasets. Importing this package registers the built-in sets (reading no file)."""

from . import builtin  # noqa: F401  (registration)
from .builtin import datasets_root
from .coco import (
    IR_COCO_CLASSES,
    drop_zero_area_boxes,
    load_ir_coco_json,
    register_ir_coco_instances,
)
from .flir import FLIR_CLASSES, load_flir, register_flir
from .from_config import register_datasets_from_config, register_subset
from .instances import mask_to_coco_annotations, masks_to_coco_dict
from .irstd import load_irstd_instances, load_irstd_semantic, read_split_list, register_irstd
from .synthetic import build_synthetic_set, make_synthetic_frame

__all__ = [
    "IR_COCO_CLASSES",
    "FLIR_CLASSES",
    "build_synthetic_set",
    "datasets_root",
    "drop_zero_area_boxes",
    "load_flir",
    "load_ir_coco_json",
    "load_irstd_instances",
    "load_irstd_semantic",
    "make_synthetic_frame",
    "mask_to_coco_annotations",
    "masks_to_coco_dict",
    "read_split_list",
    "register_datasets_from_config",
    "register_flir",
    "register_ir_coco_instances",
    "register_irstd",
    "register_subset",
]
