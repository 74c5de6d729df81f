"""
Write a COCO instances json from an image folder and a mask folder: each 8-connected component of a
mask (``> THRESHOLD``) is one instance of class "target", with box, area and RLE segmentation.

    python -m ir_d2.tools.masks_to_coco IMAGES MASKS OUT.json [--split LIST] [--mask-suffix S]

A mask is found by its image's name plus the suffix (default: tried "" then "_pixels0", SIRST's).
Images without a mask are an error unless ``--allow-missing-masks`` (then they have no instance).
The json's ``file_name`` entries are relative to IMAGES; register the result with
``ir_d2.data.register_ir_coco_instances(name, OUT.json, IMAGES, thing_classes=("target",))``.
Nothing is written but OUT.json.
"""

import argparse
import json
import os
import sys
from typing import List, Optional

from ir_d2.data.io import IRDataError, read_image_size, read_ir_mask
from ir_d2.data.ir_datasets.instances import masks_to_coco_dict
from ir_d2.data.ir_datasets.irstd import index_image_folder, read_split_list

AUTO_SUFFIXES = ("", "_pixels0")


def build_coco(
    images: str,
    masks: str,
    *,
    split: Optional[str] = None,
    mask_suffix: Optional[str] = None,
    threshold: float = 127,
    allow_missing_masks: bool = False,
) -> dict:
    """The COCO dict of the image/mask folder pair (see the module docstring)."""
    image_index = index_image_folder(images, None)
    mask_index = index_image_folder(masks, None)
    names = read_split_list(split) if split else sorted(image_index)
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
            mask = read_ir_mask(mask_file, threshold=threshold)
            if mask.shape != size:
                raise IRDataError(
                    f"mask '{mask_file}' is {mask.shape[1]}x{mask.shape[0]} but its image "
                    f"'{image_file}' is {size[1]}x{size[0]}"
                )
        items.append(
            {"file_name": image_index[name], "height": size[0], "width": size[1], "mask": mask}
        )
    return masks_to_coco_dict(items, description=f"ir_d2 masks_to_coco {images} {masks}")


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
    args = parser.parse_args(argv)
    try:
        coco = build_coco(
            args.images,
            args.masks,
            split=args.split,
            mask_suffix=args.mask_suffix,
            threshold=args.threshold,
            allow_missing_masks=args.allow_missing_masks,
        )
    except (IRDataError, FileNotFoundError) as e:
        print(f"masks_to_coco: {e}", file=sys.stderr)
        return 2
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(coco, f)
    print(f"wrote {args.out}: {len(coco['images'])} images, {len(coco['annotations'])} instances")
    return 0


if __name__ == "__main__":
    sys.exit(main())
