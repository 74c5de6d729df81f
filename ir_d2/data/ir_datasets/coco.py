"""
IR sets in COCO format: the paper's 4-class IR COCO set (Wang & Ren 2025, 640x512 gray frames) and
any COCO json whose categories are matched to ``thing_classes`` by name.

Categories are matched by name (case-insensitive, through ``category_map`` first), not by id, so
``thing_classes`` fixes the contiguous class order whatever the json's ids; categories not in
``thing_classes`` are dropped. Zero-area boxes are dropped with one warning per load.
"""

import logging
import os
from typing import Dict, List, Mapping, Optional, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json
from detectron2.structures import BoxMode

from ..io import IRDataError

__all__ = [
    "IR_COCO_CLASSES",
    "IR_COCO_COLORS",
    "load_ir_coco_json",
    "register_ir_coco_instances",
    "drop_zero_area_boxes",
]

logger = logging.getLogger(__name__)

# the paper's IR COCO set (Wang & Ren 2025)
IR_COCO_CLASSES = ("person", "car", "bicycle", "uav")
# RGB colours for visualisation, by class name (others get a default)
IR_COCO_COLORS = {
    "person": (220, 20, 60),
    "car": (0, 0, 142),
    "bicycle": (119, 11, 32),
    "uav": (0, 226, 252),
    "target": (255, 64, 0),
}


def thing_colors(thing_classes: Sequence[str]) -> List[tuple]:
    return [IR_COCO_COLORS.get(c, (255, 255, 0)) for c in thing_classes]


def drop_zero_area_boxes(dataset_dicts: List[Dict], dataset_name: Optional[str] = None) -> int:
    """
    Remove (in place) annotations whose box has zero or negative width or height, with one warning
    naming the dataset, the count and the first file; returns the count.
    """
    dropped, first = 0, None
    for record in dataset_dicts:
        kept = []
        for anno in record.get("annotations", []):
            x0, y0, x1, y1 = BoxMode.convert(
                list(anno["bbox"]), anno["bbox_mode"], BoxMode.XYXY_ABS
            )
            if x1 > x0 and y1 > y0:
                kept.append(anno)
            else:
                dropped += 1
                first = first or (record.get("file_name"), list(anno["bbox"]))
        if "annotations" in record:
            record["annotations"] = kept
    if dropped:
        logger.warning(
            f"dataset '{dataset_name}': dropped {dropped} zero-area boxes "
            f"(first: {first[1]} in '{first[0]}')"
        )
    return dropped


def load_ir_coco_json(
    json_file: str,
    image_root: str,
    dataset_name: Optional[str],
    thing_classes: Sequence[str],
    *,
    category_map: Optional[Mapping[str, str]] = None,
    keep_segmentation: bool = True,
) -> List[Dict]:
    """
    Load a COCO instances json with detectron2's ``load_coco_json`` and map its categories by name
    onto ``thing_classes`` (contiguous ids in that order). ``category_map`` maps json category names
    (lower case) to names in ``thing_classes`` (e.g. FLIR v2's ``{"bike": "bicycle"}``).
    Annotations of other categories and zero-area boxes are dropped; images are all kept (also
    those left without annotations). Records carry ``dataset_name``.
    """
    if not os.path.isfile(json_file):
        raise FileNotFoundError(
            f"annotation file '{json_file}' of dataset '{dataset_name}' does not exist"
        )
    wanted = {c.lower(): i for i, c in enumerate(thing_classes)}
    name_map = {k.lower(): v.lower() for k, v in (category_map or {}).items()}
    # load_coco_json reports the json's category names through a metadata entry: use a scratch one
    scratch = f"__ir_d2_raw_coco_categories__{dataset_name}__{id(thing_classes)}"
    try:
        dicts = load_coco_json(json_file, image_root, dataset_name=scratch)
        json_classes = list(MetadataCatalog.get(scratch).thing_classes)
    except (ValueError, KeyError, TypeError, AssertionError) as e:
        raise IRDataError(
            f"annotation file '{json_file}' of dataset '{dataset_name}' is not a valid COCO "
            f"instances json: {type(e).__name__}: {e}"
        ) from e
    finally:
        MetadataCatalog.remove(scratch)

    to_ours = {}
    for raw_id, raw_name in enumerate(json_classes):
        mapped = name_map.get(raw_name.lower(), raw_name.lower())
        if mapped in wanted:
            to_ours[raw_id] = wanted[mapped]
    found = {thing_classes[i] for i in to_ours.values()}
    missing = [c for c in thing_classes if c not in found]
    if missing:
        logger.warning(
            f"dataset '{dataset_name}': classes {missing} are not among the categories "
            f"{json_classes} of '{json_file}'"
        )
    dropped = {}
    for record in dicts:
        record["dataset_name"] = dataset_name
        kept = []
        for anno in record["annotations"]:
            if anno["category_id"] not in to_ours:
                raw_name = json_classes[anno["category_id"]]
                dropped[raw_name] = dropped.get(raw_name, 0) + 1
                continue
            anno["category_id"] = to_ours[anno["category_id"]]
            if not keep_segmentation:
                anno.pop("segmentation", None)
            kept.append(anno)
        record["annotations"] = kept
    if dropped:
        logger.info(f"dataset '{dataset_name}': dropped annotations of other classes {dropped}")
    drop_zero_area_boxes(dicts, dataset_name)
    return dicts


def register_ir_coco_instances(
    name: str,
    json_file: str,
    image_root: str,
    thing_classes: Sequence[str] = IR_COCO_CLASSES,
) -> None:
    """
    Register a COCO-format IR instance set (default: the paper's person/car/bicycle/uav set) as
    ``name``, evaluator "coco". Registration reads no file. The json's categories are matched to
    ``thing_classes`` by name. ``json_file`` is not put into the metadata, because its category ids
    may differ from the contiguous ones: COCOEvaluator converts the loaded records instead.
    """
    thing_classes = tuple(thing_classes)
    DatasetCatalog.register(
        name, lambda: load_ir_coco_json(json_file, image_root, name, thing_classes)
    )
    MetadataCatalog.get(name).set(
        image_root=image_root,
        evaluator_type="coco",
        thing_classes=list(thing_classes),
        thing_colors=thing_colors(thing_classes),
    )
