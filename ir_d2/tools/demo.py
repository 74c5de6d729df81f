"""
Run a config and its weights on IR images, folders or videos and write overlays people can look at:
masks and boxes for instance models, a probability heat-map with target markers for small-target
nets.

    python -m ir_d2.tools.demo --config-file CFG --input FRAME.png DIR/ VIDEO.mp4 --output OUT/
        [--confidence-threshold 0.5] [--overwrite] [KEY VALUE ... | --opts KEY VALUE ...]

(``projects/demo.py`` is the same script.) Frames may be 8-bit gray, RGB, or 16-bit PNG/TIFF
(normalised by ``INPUT.IR.NORMALIZE``). Each image gives ``OUT/<name>.png``, each video
``OUT/<name>.mp4``; a summary of the detections is logged per frame.

Inputs are never written over: an output that would replace an input file, an output folder that
is one of the input folders, or two inputs that would write the same output are refused with one
line before anything is written. ``OUT/ir_d2_demo.json`` lists what the demo wrote there; a file in
OUT that it does not list is never replaced, and one it lists only with ``--overwrite``. Each
output is written under a temporary name and renamed when complete. A frame that cannot be read is
reported and the rest go on; the run ends with the count of failures (exit status 1 if any).
"""

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Dict, List, Tuple

import cv2
import numpy as np
from detectron2.data import MetadataCatalog
from detectron2.utils.logger import setup_logger

import ir_d2  # noqa: F401  (registration)
from ir_d2.data.io import IRDataError, read_ir_image
from ir_d2.engine import IRPredictor
from ir_d2.engine.defaults import ensure_weights, setup_cfg
from ir_d2.utils.cli import (
    CommandLineError,
    add_opts_arguments,
    collect_opts,
    one_line_errors,
    split_trailing_opts,
)
from ir_d2.utils.fileio import atomic_write, same_path
from ir_d2.utils.visualizer import draw_instances, draw_small_targets

__all__ = ["IRVisualizationDemo", "main", "run", "plan_outputs", "MANIFEST"]

#: The demo's record of the files it wrote into an output folder.
MANIFEST = "ir_d2_demo.json"
TOOL = "ir_d2.tools.demo"

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv"}
logger = logging.getLogger("ir_d2.demo")


class IRVisualizationDemo:
    """An :class:`IRPredictor` plus the overlay that suits the model's output."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.predictor = IRPredictor(cfg)
        self.metadata = MetadataCatalog.get(
            cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else "__unused"
        )

    def run_on_frame(self, frame: np.ndarray):
        """
        Args:
            frame: an HxW gray (any dtype) or HxWx3 BGR array.
        Returns:
            (predictions, overlay): the model output and an HxWx3 uint8 BGR picture.
        """
        # prepared once: the uint8 BGR frame the model sees is also what the overlay is drawn on
        shown, invalid = self.predictor.prepare(frame)
        predictions = self.predictor.predict(shown, invalid)
        if "instances" in predictions:
            overlay = draw_instances(shown, predictions["instances"], self.metadata)
        elif "sem_seg" in predictions:
            prob = predictions["sem_seg"].detach().cpu().numpy()
            prob = prob[0] if prob.shape[0] == 1 else prob.max(axis=0)
            overlay = draw_small_targets(shown, prob, predictions.get("targets", ()))
        else:
            raise ValueError(f"cannot draw a model output with keys {sorted(predictions)}")
        return predictions, overlay


def _summary(predictions) -> str:
    if "instances" in predictions:
        return f"{len(predictions['instances'])} instances"
    return f"{len(predictions.get('targets', ()))} targets"


def expand_inputs(paths) -> List[Tuple[Path, str]]:
    """Files and the image files of folders (sorted), each tagged "image" or "video"."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS)
            if not files:
                raise FileNotFoundError(f"--input folder {p} holds no image ({sorted(IMAGE_EXTS)})")
            out += [(f, "image") for f in files]
        elif p.is_file():
            kind = "video" if p.suffix.lower() in VIDEO_EXTS else "image"
            out.append((p, kind))
        else:
            raise FileNotFoundError(f"--input {p} does not exist")
    return out


