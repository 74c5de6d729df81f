"""
Run a config and its weights on IR images, folders or videos and write overlays people can look at:
masks and boxes for instance models, a probability heat-map with target markers for small-target
nets.

    python -m ir_d2.tools.demo --config-file CFG --input FRAME.png DIR/ VIDEO.mp4 --output OUT/
        [--confidence-threshold 0.5] [--temporal K/N [--temporal-speed PX]] [--overwrite]
        [KEY VALUE ... | --opts KEY VALUE ...]

(``projects/demo.py`` is the same script.) Frames may be 8-bit gray, RGB, or 16-bit PNG/TIFF
(normalised by ``INPUT.IR.NORMALIZE``). Each image gives ``OUT/<name>.png``, each video
``OUT/<name>.mp4`` and ``OUT/<name>.frames.csv`` (per frame: latency, detections, reported); a
summary of the detections is logged per frame. A video is read and written as a stream, one frame
in memory at a time, whatever its length. ``--temporal K/N`` (ours) reports a detection of a video
only when one was also seen within ``TEST.IRSTD.DISTANCE`` pixels in at least K of the last N
frames (:class:`ir_d2.utils.temporal.TemporalFilter`), which drops single-frame false alarms;
the distance grows by ``--temporal-speed`` pixels (default 1) per frame of age, for moving
targets.
``MODEL.WEIGHTS`` may name an exported small-target net (``model.onnx``, ``model.ts`` from
``ir_d2.tools.export_model``): it then runs on ONNX Runtime / TorchScript
(:class:`ir_d2.engine.ExportedPredictor`).

Inputs are never written over: an output that would replace an input file, an output folder that
is one of the input folders, or two inputs that would write the same output are refused with one
line before anything is written. ``OUT/ir_d2_demo.json`` lists what the demo wrote there; a file in
OUT that it does not list is never replaced, and one it lists only with ``--overwrite``. Each
output is written under a temporary name and renamed when complete. A frame that cannot be read is
reported and the rest go on; the run ends with the count of failures (exit status 1 if any).
"""

import argparse
import csv
import json
import logging
import sys
import time
from array import array
from pathlib import Path
from typing import Dict, List, Tuple

import cv2
import numpy as np
import torch
from detectron2.data import MetadataCatalog
from detectron2.utils.logger import setup_logger

import ir_d2  # noqa: F401  (registration)
from ir_d2.data.io import IRDataError, read_ir_image
from ir_d2.engine import ExportedPredictor, IRPredictor, is_exported_model
from ir_d2.engine.defaults import ensure_weights, setup_cfg
from ir_d2.utils.cli import (
    CommandLineError,
    add_opts_arguments,
    collect_opts,
    move_config_pairs_to_end,
    one_line_errors,
    split_trailing_opts,
)
from ir_d2.utils.fileio import atomic_write, same_path
from ir_d2.utils.temporal import TemporalFilter, parse_k_of_n
from ir_d2.utils.visualizer import draw_instances, draw_small_targets

__all__ = ["IRVisualizationDemo", "main", "run", "plan_outputs", "MANIFEST"]

#: The demo's record of the files it wrote into an output folder.
MANIFEST = "ir_d2_demo.json"
TOOL = "ir_d2.tools.demo"

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv"}
logger = logging.getLogger("ir_d2.demo")


