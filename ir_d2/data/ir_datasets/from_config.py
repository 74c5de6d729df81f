"""
Datasets registered from a config, so that a YAML file alone trains on one's own data.

``DATASETS.IR_REGISTER`` maps dataset names to what to register (relative paths are taken from the
working directory; ``~`` and ``$VARS`` are expanded; the config keeps the absolute paths, so the
``config.yaml`` that training writes works from anywhere)::

    DATASETS:
      TRAIN: ("my_ir_train",)
      TEST: ("my_targets_test_first20",)
      IR_REGISTER:
        my_ir_train:                # a COCO instances json
          TYPE: "coco"
          JSON: "data/ann/train.json"
          IMAGES: "data/images"     # the json's file_name entries are relative to this
          CLASSES: []               # [] = the json's own categories; else kept by name, in order
        my_targets_test:            # small-target image + mask folders (SIRST-like)
          TYPE: "irstd"
          IMAGES: "data/imgs"
          MASKS: "data/masks"
          SPLIT: "data/test.txt"    # "" = every image of IMAGES
          MASK_SUFFIX: ""           # mask name = image name + suffix
          INSTANCES: False          # True: each 8-connected target an instance ("target")
        my_targets_test_first20:    # the first images of another registered set
          TYPE: "subset"
          DATASET: "my_targets_test"
          FIRST: 20

``register_datasets_from_config(cfg)`` (run by ir_d2's ``setup_cfg``, so by train_net, the demo and
the other tools) registers them and sets the mask threshold of every mask-derived instance set to
``INPUT.IR.MASK_THRESHOLD``. A key that is unknown, missing or of the wrong kind, a path that does
not exist, or a name that is already registered otherwise is an error naming the key.
"""

import os
from typing import Dict, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog

from .coco import register_ir_coco_instances
from .irstd import register_irstd, set_instance_mask_threshold

__all__ = ["register_datasets_from_config", "register_subset", "REGISTER_TYPES"]

# TYPE -> {key: (default or None if required, python type, is a path)}
REGISTER_TYPES: Dict[str, Dict[str, Tuple]] = {
    "coco": {"JSON": (None, str, True), "IMAGES": (None, str, True), "CLASSES": ([], list, False)},
    "irstd": {
        "IMAGES": (None, str, True),
        "MASKS": (None, str, True),
        "SPLIT": ("", str, True),
        "MASK_SUFFIX": ("", str, False),
        "INSTANCES": (False, bool, False),
    },
    "subset": {"DATASET": (None, str, False), "FIRST": (None, int, False)},
}

# name -> the spec it was registered with from a config (registering it again is then harmless)
_FROM_CONFIG: Dict[str, tuple] = {}


def _spec(name: str, entry) -> dict:
    where = f"DATASETS.IR_REGISTER.{name}"
    if not hasattr(entry, "items"):
        raise ValueError(f"{where} must be a mapping with a TYPE, got {entry!r}")
    kind = str(entry.get("TYPE", "")).lower()
    if kind not in REGISTER_TYPES:
        raise ValueError(f"{where}.TYPE must be one of {sorted(REGISTER_TYPES)}, got {kind!r}")
    keys = REGISTER_TYPES[kind]
    unknown = sorted(set(entry) - set(keys) - {"TYPE"})
    if unknown:
        raise ValueError(
            f"{where}: unknown keys {unknown} for TYPE {kind!r}; known: {sorted(keys)}"
        )
    spec = {"TYPE": kind}
    for key, (default, kind_of, is_path) in keys.items():
        value = entry.get(key, default)
        if value is None:
            raise ValueError(f"{where}.{key} is missing (TYPE {kind!r} needs {sorted(keys)})")
        if kind_of is list and isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, kind_of) or (kind_of is int and isinstance(value, bool)):
            raise ValueError(f"{where}.{key} must be a {kind_of.__name__}, got {value!r}")
        if is_path and value:
            value = os.path.abspath(os.path.expandvars(os.path.expanduser(value)))
            if not os.path.exists(value):
                raise FileNotFoundError(f"{where}.{key}: {value} does not exist")
        spec[key] = value
    if kind == "subset" and spec["FIRST"] <= 0:
        raise ValueError(f"{where}.FIRST must be > 0, got {spec['FIRST']}")
    return spec


def _register(name: str, spec: dict) -> None:
    kind = spec["TYPE"]
    if kind == "coco":
        classes = spec["CLASSES"] or None
        register_ir_coco_instances(name, spec["JSON"], spec["IMAGES"], thing_classes=classes)
    elif kind == "irstd":
        register_irstd(
            name,
            spec["IMAGES"],
            spec["MASKS"],
            spec["SPLIT"] or None,
            mask_suffix=spec["MASK_SUFFIX"],
            instances=spec["INSTANCES"],
        )
    else:
        base = spec["DATASET"]
        if base not in DatasetCatalog:
            raise KeyError(
                f"DATASETS.IR_REGISTER.{name}.DATASET: {base!r} is not a registered dataset"
            )
        register_subset(name, base, spec["FIRST"])


def register_subset(name: str, base: str, first: int) -> None:
    """Register ``name`` as the first ``first`` records of the registered dataset ``base``, with
    ``base``'s metadata (its evaluator type among them); the ``"subset"`` TYPE."""

    def load():
        records = DatasetCatalog.get(base)[:first]
        _inherit_metadata(name, base)  # what loading ``base`` set (a json's own thing_classes)
        return records

    DatasetCatalog.register(name, load)
    _inherit_metadata(name, base)


def _inherit_metadata(name: str, base: str) -> None:
    """Set on ``name`` the metadata of ``base`` that ``name`` does not have yet."""
    meta, own = MetadataCatalog.get(name), MetadataCatalog.get(name).as_dict()
    for key, value in MetadataCatalog.get(base).as_dict().items():
        if key != "name" and key not in own:
            meta.set(**{key: value})


def register_datasets_from_config(cfg) -> None:
    """
    Register the sets of ``cfg.DATASETS.IR_REGISTER`` (in order, so a "subset" may name a set
    registered above it) and set the mask threshold of mask-derived instance sets to
    ``cfg.INPUT.IR.MASK_THRESHOLD``. Paths are written back into ``cfg`` as absolute paths, so
    ``cfg`` must not be frozen when it registers anything.
    """
    set_instance_mask_threshold(cfg.INPUT.IR.MASK_THRESHOLD)
    for name, entry in cfg.DATASETS.IR_REGISTER.items():
        spec = _spec(name, entry)
        for key, value in spec.items():
            if entry.get(key) != value and key in entry:
                entry[key] = value
        frozen = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in spec.items()))
        if _FROM_CONFIG.get(name) == frozen and name in DatasetCatalog:
            continue  # registered alike before (and not removed since)
        if name in DatasetCatalog:
            if name not in _FROM_CONFIG:
                raise ValueError(
                    f"DATASETS.IR_REGISTER.{name}: a dataset named {name!r} is already registered "
                    "(a built-in or one registered in Python); choose another name"
                )
            DatasetCatalog.remove(name)  # registered from another config in this process
            MetadataCatalog.remove(name)
        elif name in MetadataCatalog.list():  # its dataset was removed, its metadata not
            MetadataCatalog.remove(name)
        _register(name, spec)
        _FROM_CONFIG[name] = frozen