def _read_manifest(out_dir: Path) -> Dict[str, dict]:
    """The outputs an earlier demo run recorded in ``out_dir`` (name -> record)."""
    path = out_dir / MANIFEST
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        if data.get("tool") != TOOL:
            raise ValueError("not the demo's")
        return dict(data["outputs"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise CommandLineError(
            f"demo: {path} exists and is not the demo's record of its outputs: refusing to write "
            "into --output; choose another folder"
        ) from None


def _write_manifest(out_dir: Path, outputs: Dict[str, dict]) -> None:
    with atomic_write(out_dir / MANIFEST) as f:
        json.dump({"tool": TOOL, "outputs": outputs}, f, indent=1)


def plan_outputs(
    inputs: List[Tuple[Path, str]], input_args, out_dir: Path, overwrite: bool = False
) -> List[Tuple[Path, str, Path]]:
    """
    ``(input, kind, output)`` for every input, checked before anything is written: an error (one
    line) when ``out_dir`` is one of the ``input_args`` folders, when an output would replace an
    input file, when two inputs would write one output, or when an output exists and the demo's
    manifest does not list it (or lists it and ``overwrite`` is off).
    """
    for arg in map(Path, input_args):
        if arg.is_dir() and same_path(arg, out_dir):
            raise CommandLineError(
                f"demo: --output {out_dir} is the input folder {arg}: the overlays would mix with "
                "(or replace) the input frames; choose another --output folder"
            )
    written_before = _read_manifest(out_dir) if out_dir.is_dir() else {}
    plan, claimed = [], {}
    for path, kind in inputs:
        target = out_dir / f"{path.stem}{'.mp4' if kind == 'video' else '.png'}"
        for other, _ in inputs:
            if same_path(target, other):
                raise CommandLineError(
                    f"demo: the overlay of {path} would be written over the input file {other}: "
                    "choose another --output folder"
                )
        if target.name in claimed:
            raise CommandLineError(
                f"demo: inputs {claimed[target.name]} and {path} would both write {target}; "
                "run them into different --output folders"
            )
        claimed[target.name] = path
        if target.exists():
            if target.name not in written_before:
                raise CommandLineError(
                    f"demo: {target} exists and was not written by the demo: refusing to replace "
                    "it; choose another --output folder"
                )
            if not overwrite:
                raise CommandLineError(
                    f"demo: {target} exists (an earlier demo run wrote it): pass --overwrite to "
                    "replace the demo's own outputs"
                )
        plan.append((path, kind, target))
    return plan


def _read_frame(path: Path, normalize: str) -> np.ndarray:
    frame = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if frame is None:  # formats OpenCV does not read, or a bad file: the IR reader names it
        frame = read_ir_image(str(path), normalize=normalize)
    if frame.ndim == 3 and frame.shape[2] == 4:
        frame = frame[:, :, :3]
    return frame


def _run_video(demo, path: Path, output: Path):
    video = cv2.VideoCapture(str(path))
    if not video.isOpened():
        raise IRDataError(f"cannot open video {path}")
    fps = video.get(cv2.CAP_PROP_FPS) or 10.0
    n = 0
    try:
        with atomic_write(output, mode=None) as tmp:
            writer = None
            try:
                while True:
                    ok, frame = video.read()
                    if not ok:
                        break
                    _, overlay = demo.run_on_frame(frame)
                    if writer is None:
                        h, w = overlay.shape[:2]
                        fourcc = cv2.VideoWriter_fourcc(*"mp4v")
                        writer = cv2.VideoWriter(str(tmp), fourcc, fps, (w, h))
                    writer.write(overlay)
                    n += 1
            finally:
                if writer is not None:
                    writer.release()
            if n == 0:
                raise IRDataError(f"video {path} has no readable frame")
    finally:
        video.release()
    return n


def get_parser():
    parser = argparse.ArgumentParser(
        prog="python -m ir_d2.tools.demo",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument(
        "--input",
        nargs="+",
        required=True,
        help="images, folders or videos (trailing KEY VALUE pairs are config overrides)",
    )
    parser.add_argument("--output", required=True, help="folder for the overlays")
    parser.add_argument(
        "--confidence-threshold",
        type=float,
        default=0.5,
        help="minimum score of instances (instance models) / probability of targets (IRSTD)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace overlays an earlier demo run wrote"
    )
    add_opts_arguments(parser)
    return parser


def run(argv=None):
    """The demo: returns ``(written, failures)``, the outputs written and ``(input, error)``
    pairs of the inputs that could not be read."""
    args = get_parser().parse_args(argv)
    inputs_args, trailing = split_trailing_opts(args.input)
    args.opts = trailing + list(args.opts or [])
    setup_logger(name="ir_d2")
    setup_logger(name="detectron2")
    t = args.confidence_threshold
    with one_line_errors("demo"):
        thresholds = ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", t, "MODEL.IRSTD.THRESHOLD", t]
        cfg = setup_cfg(args.config_file, [*collect_opts(args), *thresholds])
        ensure_weights(cfg.MODEL.WEIGHTS)
        out_dir = Path(args.output)
        plan = plan_outputs(expand_inputs(inputs_args), inputs_args, out_dir, args.overwrite)
        demo = IRVisualizationDemo(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(out_dir)
    written, failures = [], []
    for path, kind, target in plan:
        start = time.perf_counter()
        try:
            if kind == "video":
                n = _run_video(demo, path, target)
                what = f"{n} frames"
            else:
                predictions, overlay = demo.run_on_frame(_read_frame(path, cfg.INPUT.IR.NORMALIZE))
                with atomic_write(target, mode=None) as tmp:
                    if not cv2.imwrite(str(tmp), overlay):
                        raise OSError(f"cannot write {target}")
                what = _summary(predictions)
        except (IRDataError, cv2.error, ValueError, OSError) as e:
            failures.append((path, " ".join(str(e).split())))
            logger.error(f"{path}: skipped, {failures[-1][1]}")
            continue
        manifest[target.name] = {"input": str(path.resolve()), "config": str(args.config_file)}
        _write_manifest(out_dir, manifest)
        logger.info(f"{path}: {what} in {time.perf_counter() - start:.2f}s -> {target}")
        written.append(str(target))
    if failures:
        logger.error(
            f"{len(failures)} of {len(plan)} inputs could not be processed (first: "
            f"{failures[0][0]}: {failures[0][1]}); {len(written)} overlays written to {out_dir}"
        )
    else:
        logger.info(f"{len(written)} overlays written to {out_dir}")
    return written, failures


def main(argv=None) -> List[str]:
    """Run the demo; returns the outputs written. Ends with exit status 1 (after processing every
    input) when some inputs could not be read."""
    written, failures = run(argv)
    if failures:
        raise CommandLineError(
            f"demo: {len(failures)} of {len(written) + len(failures)} inputs failed (see above)"
        )
    return written


if __name__ == "__main__":
    main()
