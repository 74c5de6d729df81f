"""
Write a SIRST-5K-style synthetic set (Lu et al. 2024, sec. III) from a registered dataset.

    python -m ir_d2.tools.synthesize_sirst5k --dataset nudt_sirst_train --out DIR \\
        [--per-image N] [--alpha A] [--seed S] [--overwrite]

The frames and masks come from detectron2's ``DatasetCatalog`` (``file_name``,
``sem_seg_file_name``). A noise bank is sampled once from all the frames (eq. 1); then each
generated frame takes a source frame (the originals in turn), a noise patch drawn at random blended
in with weight ``alpha`` (Noise2Noise displacement, eqs. 2-3), and the negative augmentation of its
targets (eq. 4) by one angle (the angles in turn). ``round(per_image * n)`` frames are generated for
``n`` originals; the default ratio 4899/663 gives, on NUDT-SIRST's 663 training frames, the paper's
set of 663 originals + 4899 generated frames.

Output, in the SIRST / NUDT-SIRST layout, registrable as a dataset::

    DIR/images/<id>.png      8-bit gray frames (originals as read, then the generated ones;
                             frames with more than 8 bits normalised as INPUT.IR.NORMALIZE)
    DIR/masks/<id>.png       8-bit masks, 0 / 255
    DIR/50_50/train.txt      the ids, one a line, no extension: originals, then generated
    DIR/synthesis.json       the arguments and counts, and the list of the set's files

Originals keep their file stem as id; generated frames are ``<source id>_g<k>``. The result is the
same for a seed (every generated frame draws from its own generator seeded by ``(seed, index)``).

Nothing of the user's is ever removed (:class:`ir_d2.utils.fileio.OutputFolder`): a non-empty DIR
is refused, and ``--overwrite`` replaces only a folder this tool wrote (its ``synthesis.json``
names this tool, and it holds nothing but the files that ``synthesis.json`` lists, or, for a set
of an older version, that its ``train.txt`` lists). The set is written into a temporary sibling
folder ``.DIR.tmp-<pid>`` and renamed to DIR at the end, so an interrupted run never looks
complete; such a folder left by a killed run is removed by the next run (or named, when it cannot
tell). Bad options or data end the tool with one line.
"""

import json
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ir_d2.data.io import read_ir_image, read_ir_mask
from ir_d2.data.sirst5k import NoiseBank
from ir_d2.data.synthesis import _patch_size, _quarter_turns, n2n_displace, negative_augment
from ir_d2.structures.masks import RESIZE_FLAG_FIX, IRDataError, fit_mask_to_image
from ir_d2.utils.cli import one_line_errors, tool_parser
from ir_d2.utils.fileio import OutputFolder

__all__ = ["main", "synthesize", "TOOL"]

#: The tool, as ``synthesis.json`` (the set's record and the manifest of its files) names it.
TOOL = "ir_d2.tools.synthesize_sirst5k"
MANIFEST = "synthesis.json"

# Generated frames per original in the paper's SIRST-5K from NUDT-SIRST: 4899 / 663.
PAPER_PER_IMAGE = 4899 / 663


def _load_dicts(dataset: str):
    from detectron2.data import DatasetCatalog

    import ir_d2  # noqa: F401  (registers the built-in datasets)

    if dataset not in DatasetCatalog.list():
        raise ValueError(
            f"dataset {dataset!r} is not registered; registered: {sorted(DatasetCatalog.list())}"
        )
    dicts = DatasetCatalog.get(dataset)
    if not dicts:
        raise IRDataError(f"dataset {dataset!r} is empty")
    for d in dicts:
        if "sem_seg_file_name" not in d:
            raise IRDataError(
                f"dataset {dataset!r}: {d.get('file_name')} has no sem_seg_file_name "
                "(a semantic IRSTD dataset is needed)"
            )
    return dicts


def _rotation_angles(angles, mode):
    """The angles generated frames cycle through: all of them for "code" (angle 0 is a flip),
    the non-zero ones for "paper" (angle 0 changes nothing); empty: N2N only."""
    if mode == "code":
        return list(angles)
    return [a for a in angles if float(a) % 360 != 0]


