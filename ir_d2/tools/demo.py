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
(:class:`ir_d2.engine.ExportedPredictor`). The model and the drawing are
:class:`ir_d2.engine.visualization_demo.VisualizationDemo` (detectron2's demo split: this module
is the command line, the files and the outputs).

Inputs are never written over: an output that would replace an input file, an output folder that
is one of the input folders, or two inputs that would write the same output are refused with one
line before anything is written. ``OUT/ir_d2_demo.json`` lists what the demo wrote there; a file in
OUT that it does not list is never replaced, and one it lists only with ``--overwrite``
(:class:`ir_d2.utils.fileio.OutputFolder`). Each output is written under a temporary name and
renamed when complete. A frame that cannot be read is reported and the rest go on; the run ends
with the count of failures (exit status 1 if any).
"""

import csv
import json
import logging
import sys
import time
from array import array
from pathlib import Path
from typing import List, Tuple

import cv2
import numpy as np
from detectron2.utils.logger import setup_logger

import ir_d2  # noqa: F401  (registration)
from ir_d2.data.io import IRDataError, read_ir_image
from ir_d2.engine.defaults import ensure_weights, setup_cfg
from ir_d2.engine.visualization_demo import VisualizationDemo, n_reported
from ir_d2.utils.cli import (
    CommandLineError,
    add_opts_arguments,
    collect_opts,
    move_config_pairs_to_end,
    one_line_errors,
    split_trailing_opts,
    tool_parser,
)
from ir_d2.utils.fileio import OutputFolder, OutputRefusedError
from ir_d2.utils.temporal import TemporalFilter, parse_k_of_n

__all__ = ["main", "run", "output_folder", "plan_outputs", "MANIFEST"]

#: The demo's record of the files it wrote into an output folder (its manifest).
MANIFEST = "ir_d2_demo.json"
TOOL = "ir_d2.tools.demo"

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv"}
logger = logging.getLogger("ir_d2.demo")


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


def _older_manifest(out_dir: Path):
    """The outputs an ``ir_d2_demo.json`` of an older version (``"outputs"``, not ``"files"``)
    lists, itself included; None for another file."""
    try:
        data = json.loads((out_dir / MANIFEST).read_text())
        outputs = data["outputs"] if data.get("tool") == TOOL else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return [MANIFEST, *outputs] if isinstance(outputs, dict) else None


def output_folder(out_dir, overwrite: bool = False) -> OutputFolder:
    """``--output`` as the demo's :class:`OutputFolder` (refused when it is a file, or when its
    ``ir_d2_demo.json`` is not the demo's)."""
    return OutputFolder(
        out_dir,
        TOOL,
        manifest=MANIFEST,
        recognise=_older_manifest,
        overwrite=overwrite,
        who="the demo",
    )


def plan_outputs(
    inputs: List[Tuple[Path, str]], input_args, folder: OutputFolder
) -> List[Tuple[Path, str, Path]]:
    """
    ``(input, kind, output)`` for every input, checked before anything is written: refused (one
    line) when two inputs would write one output, when ``folder`` is one of the ``input_args``
    folders, when an output would replace an input file, or when an output exists and the demo
    did not write it (or did, and ``folder`` was not opened with ``overwrite``).
    """
    plan, claimed = [], {}
    for path, kind in inputs:
        target = folder.path / f"{path.stem}{'.mp4' if kind == 'video' else '.png'}"
        if target.name in claimed:
            raise OutputRefusedError(
                f"inputs {claimed[target.name]} and {path} would both write {target}; run them "
                "into different --output folders"
            )
        claimed[target.name] = path
        plan.append((path, kind, target))
    outputs = [t.name for _, _, t in plan]
    outputs += [frames_table(t).name for _, kind, t in plan if kind == "video"]
    folder.check_inputs([*input_args, *(p for p, _ in inputs)], outputs)
    folder.check(outputs)
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


