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
existing OUT.json is replaced only with ``--overwrite`` and only if this tool wrote it (its
``info.description`` says so; :class:`ir_d2.utils.fileio.OutputFolder`), never when it is one of
the inputs; an IMAGES folder without images is refused. Errors end the tool with one line.
"""

import json
import os
from pathlib import Path
from typing import List, Optional

from ir_d2.data.io import IRDataError, read_image_size, read_ir_mask
from ir_d2.data.ir_datasets.instances import masks_to_coco_dict
from ir_d2.data.ir_datasets.irstd import IMAGE_EXTENSIONS, index_image_folder, read_split_list
from ir_d2.structures.masks import RESIZE_FLAG_FIX, fit_mask_to_image
from ir_d2.utils.cli import one_line_errors, tool_parser
from ir_d2.utils.fileio import OutputFolder

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
            mask = fit_mask_to_image(
                mask,
                size,
                resize=resize_mismatched,
                image_file=image_file,
                mask_file=mask_file,
                dataset_name=None,
                fix=RESIZE_FLAG_FIX,
            )
        items.append(
            {"file_name": image_index[name], "height": size[0], "width": size[1], "mask": mask}
        )
    return masks_to_coco_dict(items, description=f"{DESCRIPTION} {images} {masks}")


def _written_here(folder: Path, name: str) -> List[str]:
    """``[name]`` when ``folder/name`` is a COCO json this tool wrote (its description says so)."""
    try:
        description = json.loads((folder / name).read_text())["info"]["description"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [name] if str(description).startswith(DESCRIPTION) else []


def output_file(out: str, overwrite: bool = False, inputs=()) -> OutputFolder:
    """
    The folder of ``out`` as this tool's :class:`OutputFolder`, checked: an existing ``out`` is
    refused (``OutputRefusedError``) unless ``overwrite`` and this tool wrote it, and when it is
    one of ``inputs``.
    """
    name = Path(out).name
    folder = OutputFolder(
        Path(out).parent,
        "ir_d2.tools.masks_to_coco",
        recognise=lambda f: _written_here(f, name),
        overwrite=overwrite,
        who="masks_to_coco",
        flag="OUT.json",
    )
    folder.check_inputs(inputs, outputs=[name])
    folder.check([name])
    return folder


def main(argv: Optional[List[str]] = None) -> dict:
    """The tool; returns the COCO dict written."""
    parser = tool_parser("ir_d2.tools.masks_to_coco", __doc__.split("\n\n")[0])
    parser.add_argument("images", help="folder of the images")
    parser.add_argument("masks", help="folder of the target masks")
    parser.add_argument("out", help="COCO json to write")
    parser.add_argument("--split", help="split list (names, one a line) to convert; default all")
    parser.add_argument("--mask-suffix", default=None, help="mask name = image name + suffix")
    parser.add_argument("--threshold", type=float, default=127, help="foreground: value > this")
    switches = {
        "--allow-missing-masks": "keep an image without a mask as a frame with no target",
        "--resize-mismatched": "resize a mask sized unlike its image (same aspect ratio)",
        "--overwrite": "replace an OUT.json this tool wrote",
    }
    for flag, text in switches.items():
        parser.add_argument(flag, action="store_true", help=text)
    args = parser.parse_args(argv)
    with one_line_errors("masks_to_coco"):
        # an image or mask named as OUT.json is refused as a file this tool did not write
        folder = output_file(args.out, args.overwrite, inputs=[args.split] if args.split else [])
        coco = build_coco(
            args.images,
            args.masks,
            split=args.split,
            mask_suffix=args.mask_suffix,
            threshold=args.threshold,
            allow_missing_masks=args.allow_missing_masks,
            resize_mismatched=args.resize_mismatched,
        )
        with folder.write(Path(args.out).name) as f:
            json.dump(coco, f)
    print(f"wrote {args.out}: {len(coco['images'])} images, {len(coco['annotations'])} instances")
    return coco


if __name__ == "__main__":
    main()
