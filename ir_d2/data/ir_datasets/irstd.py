"""
Single-frame IR small-target sets (SIRST, NUDT-SIRST, IRSTD-1k and any folder alike): an image
folder, a mask folder and a split list of names.

Split lists are read as the datasets ship them: CRLF or LF line ends, a UTF-8 BOM, names with no
extension (an extension, if present, is ignored). An image is found by its name with any image
extension; its mask by the name plus ``mask_suffix`` (SIRST: ``"_pixels0"``).

Loading reads only the split list, the folder listings and the image headers (for ``height`` and
``width``); it never decodes pixels, never fails on a bad image and never writes anything. A frame
whose image is missing or unreadable is kept, without ``height``/``width``, with one summary
warning: the mappers raise on it (naming the file and the dataset) or, with
``DATALOADER.SKIP_BAD_SAMPLES``, log, count and skip it.

Instance versions (evaluator "coco"): each 8-connected component of a mask is one instance of
class "target" (box, area, RLE segmentation; :mod:`.instances`). They read every mask once, when
the set is first loaded, thresholded at ``> 127`` (the default of ``INPUT.IR.MASK_THRESHOLD``: the
loader sees no config). A frame whose mask is unreadable, or whose mask size differs from its image
size, keeps an ``"ir_error"`` message that the mappers raise on or skip. When only the size differs
and the aspect ratios agree (``"ir_error_kind"`` "size", else "error"), its annotations come from
the mask resized (nearest) to the image; the mappers use them when
``INPUT.IR.RESIZE_MISMATCHED_MASKS`` is True.
"""

import logging
import os
from typing import Dict, List, Optional

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from ir_d2.structures.masks import IRDataError, fit_mask_to_image, size_mismatch_message

from ..io import read_image_size, read_ir_mask
from .instances import TARGET_CLASS, mask_to_coco_annotations

