"""
Teledyne FLIR ADAS thermal sets, v1 and v2, boxes only (configs set ``MODEL.MASK_ON: False``).

Layouts, as the datasets ship them (``root`` is the folder that holds the splits):

v1 (``FLIR_ADAS_1_3``, 2018)::

    root/{train,val,video}/thermal_annotations.json   # COCO, file_name "thermal_8_bit/<frame>"
    root/{train,val,video}/thermal_8_bit/FLIR_NNNNN.jpeg
    root/{train,val,video}/thermal_16_bit/FLIR_NNNNN.tiff   # 14-bit radiometric in 16-bit TIFF

v2 (``FLIR_ADAS_v2``, 2022)::

    root/images_thermal_{train,val}/coco.json         # COCO; file_name "data/<frame>.jpg"
    root/images_thermal_{train,val}/data/*.jpg
    root/images_thermal_{train,val}/analyticsData/*.tiff   # 16-bit raw thermal
    root/video_thermal_test/{coco.json,data/,analyticsData/}

Categories are matched by name: v1 has person, bicycle, car, dog, other vehicle; v2 has 15
(person, bike, car, motor, bus, ...; "bike" is v2's name for bicycle). The default keeps person,
bicycle, car (the FLIR baselines' three), mapping "bike" to "bicycle". FLIR's "segmentation" fields
are box polygons, not masks, and are dropped. With ``sixteen_bit=True`` the records point at the
16-bit frames instead (normalised to 8 bits by ``INPUT.IR.NORMALIZE`` in the mappers).
"""

import os
from typing import Dict, List, Mapping, Optional, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog

from .coco import load_ir_coco_json, thing_colors

__all__ = ["FLIR_CLASSES", "FLIR_CATEGORY_MAP", "flir_paths", "load_flir", "register_flir"]

FLIR_CLASSES = ("person", "bicycle", "car")
# json category name (lower case) -> thing class
FLIR_CATEGORY_MAP = {"bike": "bicycle", "bicycles": "bicycle", "people": "person", "cars": "car"}

_V1_SPLITS = {"train": "train", "val": "val", "video": "video", "test": "video"}
_V2_SPLITS = {
    "train": "images_thermal_train",
    "val": "images_thermal_val",
    "video": "video_thermal_test",
    "test": "video_thermal_test",
}


def _version(version) -> int:
    v = str(version).lower().lstrip("v")
    if v not in ("1", "2"):
        raise ValueError(f"FLIR ADAS version {version!r}: expected 1 or 2 ('v1' / 'v2')")
    return int(v)


def flir_paths(root: str, version, split: str = "train") -> Dict[str, str]:
    """``json_file``, ``image_root`` and ``sixteen_bit_dir`` of one FLIR split."""
    v = _version(version)
    splits = _V1_SPLITS if v == 1 else _V2_SPLITS
    if split not in splits:
        raise ValueError(f"FLIR v{v} split {split!r}: expected one of {sorted(splits)}")
    image_root = os.path.join(root, splits[split])
    if v == 1:
        json_file = os.path.join(image_root, "thermal_annotations.json")
        sixteen = os.path.join(image_root, "thermal_16_bit")
    else:
        json_file = os.path.join(image_root, "coco.json")
        sixteen = os.path.join(image_root, "analyticsData")
    return {"json_file": json_file, "image_root": image_root, "sixteen_bit_dir": sixteen}


def load_flir(
    root: str,
    version,
    split: str = "train",
    *,
    dataset_name: Optional[str] = None,
    thing_classes: Sequence[str] = FLIR_CLASSES,
    category_map: Optional[Mapping[str, str]] = None,
    sixteen_bit: bool = False,
) -> List[Dict]:
    """Records of one FLIR split (boxes only, categories filtered and mapped by name)."""
    paths = flir_paths(root, version, split)
    cmap = dict(FLIR_CATEGORY_MAP if category_map is None else category_map)
    dicts = load_ir_coco_json(
        paths["json_file"],
        paths["image_root"],
        dataset_name,
        tuple(thing_classes),
        category_map=cmap,
        keep_segmentation=False,
    )
    if sixteen_bit:
        for record in dicts:
            stem = os.path.splitext(os.path.basename(record["file_name"]))[0]
            record["file_name"] = os.path.join(paths["sixteen_bit_dir"], stem + ".tiff")
    return dicts


def register_flir(
    name: str,
    root: str,
    version,
    split: str = "train",
    *,
    thing_classes: Sequence[str] = FLIR_CLASSES,
    category_map: Optional[Mapping[str, str]] = None,
    sixteen_bit: bool = False,
) -> None:
    """
    Register one split of FLIR ADAS ``version`` 1 or 2 under ``root`` as ``name`` (evaluator
    "coco", boxes only). ``split``: "train", "val" or "video" ("test" is an alias of "video").
    ``thing_classes`` keeps those categories, in that order; ``category_map`` maps json names to
    them (default :data:`FLIR_CATEGORY_MAP`). Registration reads no file.
    """
    _version(version)
    thing_classes = tuple(thing_classes)
    DatasetCatalog.register(
        name,
        lambda: load_flir(
            root,
            version,
            split,
            dataset_name=name,
            thing_classes=thing_classes,
            category_map=category_map,
            sixteen_bit=sixteen_bit,
        ),
    )
    set_flir_metadata(name, thing_classes)


def set_flir_metadata(name: str, thing_classes: Sequence[str] = FLIR_CLASSES) -> None:
    MetadataCatalog.get(name).set(
        evaluator_type="coco",
        thing_classes=list(thing_classes),
        thing_colors=thing_colors(thing_classes),
        boxes_only=True,
    )