def write_video(demo, path: Path, folder: OutputFolder, target: Path, record, temporal=None):
    """
    Stream the video at ``path`` through ``demo.run_on_video`` into ``target`` (mp4) and its
    per-frame table (:func:`frames_table`: frame, latency_ms of reading, model, drawing and
    writing the frame, detected, reported), one frame in memory at a time; both are written
    through ``folder`` with ``record``. Returns the summary (frames, latencies, detections).
    """
    video = cv2.VideoCapture(str(path))
    if not video.isOpened():
        raise IRDataError(f"cannot open video {path}")
    fps = video.get(cv2.CAP_PROP_FPS) or 10.0
    latencies = array("d")  # 8 bytes a frame: the only thing that grows with the video's length
    detected, reported = 0, 0
    # both outputs are staged and renamed only once the whole video went through
    video_file = folder.write(target.name, mode=None, record=record)
    table_file = folder.write(frames_table(target).name, record=record)
    try:
        with video_file as tmp, table_file as f:
            rows = csv.writer(f)
            rows.writerow(["frame", "latency_ms", "detected", "reported"])
            writer = None
            try:
                start = time.perf_counter()
                for predictions, overlay in demo.run_on_video(video, temporal):
                    if writer is None:
                        h, w = overlay.shape[:2]
                        fourcc = cv2.VideoWriter_fourcc(*"mp4v")
                        writer = cv2.VideoWriter(str(tmp), fourcc, fps, (w, h))
                    writer.write(overlay)
                    latency = (time.perf_counter() - start) * 1e3
                    n = n_reported(predictions)
                    n_detected = predictions.get("detected", n)
                    rows.writerow([len(latencies), f"{latency:.2f}", n_detected, n])
                    latencies.append(latency)
                    detected += n_detected
                    reported += n
                    start = time.perf_counter()
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
    parser = tool_parser("ir_d2.tools.demo", __doc__, raw_text=True)
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


def _describe_video(s: dict, temporal_arg) -> str:
    lat = s["latency_ms"]
    what = (
        f"{s['frames']} frames, latency {lat['mean']:.1f} ms mean, {lat['median']:.1f} median, "
        f"{lat['p95']:.1f} p95 ({1e3 / lat['mean']:.1f} frames/s); {s['reported']} detections "
        "reported"
    )
    return what + (f" of {s['detected']} (--temporal {temporal_arg})" if temporal_arg else "")


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
        folder = output_folder(args.output, args.overwrite)
        plan = plan_outputs(expand_inputs(inputs_args), inputs_args, folder)
        demo = VisualizationDemo(cfg)
    written, failures = [], []
    for path, kind, target in plan:
        start = time.perf_counter()
        record = {"input": str(path.resolve()), "config": str(args.config_file)}
        try:
            if kind == "video":
                temporal = None
                if k_of_n:
                    distance, speed = cfg.TEST.IRSTD.DISTANCE, args.temporal_speed
                    temporal = TemporalFilter(*k_of_n, distance, speed)
                summary = write_video(demo, path, folder, target, record, temporal)
                what = _describe_video(summary, args.temporal if temporal else None)
            else:
                frame = _read_frame(path, cfg.INPUT.IR.NORMALIZE)
                predictions, overlay = demo.run_on_image(frame)
                with folder.write(target.name, mode=None, record=record) as tmp:
                    if not cv2.imwrite(str(tmp), overlay):
                        raise OSError(f"cannot write {target}")
                what = _summary(predictions)
        except (IRDataError, cv2.error, ValueError, OSError) as e:
            failures.append((path, " ".join(str(e).split())))
            logger.error(f"{path}: skipped, {failures[-1][1]}")
            continue
        logger.info(f"{path}: {what} in {time.perf_counter() - start:.2f}s -> {target}")
        written.append(str(target))
    if written:
        folder.finish()
    if failures:
        logger.error(
            f"{len(failures)} of {len(plan)} inputs could not be processed (first: "
            f"{failures[0][0]}: {failures[0][1]}); {len(written)} overlays written to {folder.path}"
        )
    else:
        logger.info(f"{len(written)} overlays written to {folder.path}")
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