class IRVisualizationDemo:
    """
    An :class:`IRPredictor` (an :class:`ExportedPredictor` when ``MODEL.WEIGHTS`` is an exported
    ``.onnx`` / ``.ts`` net) plus the overlay that suits the model's output.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        if is_exported_model(cfg.MODEL.WEIGHTS):
            self.predictor = ExportedPredictor(cfg)
        else:
            self.predictor = IRPredictor(cfg)
        self.metadata = MetadataCatalog.get(
            cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else "__unused"
        )

    def run_on_frame(self, frame: np.ndarray, temporal: TemporalFilter = None):
        """
        Args:
            frame: an HxW gray (any dtype) or HxWx3 BGR array.
            temporal: a video's :class:`TemporalFilter`: only the detections it confirms are
                reported (``"targets"``; instances) and drawn. The output then also holds
                ``"detected"``, the number of detections before the filter.
        Returns:
            (predictions, overlay): the model output and an HxWx3 uint8 BGR picture.
        """
        # prepared once: the uint8 BGR frame the model sees is also what the overlay is drawn on
        shown, invalid = self.predictor.prepare(frame)
        predictions = self.predictor.predict(shown, invalid)
        if temporal is not None:
            confirm(predictions, temporal)
        if "instances" in predictions:
            overlay = draw_instances(shown, predictions["instances"], self.metadata)
        elif "sem_seg" in predictions:
            prob = predictions["sem_seg"].detach().cpu().numpy()
            prob = prob[0] if prob.shape[0] == 1 else prob.max(axis=0)
            overlay = draw_small_targets(shown, prob, predictions.get("targets", ()))
        else:
            raise ValueError(f"cannot draw a model output with keys {sorted(predictions)}")
        return predictions, overlay


def confirm(predictions: dict, temporal: TemporalFilter) -> dict:
    """Keep the detections of ``predictions`` that ``temporal`` confirms (small targets by
    centroid, instances by box centre); ``"detected"`` counts them all. Changed in place."""
    if "instances" in predictions:
        inst = predictions["instances"]
        centres = inst.pred_boxes.get_centers().detach().cpu().numpy() if len(inst) else []
        keep = temporal.update(centres)
        predictions["detected"] = len(inst)
        predictions["instances"] = inst[torch.tensor(keep, dtype=torch.bool)]
    else:
        targets = predictions.get("targets", [])
        keep = temporal.update([t["centroid"] for t in targets])
        predictions["detected"] = len(targets)
        predictions["targets"] = [t for t, k in zip(targets, keep) if k]
    return predictions


def _n_reported(predictions) -> int:
    if "instances" in predictions:
        return len(predictions["instances"])
    return len(predictions.get("targets", ()))


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
        for output in [target] + ([frames_table(target)] if kind == "video" else []):
            if output.exists():
                if output.name not in written_before:
                    raise CommandLineError(
                        f"demo: {output} exists and was not written by the demo: refusing to "
                        "replace it; choose another --output folder"
                    )
                if not overwrite:
                    raise CommandLineError(
                        f"demo: {output} exists (an earlier demo run wrote it): pass --overwrite "
                        "to replace the demo's own outputs"
                    )
        plan.append((path, kind, target))
    return plan


def frames_table(video_output: Path) -> Path:
    """The per-frame table written beside a video's overlay: ``<name>.frames.csv``."""
    return video_output.with_name(f"{video_output.stem}.frames.csv")


def _read_frame(path: Path, normalize: str) -> np.ndarray:
    frame = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if frame is None:  # formats OpenCV does not read, or a bad file: the IR reader names it
        frame = read_ir_image(str(path), normalize=normalize)
    if frame.ndim == 3 and frame.shape[2] == 4:
        frame = frame[:, :, :3]
    return frame


