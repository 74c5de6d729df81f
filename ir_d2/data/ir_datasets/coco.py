"""
IR sets in COCO format: the paper's 4-class IR COCO set (Wang & Ren 2025, 640x512 gray frames) and
any COCO json whose categories are matched to ``thing_classes`` by name.

Categories are matched by name (case-insensitive, through ``category_map`` first), not by id, so
``thing_classes`` fixes the contiguous class order whatever the json's ids; categories not in
``thing_classes`` are dropped. Zero-area boxes are dropped with one warning per load.
"""

import logging
import math
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


def _check_boxes(dicts: List[Dict], json_file: str, dataset_name: Optional[str]) -> None:
    """Every annotation's ``bbox`` is 4 finite numbers, else IRDataError naming the json and the
    annotation id (detectron2 would fail later, inside BoxMode, naming neither)."""
    for record in dicts:
        for anno in record["annotations"]:
            box = anno.get("bbox")
            ok = isinstance(box, (list, tuple)) and len(box) == 4
            ok = ok and all(isinstance(v, (int, float)) and math.isfinite(v) for v in box)
            if not ok:
                raise IRDataError(
                    f"annotation file '{json_file}' of dataset '{dataset_name}': annotation id "
                    f"{anno.get('id')} (image '{record.get('file_name')}') has bbox {box!r}; "
                    "COCO boxes are 4 numbers [x, y, width, height]"
                )


def load_ir_coco_json(
    json_file: str,
    image_root: str,
    dataset_name: Optional[str],
    thing_classes: Optional[Sequence[str]] = None,
    *,
    category_map: Optional[Mapping[str, str]] = None,
    keep_segmentation: bool = True,
) -> List[Dict]:
    """
    Load a COCO instances json with detectron2's ``load_coco_json`` and map its categories by name
    onto ``thing_classes`` (contiguous ids in that order; None: the json's own categories, in the
    order of their ids, set as the dataset's ``thing_classes`` metadata). ``category_map`` maps
    json category names (lower case) to names in ``thing_classes`` (e.g. FLIR v2's
    ``{"bike": "bicycle"}``). Annotations of other categories and zero-area boxes are dropped;
    images are all kept (also those left without annotations). Records carry ``dataset_name``.

    Raises:
        FileNotFoundError: no such json.
        IRDataError: not a COCO instances json, no image in it, or an annotation whose bbox is not
            4 numbers (naming the json and the annotation id).
    """
    if not os.path.isfile(json_file):
        raise FileNotFoundError(
            f"annotation file '{json_file}' of dataset '{dataset_name}' does not exist"
        )
    name_map = {k.lower(): v.lower() for k, v in (category_map or {}).items()}
    # load_coco_json reports the json's category names through a metadata entry: use a scratch one
    scratch = f"__ir_d2_raw_coco_categories__{dataset_name}__{id(json_file)}"
    try:
        dicts = load_coco_json(
            json_file, image_root, dataset_name=scratch, extra_annotation_keys=["id"]
        )
        json_classes = list(MetadataCatalog.get(scratch).thing_classes)
    except (ValueError, KeyError, TypeError, AssertionError) as e:
        raise IRDataError(
            f"annotation file '{json_file}' of dataset '{dataset_name}' is not a valid COCO "
            f"instances json: {type(e).__name__}: {e}"
        ) from e
    finally:
        MetadataCatalog.remove(scratch)
    if not dicts:
        raise IRDataError(f"annotation file '{json_file}' of dataset '{dataset_name}' has no image")
    _check_boxes(dicts, json_file, dataset_name)
    if thing_classes is None:
        thing_classes = json_classes
        if dataset_name:
            MetadataCatalog.get(dataset_name).set(
                thing_classes=list(thing_classes), thing_colors=thing_colors(thing_classes)
            )
    wanted = {c.lower(): i for i, c in enumerate(thing_classes)}

    to_ours = {}
    for raw_id, raw_name in enumerate(json_classes):
        mapped = name_map.get(raw_name.lower(), raw_name.lower())
        if mapped in wanted:
            to_ours[raw_id] = wanted[mapped]
    found = {thing_classes[i] for i in to_ours.values()}
    missing = [c for c in thing_classes if c not in found]
    if not found:
        raise IRDataError(
            f"dataset '{dataset_name}': none of the classes {list(thing_classes)} asked for "
            f"(DATASETS.IR_REGISTER.<name>.CLASSES, or thing_classes) is among the categories "
            f"{json_classes} of '{json_file}'; ask for some of those, or CLASSES [] for the "
            "json's own"
        )
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
            anno.pop("id", None)  # kept for the messages above only
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
    thing_classes: Optional[Sequence[str]] = None,
) -> None:
    """
    Register a COCO-format IR instance set as ``name``, evaluator "coco". ``thing_classes``: the
    classes to keep, matched to the json's categories by name, in this order (e.g.
    :data:`IR_COCO_CLASSES`, the paper's person / car / bicycle / uav); None takes the json's own
    categories (so ``masks_to_coco`` output registers as its one class "target"), read when the
    set is loaded (registration reads no file). ``json_file`` is not put into the metadata,
    because its category ids may differ from the contiguous ones: COCOEvaluator converts the
    loaded records instead.
    """
    classes = tuple(thing_classes) if thing_classes is not None else None
    DatasetCatalog.register(name, lambda: load_ir_coco_json(json_file, image_root, name, classes))
    meta = MetadataCatalog.get(name)
    meta.set(image_root=image_root, evaluator_type="coco")
    if classes is not None:
        meta.set(thing_classes=list(classes), thing_colors=thing_colors(classes))
