"""
Target masks to COCO instances (NumPy / SciPy / pycocotools: no detectron2 import).

Each 8-connected component of a binary target mask is one instance of the class "target", with its
box (COCO ``[x, y, w, h]``, pixel extent), its area (pixels) and its segmentation as COCO RLE.
8-connectivity is the one the small-target metrics use (BasicIRSTD's Pd/Fa count targets as
8-connected regions), so an instance here is a target there.
"""

import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import pycocotools.mask as mask_util
from scipy import ndimage

from ir_d2.structures.masks import label_components

__all__ = ["TARGET_CLASS", "mask_to_coco_annotations", "masks_to_coco_dict"]

TARGET_CLASS = "target"


def mask_to_coco_annotations(mask: np.ndarray) -> List[Dict]:
    """
    One COCO annotation per 8-connected component of ``mask`` (HxW, non-zero = target), in the
    order of :func:`scipy.ndimage.label` (row-major first pixel). Each has ``bbox`` ``[x, y, w, h]``
    (floats, the component's pixel extent, as ``pycocotools.mask.toBbox``), ``area`` (pixels),
    ``segmentation`` (RLE with str ``counts``, JSON-ready) and ``iscrowd`` 0; no ids, no category.
    """
    labels, count = label_components(mask)
    if count == 0:
        return []
    annotations = []
    for index, sl in enumerate(ndimage.find_objects(labels), start=1):
        component = np.asfortranarray((labels == index).astype(np.uint8))
        rle = mask_util.encode(component)
        rle["counts"] = rle["counts"].decode("ascii")
        y, x = sl
        annotations.append(
            {
                "bbox": [
                    float(x.start),
                    float(y.start),
                    float(x.stop - x.start),
                    float(y.stop - y.start),
                ],
                "area": int(component.sum()),
                "segmentation": rle,
                "iscrowd": 0,
            }
        )
    return annotations


def masks_to_coco_dict(
    items: Sequence[Dict],
    *,
    categories: Optional[List[Dict]] = None,
    description: str = "ir_d2 masks_to_coco",
) -> Dict:
    """
    A COCO instances dict from ``items``: each a dict with ``file_name`` (as written into the json),
    ``height``, ``width`` and ``mask`` (HxW binary array, or None for an image without targets).
    Image ids count from 1 in the order given, annotation ids from 1; category 1 is "target".
    """
    categories = categories or [{"id": 1, "name": TARGET_CLASS, "supercategory": TARGET_CLASS}]
    images, annotations = [], []
    for image_id, item in enumerate(items, start=1):
        images.append(
            {
                "id": image_id,
                "file_name": os.fspath(item["file_name"]),
                "height": int(item["height"]),
                "width": int(item["width"]),
            }
        )
        if item.get("mask") is None:
            continue
        for anno in mask_to_coco_annotations(item["mask"]):
            anno.update(id=len(annotations) + 1, image_id=image_id, category_id=1)
            annotations.append(anno)
    return {
        "info": {"description": description},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
