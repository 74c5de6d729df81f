"""
Built-in IR datasets, registered on ``import ir_d2`` without reading any file.

The root folder is read when a set is loaded (not at import): env ``IR_D2_DATASETS``, else
``DETECTRON2_DATASETS``, else ``./datasets``. Expected layout under it (as the sets ship)::

    sirst/images/Misc_N.png, sirst/masks/Misc_N_pixels0.png, sirst/50_50/{train,test}.txt,
        sirst/idx_427/{train,val,test}.txt
    nudt-sirst/images/NNNNNN.png, nudt-sirst/masks/NNNNNN.png, nudt-sirst/50_50/{train,test}.txt
    irstd-1k/images/XDUN.png, irstd-1k/masks/XDUN.png, irstd-1k/{train,test}.txt
    ir_coco/annotations/instances_{train,test}.json, ir_coco/images/
    FLIR_ADAS_1_3/{train,val,video}/...    FLIR_ADAS_v2/images_thermal_{train,val}/...

Semantic sets (evaluator "irstd") and their ``_instances`` versions (evaluator "coco"):
``sirst_{train,test}``, ``sirst_427_{train,val,test}``, ``nudt_sirst_{train,test}``,
``irstd1k_{train,test}``, ``ir_synthetic_{train,test}`` (generated into the cache on first use).
COCO-format: ``ir_coco_{train,test}``, ``flir_v1_{train,val,video}``, ``flir_v2_{train,val,video}``.
"""

import os

from detectron2.data import DatasetCatalog, MetadataCatalog

from .coco import IR_COCO_CLASSES, load_ir_coco_json, thing_colors
from .flir import FLIR_CLASSES, load_flir, set_flir_metadata
from .irstd import load_irstd_instances, load_irstd_semantic, set_irstd_metadata
from .synthetic import build_synthetic_set

__all__ = ["datasets_root", "IRSTD_SPLITS", "register_all_ir"]

# name: (folder under the root, split list, mask-name suffix)
IRSTD_SPLITS = {
    "sirst_train": ("sirst", "50_50/train.txt", "_pixels0"),
    "sirst_test": ("sirst", "50_50/test.txt", "_pixels0"),
    "sirst_427_train": ("sirst", "idx_427/train.txt", "_pixels0"),
    "sirst_427_val": ("sirst", "idx_427/val.txt", "_pixels0"),
    "sirst_427_test": ("sirst", "idx_427/test.txt", "_pixels0"),
    "nudt_sirst_train": ("nudt-sirst", "50_50/train.txt", ""),
    "nudt_sirst_test": ("nudt-sirst", "50_50/test.txt", ""),
    "irstd1k_train": ("irstd-1k", "train.txt", ""),
    "irstd1k_test": ("irstd-1k", "test.txt", ""),
}
SYNTHETIC_SPLITS = ("train", "test")
FLIR_SPLITS = {
    1: ("FLIR_ADAS_1_3", ("train", "val", "video")),
    2: ("FLIR_ADAS_v2", ("train", "val", "video")),
}


def datasets_root() -> str:
    """Env ``IR_D2_DATASETS``, else ``DETECTRON2_DATASETS``, else ``./datasets``."""
    root = os.environ.get("IR_D2_DATASETS") or os.environ.get("DETECTRON2_DATASETS") or "datasets"
    return os.path.expanduser(root)


def _load_folder(base, split_file, mask_suffix, name, instances):
    """An image folder + mask folder + split list under ``base``, as semantic or instance set."""
    loader = load_irstd_instances if instances else load_irstd_semantic
    return loader(
        os.path.join(base, "images"),
        os.path.join(base, "masks"),
        os.path.join(base, split_file),
        mask_suffix=mask_suffix,
        dataset_name=name + ("_instances" if instances else ""),
    )


def _load_irstd(name, instances):
    folder, split_file, suffix = IRSTD_SPLITS[name]
    return _load_folder(os.path.join(datasets_root(), folder), split_file, suffix, name, instances)


def _load_synthetic(split, instances):
    base = build_synthetic_set()
    return _load_folder(base, f"{split}.txt", "", f"ir_synthetic_{split}", instances)


def _load_ir_coco(split):
    base = os.path.join(datasets_root(), "ir_coco")
    return load_ir_coco_json(
        os.path.join(base, "annotations", f"instances_{split}.json"),
        os.path.join(base, "images"),
        f"ir_coco_{split}",
        IR_COCO_CLASSES,
    )


def _register(name, loader, set_metadata):
    if name in DatasetCatalog.list():  # import twice (e.g. importlib.reload): keep the first
        return
    DatasetCatalog.register(name, loader)
    set_metadata(name)


def register_all_ir() -> None:
    """Register every built-in set (reads no file)."""
    for name in IRSTD_SPLITS:
        for instances in (False, True):
            _register(
                name + ("_instances" if instances else ""),
                lambda n=name, i=instances: _load_irstd(n, i),
                lambda n, i=instances: set_irstd_metadata(n, instances=i),
            )
    for split in SYNTHETIC_SPLITS:
        for instances in (False, True):
            _register(
                f"ir_synthetic_{split}" + ("_instances" if instances else ""),
                lambda s=split, i=instances: _load_synthetic(s, i),
                lambda n, i=instances: set_irstd_metadata(n, instances=i, synthetic=True),
            )
    for split in ("train", "test"):
        _register(
            f"ir_coco_{split}",
            lambda s=split: _load_ir_coco(s),
            lambda n: MetadataCatalog.get(n).set(
                evaluator_type="coco",
                thing_classes=list(IR_COCO_CLASSES),
                thing_colors=thing_colors(IR_COCO_CLASSES),
            ),
        )
    for version, (folder, splits) in FLIR_SPLITS.items():
        for split in splits:
            name = f"flir_v{version}_{split}"
            _register(
                name,
                lambda v=version, f=folder, s=split, n=name: load_flir(
                    os.path.join(datasets_root(), f), v, s, dataset_name=n
                ),
                lambda n: set_flir_metadata(n, FLIR_CLASSES),
            )


register_all_ir()