def _older_set(out: Path):
    """
    The files of a set an older version of this tool wrote in ``out`` (its ``synthesis.json``
    names this tool, or has the keys of the first version, but lists no files): that record,
    ``50_50/train.txt`` and the image and mask PNGs of the ids it lists. None for another folder.
    """
    try:
        meta = json.loads((out / MANIFEST).read_text())
        ids = (out / "50_50" / "train.txt").read_text().split()
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict):
        return None
    first = str(meta.get("paper", "")).startswith("Lu et al. 2024") and "originals" in meta
    if meta.get("tool") != TOOL and not first:
        return None
    return [
        MANIFEST,
        "50_50/train.txt",
        *(f"{d}/{i}.png" for d in ("images", "masks") for i in ids),
    ]


def output_folder(out, overwrite: bool = False) -> OutputFolder:
    """
    ``out`` as this tool's :class:`OutputFolder`: it must be absent or empty, or, with
    ``overwrite``, hold nothing but a set this tool wrote (the files its ``synthesis.json`` lists),
    which is then replaced. Anything else is refused (``OutputRefusedError``) and changes nothing.
    """
    folder = OutputFolder(
        out,
        TOOL,
        manifest=MANIFEST,
        recognise=_older_set,
        exclusive=True,
        overwrite=overwrite,
        who="this tool",
        flag="--out",
    )
    folder.check_replace()
    return folder


def _read_pair(d, *, normalize, mask_threshold, resize_mismatched, name):
    """One original frame (gray) and its {0, 1} mask, as the mappers read them."""
    image = read_ir_image(d["file_name"], normalize=normalize, dataset_name=name)
    image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)  # exact for replicated gray
    mask = read_ir_mask(d["sem_seg_file_name"], threshold=mask_threshold, dataset_name=name)
    mask = fit_mask_to_image(
        mask,
        image.shape,
        resize=resize_mismatched,
        image_file=d["file_name"],
        mask_file=d["sem_seg_file_name"],
        dataset_name=name,
        fix=RESIZE_FLAG_FIX,
    )
    return image, mask