__all__ = [
    "IMAGE_EXTENSIONS",
    "read_split_list",
    "index_image_folder",
    "load_irstd_semantic",
    "load_irstd_instances",
    "register_irstd",
    "set_irstd_metadata",
    "set_instance_mask_threshold",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")
# colour of the "target" class in visualisations (RGB)
TARGET_COLOR = (255, 64, 0)


def read_split_list(split_file: str, dataset_name: Optional[str] = None) -> List[str]:
    """Names in a split list: one a line, CRLF/LF, BOM and blank lines tolerated, extension
    dropped."""
    if not os.path.isfile(split_file):
        raise FileNotFoundError(
            f"split list '{split_file}' of dataset '{dataset_name}' does not exist "
            "(dataset root: env IR_D2_DATASETS, else DETECTRON2_DATASETS, else ./datasets)"
        )
    with open(split_file, "rb") as f:
        text = f.read().decode("utf-8-sig")
    names = []
    for line in text.splitlines():
        name = line.strip()
        if not name:
            continue
        stem, ext = os.path.splitext(name)
        names.append(stem if ext.lower() in IMAGE_EXTENSIONS else name)
    return names


def index_image_folder(folder: str, dataset_name: Optional[str]) -> Dict[str, str]:
    """Name without extension -> file name, for the image files of ``folder``."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"folder '{folder}' of dataset '{dataset_name}' does not exist "
            "(dataset root: env IR_D2_DATASETS, else DETECTRON2_DATASETS, else ./datasets)"
        )
    index = {}
    for file_name in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(file_name)
        if ext.lower() in IMAGE_EXTENSIONS:
            # first extension in IMAGE_EXTENSIONS order wins when a name has several
            old = index.get(stem)
            if old is None or IMAGE_EXTENSIONS.index(ext.lower()) < IMAGE_EXTENSIONS.index(
                os.path.splitext(old)[1].lower()
            ):
                index[stem] = file_name
    return index


def load_irstd_semantic(
    image_dir: str,
    mask_dir: str,
    split_file: Optional[str],
    *,
    mask_suffix: str = "",
    dataset_name: Optional[str] = None,
) -> List[Dict]:
    """
    Semantic records of one split: ``file_name``, ``sem_seg_file_name``, ``height``, ``width``
    (from the image header; absent when it cannot be read), ``image_id`` (the name) and
    ``dataset_name``. ``split_file`` None (or "") takes every image of ``image_dir``, sorted by
    name. A split that lists no image (or an empty folder) raises :class:`IRDataError` naming it.
    """
    images = index_image_folder(image_dir, dataset_name)
    if split_file:
        names = read_split_list(split_file, dataset_name)
        source = f"split list '{split_file}'"
    else:
        names, source = sorted(images), f"image folder '{image_dir}'"
    if not names:
        raise IRDataError(f"dataset '{dataset_name}': {source} lists no image")
    masks = index_image_folder(mask_dir, dataset_name)
    records, unreadable = [], []
    for name in names:
        file_name = os.path.join(image_dir, images.get(name, name + ".png"))
        mask_name = name + mask_suffix
        record = {
            "file_name": file_name,
            "sem_seg_file_name": os.path.join(mask_dir, masks.get(mask_name, mask_name + ".png")),
            "image_id": name,
            "dataset_name": dataset_name,
        }
        size = read_image_size(file_name)
        if size is None:
            unreadable.append(file_name)
        else:
            record["height"], record["width"] = size
        records.append(record)
    if unreadable:
        logger.warning(
            f"dataset '{dataset_name}': {len(unreadable)} of {len(records)} images listed in "
            f"'{split_file}' are missing or unreadable (first: '{unreadable[0]}'); the mappers "
            "raise on them, or skip them with DATALOADER.SKIP_BAD_SAMPLES True"
        )
    return records


# The mask threshold of the instance sets derived from masks when a loader is given none: the
# config's INPUT.IR.MASK_THRESHOLD, set by ir_d2's tools (set_instance_mask_threshold) so that one
# threshold holds for the mappers, the evaluator and these loaders.
_INSTANCE_MASK_THRESHOLD = 127.0


def set_instance_mask_threshold(threshold: float) -> None:
    """The threshold (``INPUT.IR.MASK_THRESHOLD``) the mask-derived instance sets use from now on
    when they are loaded (``register_from_config`` sets it from the config)."""
    global _INSTANCE_MASK_THRESHOLD
    _INSTANCE_MASK_THRESHOLD = float(threshold)


def load_irstd_instances(
    image_dir: str, mask_dir: str, split_file: Optional[str], *, threshold=None, **kwargs
) -> List[Dict]:
    """
    Instance records of one split: the records of :func:`load_irstd_semantic` (the same
    arguments; ``kwargs``: its ``mask_suffix`` and ``dataset_name``) with ``sem_seg_file_name``
    replaced by ``annotations`` (one per 8-connected component, class 0 "target"), ``image_id`` an
    int (its position in the split list, for COCO evaluation) and ``file_stem`` the name. A mask
    pixel is a target when ``> threshold``; None: the config's ``INPUT.IR.MASK_THRESHOLD`` as
    ir_d2's tools set it (:func:`set_instance_mask_threshold`; 127 by default).
    """
    if threshold is None:
        threshold = _INSTANCE_MASK_THRESHOLD
    dataset_name = kwargs.get("dataset_name")
    records = load_irstd_semantic(image_dir, mask_dir, split_file, **kwargs)
    for index, record in enumerate(records):
        mask_file = record.pop("sem_seg_file_name")
        record.update(image_id=index, file_stem=record["image_id"], annotations=[])
        try:
            mask = read_ir_mask(mask_file, threshold=threshold, dataset_name=dataset_name)
        except IRDataError as e:
            record.update(ir_error=str(e), ir_error_kind="error")
            continue
        if "height" in record and mask.shape != (record["height"], record["width"]):
            names = dict(image_file=record["file_name"], mask_file=mask_file)
            image_shape = (record["height"], record["width"])
            try:  # resized here for its instances; the mappers refuse the frame unless configured
                resized = fit_mask_to_image(
                    mask, image_shape, resize=True, dataset_name=dataset_name, **names
                )
            except IRDataError as e:  # the aspect ratios differ: no option can resize it
                record.update(ir_error=str(e), ir_error_kind="error")
                continue
            message = size_mismatch_message(
                names["image_file"], image_shape, mask_file, mask.shape, dataset_name
            )
            record.update(ir_error=message, ir_error_kind="size")
            mask = resized
        for anno in mask_to_coco_annotations(mask):
            anno.update(bbox_mode=BoxMode.XYWH_ABS, category_id=0)
            record["annotations"].append(anno)
    if not any(r["annotations"] for r in records):
        logger.warning(
            f"dataset '{dataset_name}': no mask has a pixel above INPUT.IR.MASK_THRESHOLD="
            f"{threshold}, so the set has no instance (for {{0, 1}} masks set it to 0)"
        )
    return records


def set_irstd_metadata(name: str, *, instances: bool, **extra) -> None:
    """Metadata of a small-target set: evaluator "irstd" (semantic) or "coco" (instances)."""
    meta = MetadataCatalog.get(name)
    if instances:
        meta.set(
            evaluator_type="coco",
            thing_classes=[TARGET_CLASS],
            thing_colors=[TARGET_COLOR],
            **extra,
        )
    else:
        meta.set(
            evaluator_type="irstd",
            stuff_classes=["background", TARGET_CLASS],
            stuff_colors=[(0, 0, 0), TARGET_COLOR],
            **extra,
        )


def register_irstd(
    name: str,
    image_dir: str,
    mask_dir: str,
    split_file: Optional[str] = None,
    *,
    mask_suffix: str = "",
    instances: bool = False,
) -> None:
    """
    Register an image folder + mask folder + split list (None: every image of the folder) as
    ``name`` (semantic, evaluator "irstd"; or, with ``instances=True``, the instance version,
    evaluator "coco", thresholded at the config's ``INPUT.IR.MASK_THRESHOLD``). Registration reads
    no file.
    """
    loader = load_irstd_instances if instances else load_irstd_semantic
    DatasetCatalog.register(
        name,
        lambda: loader(image_dir, mask_dir, split_file, mask_suffix=mask_suffix, dataset_name=name),
    )
    set_irstd_metadata(name, instances=instances)