def _run_video(demo, path: Path, output: Path, temporal=None) -> dict:
    """
    Stream the video at ``path`` through the demo into ``output`` (mp4) and its per-frame table
    (:func:`frames_table`: frame, latency_ms of reading + model + drawing, detected, reported),
    one frame in memory at a time. Returns the summary (frames, latencies, detections).
    """
    video = cv2.VideoCapture(str(path))
    if not video.isOpened():
        raise IRDataError(f"cannot open video {path}")
    fps = video.get(cv2.CAP_PROP_FPS) or 10.0
    if temporal is not None:
        temporal.reset()
    latencies = array("d")  # 8 bytes a frame: the only thing that grows with the video's length
    detected, reported = 0, 0
    try:
        # both outputs are staged and renamed only once the whole video went through
        with atomic_write(output, mode=None) as tmp, atomic_write(frames_table(output)) as table:
            rows = csv.writer(table)
            rows.writerow(["frame", "latency_ms", "detected", "reported"])
            writer = None
            try:
                while True:
                    start = time.perf_counter()
                    ok, frame = video.read()
                    if not ok:
                        break
                    predictions, overlay = demo.run_on_frame(frame, temporal)
                    if writer is None:
                        h, w = overlay.shape[:2]
                        fourcc = cv2.VideoWriter_fourcc(*"mp4v")
                        writer = cv2.VideoWriter(str(tmp), fourcc, fps, (w, h))
                    writer.write(overlay)
                    latency = (time.perf_counter() - start) * 1e3
                    n_reported = _n_reported(predictions)
                    n_detected = predictions.get("detected", n_reported)
                    rows.writerow([len(latencies), f"{latency:.2f}", n_detected, n_reported])
                    latencies.append(latency)
                    detected += n_detected
                    reported += n_reported
            finally:
                if writer is not None:
                    writer.release()
            if not latencies:
                raise IRDataError(f"video {path} has no readable frame")
    finally:
        video.release()
    lat = np.asarray(latencies)
    return {
        "frames": len(latencies),
        "latency_ms": {
            "mean": float(lat.mean()),
            "median": float(np.median(lat)),
            "p95": float(np.percentile(lat, 95)),
        },
        "detected": detected,
        "reported": reported,
    }


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
        "--temporal",
        metavar="K/N",
        help="videos: report a detection only when seen in K of the last N frames (ours)",
    )
    parser.add_argument(
        "--temporal-speed",
        type=float,
        default=1.0,
        metavar="PX",
        help="with --temporal: the largest target motion, pixels per frame (default 1)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace overlays an earlier demo run wrote"
    )
    add_opts_arguments(parser)
    return parser


def run(argv=None):
    """The demo: returns ``(written, failures)``, the outputs written and ``(input, error)``
    pairs of the inputs that could not be read."""
    parser = get_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(move_config_pairs_to_end(argv, parser))  # KEY VALUE pairs anywhere
    inputs_args, trailing = split_trailing_opts(args.input)
    args.opts = trailing + list(args.opts or [])
    setup_logger(name="ir_d2")
    setup_logger(name="detectron2")
    t = args.confidence_threshold
    with one_line_errors("demo"):
        thresholds = ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", t, "MODEL.IRSTD.THRESHOLD", t]
        cfg = setup_cfg(args.config_file, [*collect_opts(args), *thresholds])
        k_of_n = parse_k_of_n(args.temporal) if args.temporal else None
        if args.temporal_speed < 0:
            raise ValueError(f"--temporal-speed must be >= 0, got {args.temporal_speed}")
        ensure_weights(cfg.MODEL.WEIGHTS)
        out_dir = Path(args.output)
        if out_dir.exists() and not out_dir.is_dir():
            raise ValueError(f"--output {out_dir} is a file; name a folder for the overlays")
        plan = plan_outputs(expand_inputs(inputs_args), inputs_args, out_dir, args.overwrite)
        demo = IRVisualizationDemo(cfg)
        out_dir.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(out_dir)
    written, failures = [], []
    for path, kind, target in plan:
        start = time.perf_counter()
        try:
            if kind == "video":
                temporal = None
                if k_of_n:
                    distance, speed = cfg.TEST.IRSTD.DISTANCE, args.temporal_speed
                    temporal = TemporalFilter(*k_of_n, distance, speed)
                s = _run_video(demo, path, target, temporal)
                lat = s["latency_ms"]
                what = (
                    f"{s['frames']} frames, latency {lat['mean']:.1f} ms mean, "
                    f"{lat['median']:.1f} median, {lat['p95']:.1f} p95 ({1e3 / lat['mean']:.1f} "
                    f"frames/s); {s['reported']} detections reported"
                )
                if temporal is not None:
                    what += f" of {s['detected']} (--temporal {args.temporal})"
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
        record = {"input": str(path.resolve()), "config": str(args.config_file)}
        manifest[target.name] = record
        if kind == "video":
            manifest[frames_table(target).name] = record
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