def synthesize(
    dicts,
    out,
    *,
    per_image=PAPER_PER_IMAGE,
    alpha=0.1,
    seed=0,
    overwrite=False,
    grid=8,
    max_var=100.0,
    max_mean=100.0,
    patch_size=None,
    angles=(0, 90, 180, 270),
    mode="paper",
    mask_threshold=127,
    normalize="minmax",
    resize_mismatched=False,
    dataset_name="",
    progress=True,
):
    """
    Write the set for the dataset dicts ``dicts`` into ``out`` (see the module docstring).
    Returns the ids written, originals first.
    """
    output = output_folder(out, overwrite)
    if per_image < 0:
        raise ValueError(f"--per-image must be >= 0, got {per_image}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"--alpha must be in [0, 1], got {alpha}")
    try:  # before any frame is read, not at the first generated frame
        _patch_size(patch_size, mode)
        _quarter_turns(angles)
    except ValueError as e:
        raise ValueError(f"--patch-size / --angles / --mode: {e}") from None

    ids = [Path(d["file_name"]).stem for d in dicts]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise IRDataError(f"dataset {dataset_name!r}: file stems are not unique ({dup} ...)")
    n = len(dicts)
    n_gen = int(round(per_image * n))
    rot_angles = _rotation_angles(angles, mode)

    with output.staged() as tmp:
        for folder in ("images", "masks", "50_50"):
            (tmp / folder).mkdir()
        images, masks = [], []
        for d in tqdm(dicts, desc="originals", disable=not progress, file=sys.stderr):
            image, mask = _read_pair(
                d,
                normalize=normalize,
                mask_threshold=mask_threshold,
                resize_mismatched=resize_mismatched,
                name=dataset_name,
            )
            images.append(image)
            masks.append(mask)
        bank = NoiseBank.from_frames(images, grid, max_var, max_mean) if n_gen else None

        written = []
        for i in range(n):
            _write(tmp, ids[i], images[i], masks[i])
            written.append(ids[i])
        for g in tqdm(range(n_gen), desc="generated", disable=not progress, file=sys.stderr):
            src, k = g % n, g // n
            rng = np.random.default_rng([seed, g])
            image = n2n_displace(images[src], bank.sample(rng), alpha)
            mask = masks[src]
            if rot_angles:
                angle = rot_angles[k % len(rot_angles)]
                ((image, mask),) = negative_augment(image, mask, patch_size, (angle,), mode)
            name = f"{ids[src]}_g{k}"
            _write(tmp, name, image, mask)
            written.append(name)

        (tmp / "50_50" / "train.txt").write_text("".join(f"{i}\n" for i in written))
        output.info = {  # written into synthesis.json, with the list of the set's files
            "paper": "Lu et al. 2024, SIRST-5K, sec. III",
            "dataset": dataset_name,
            "originals": n,
            "generated": n_gen,
            "per_image": per_image,
            "alpha": alpha,
            "seed": seed,
            "grid": grid,
            "max_var": max_var,
            "max_mean": max_mean,
            "patch_size": patch_size,
            "angles": list(angles),
            "mode": mode,
            "resize_mismatched": resize_mismatched,
            "noise_patches": len(bank) if bank is not None else 0,
        }
    return written


def _write(root: Path, name: str, image: np.ndarray, mask: np.ndarray):
    for path, array in (
        (root / "images" / f"{name}.png", image),
        (root / "masks" / f"{name}.png", (mask > 0).astype(np.uint8) * 255),
    ):
        if not cv2.imwrite(str(path), array):
            raise OSError(f"cannot write {path}")


def get_parser():
    p = tool_parser("ir_d2.tools.synthesize_sirst5k", __doc__)
    p.add_argument(
        "--dataset", required=True, help="registered semantic dataset, e.g. nudt_sirst_train"
    )
    p.add_argument("--out", required=True, help="output folder (must be empty or absent)")
    p.add_argument(
        "--per-image",
        type=float,
        default=PAPER_PER_IMAGE,
        help="generated frames per original, may be fractional (default 4899/663, the paper's)",
    )
    p.add_argument("--alpha", type=float, default=0.1, help="N2N blend weight (eq. 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--overwrite", action="store_true", help="replace a set this tool wrote earlier in --out"
    )
    p.add_argument("--grid", type=int, default=8, help="noise regions per side (eq. 1)")
    p.add_argument("--max-var", type=float, default=100.0, help="sigma of eq. 1")
    p.add_argument("--max-mean", type=float, default=100.0, help="mu of eq. 1")
    p.add_argument("--patch-size", type=int, default=None, help="3 (paper) / 32 (code) if unset")
    p.add_argument("--angles", type=int, nargs="+", default=[0, 90, 180, 270])
    p.add_argument("--mode", choices=["paper", "code"], default="paper")
    p.add_argument("--mask-threshold", type=int, default=127, help="mask pixel > this is target")
    p.add_argument(
        "--normalize",
        choices=["minmax", "percentile", "none"],
        default="minmax",
        help="how frames with more than 8 bits become 8-bit (as INPUT.IR.NORMALIZE)",
    )
    p.add_argument(
        "--resize-mismatched",
        action="store_true",
        help="resize a mask whose size differs from its image (same aspect ratio), as "
        "INPUT.IR.RESIZE_MISMATCHED_MASKS does (SIRST's Misc_111)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv=None):
    # the options' dests are synthesize()'s keyword names, except these three
    options = vars(get_parser().parse_args(argv))
    dataset, out = options.pop("dataset"), options.pop("out")
    progress = not options.pop("no_progress")
    with one_line_errors("synthesize_sirst5k"):
        dicts = _load_dicts(dataset)
        written = synthesize(dicts, out, dataset_name=dataset, progress=progress, **options)
    print(f"wrote {len(written)} frames ({len(dicts)} originals) to {out}")
    return written


if __name__ == "__main__":
    main()
