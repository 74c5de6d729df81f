"""
Infrared data: readers, datasets (registered on import, reading no file) and mappers.
"""

from . import ir_datasets  # noqa: F401  (registers the built-in IR datasets)
from .augmentation import build_ir_augmentation, build_sirst5k_augmentation  # noqa: F401
from .build import IRMapDataset, build_ir_test_loader, build_ir_train_loader  # noqa: F401
from .dataset_mapper import IRDatasetMapper, IRSTDDatasetMapper, build_ir_mapper  # noqa: F401
from .io import (  # noqa: F401
    IRDataError,
    normalize_to_uint8,
    read_ir_image,
    read_ir_mask,
    to_bgr_uint8,
)
from .ir_datasets import (  # noqa: F401
    FLIR_CLASSES,
    IR_COCO_CLASSES,
    build_synthetic_set,
    datasets_root,
    load_flir,
    load_ir_coco_json,
    load_irstd_instances,
    load_irstd_semantic,
    mask_to_coco_annotations,
    masks_to_coco_dict,
    register_datasets_from_config,
    register_flir,
    register_ir_coco_instances,
    register_irstd,
    register_subset,
)
from .reader import IRReaderSettings  # noqa: F401
from .sirst5k import NoiseBank, SIRST5KAugmentation  # noqa: F401
from .synthesis import n2n_displace, negative_augment, sample_noise_patches  # noqa: F401
