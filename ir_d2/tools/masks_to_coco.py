"""
Write a COCO instances json from an image folder and a mask folder: each 8-connected component of a
mask (``> THRESHOLD``) is one instance of class "target", with box, area and RLE segmentation.

    python -m ir_d2.tools.masks_to_coco IMAGES MASKS OUT.json [--split LIST] [--mask-suffix S]

A mask is found by its image's name plus the suffix (default: tried "" then "_pixels0", SIRST's).
Images without a mask are an error unless ``--allow-missing-masks`` (then they have no instance).
The json's ``file_name`` entries are relative to IMAGES; register the result with
``ir_d2.data.register_ir_coco_instances(name, OUT.json, IMAGES)`` (its class "target" is taken
from the json). A mask whose size differs from its image is an error, or, with
``--resize-mismatched`` and the same aspect ratio, resized (as the config key
``INPUT.IR.RESIZE_MISMATCHED_MASKS`` does).

Nothing is written but OUT.json, and only when complete (under a temporary name, then renamed). An
existing OUT.json is replaced only with ``--overwrite`` and only if this tool wrote it; an IMAGES
folder without images is refused.
"""

import argparse
import json
import os
import sys
from typing import List, Optional

import cv2

from ir_d2.data.io import IRDataError, read_image_size, read_ir_mask
from ir_d2.data.ir_datasets.instances import masks_to_coco_dict
from ir_d2.data.ir_datasets.irstd import (
    IMAGE_EXTENSIONS,
    aspect_ratios_agree,
    index_image_folder,
    read_split_list,
    size_mismatch_message,
)
from ir_d2.utils.fileio import atomic_write

AUTO_SUFFIXES = ("", "_pixels0")
#: The start of the ``info.description`` this tool writes (how it knows its own files).
DESCRIPTION = "ir_d2 masks_to_coco"


def build_coco(
    images: str,
    masks: str,
    *,
    split: Optional[str] = None,
    mask_suffix: Optional[str] = None,
    threshold: float = 127,
    allow_missing_masks: bool = False,
    resize_mismatched: bool = False,
) -> dict:
    """The COCO dict of the image/mask folder pair (see the module docstring)."""
    image_index = index_image_folder(images, None)
    mask_index = index_image_folder(masks, None)
    if not image_index:
        raise IRDataError(f"'{images}' holds no image ({', '.join(IMAGE_EXTENSIONS)})")
    names = read_split_list(split) if split else sorted(image_index)
    if not names:
        raise IRDataError(f"split list '{split}' lists no image")
    suffixes = AUTO_SUFFIXES if mask_suffix is None else (mask_suffix,)
    items = []
    for name in names:
        if name not in image_index:
            raise IRDataError(f"image '{name}' (from '{split}') has no file in '{images}'")
        image_file = os.path.join(images, image_index[name])
        size = read_image_size(image_file)
        if size is None:
            raise IRDataError(f"image file '{image_file}' is missing, empty or corrupt")
        mask_name = next((name + s for s in suffixes if name + s in mask_index), None)
        mask = None
        if mask_name is None:
            if not allow_missing_masks:
                raise IRDataError(
                    f"image '{image_file}' has no mask in '{masks}' (suffixes tried: "
                    f"{list(suffixes)}); use --allow-missing-masks for background-only frames"
                )
        else:
            mask_file = os.path.join(masks, mask_index[mask_name])
            mask = read_ir_mask(mask_file, threshold=threshold, threshold_name="--threshold")
            if mask.shape != size:
                if not (resize_mismatched and aspect_ratios_agree(size, mask.shape)):
                    fix = "pass --resize-mismatched to resize such masks (same aspect ratio only)"
                    raise IRDataError(
                        size_mismatch_message(image_file, size, mask_file, mask.shape, None, fix)
                    )
                mask = cv2.resize(mask, size[::-1], interpolation=cv2.INTER_NEAREST)
        items.append(
            {"file_name": image_index[name], "height": size[0], "width": size[1], "mask": mask}
        )
    return masks_to_coco_dict(items, description=f"{DESCRIPTION} {images} {masks}")


def check_output(out: str, overwrite: bool) -> None:
    """Refuse (IRDataError) an existing ``out`` unless ``overwrite`` and this tool wrote it."""
    if not os.path.exists(out):
        return
    if not overwrite:
        raise IRDataError(f"{out} exists; pass --overwrite to replace a json this tool wrote")
    try:
        with open(out) as f:
            description = json.load(f)["info"]["description"]
    except (OSError, ValueError, KeyError, TypeError):
        description = ""
    if not str(description).startswith(DESCRIPTION):
        raise IRDataError(
            f"{out} was not written by masks_to_coco: --overwrite replaces only this tool's own "
            "output; choose another file name"
        )


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ir_d2.tools.masks_to_coco",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("images", help="folder of the images")
    parser.add_argument("masks", help="folder of the target masks")
    parser.add_argument("out", help="COCO json to write")
    parser.add_argument("--split", help="split list (names, one a line) to convert; default all")
    parser.add_argument("--mask-suffix", default=None, help="mask name = image name + suffix")
    parser.add_argument("--threshold", type=float, default=127, help="foreground: value > this")
    parser.add_argument("--allow-missing-masks", action="store_true")
    parser.add_argument(
        "--resize-mismatched",
        action="store_true",
        help="resize a mask whose size differs from its image (same aspect ratio)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an OUT.json this tool wrote"
    )
    args = parser.parse_args(argv)
    try:
        check_output(args.out, args.overwrite)
        coco = build_coco(
            args.images,
            args.masks,
            split=args.split,
            mask_suffix=args.mask_suffix,
            threshold=args.threshold,
            allow_missing_masks=args.allow_missing_masks,
            resize_mismatched=args.resize_mismatched,
        )
    except (IRDataError, FileNotFoundError) as e:
        print(f"masks_to_coco: {e}", file=sys.stderr)
        return 2
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    with atomic_write(args.out) as f:
        json.dump(coco, f)
    print(f"wrote {args.out}: {len(coco['images'])} images, {len(coco['annotations'])} instances")
    return 0


if __name__ == "__main__":
    sys.exit(main())
