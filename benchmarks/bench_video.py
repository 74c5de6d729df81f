"""
Temporal filtering on a video (``demo.py --temporal K/N``, ours): how many false alarms it removes
and how many targets it keeps, on two videos made of real thermal frames (gray 320x256) with
small targets of known tracks moving up to 1.4 px per frame (Gaussian blobs, sigma 1-2 px,
40-90 grey levels above the local background, as bright as SIRST's targets), written to mp4 and
read back as a stream:

- ``pan``: one real FLIR frame seen through a 320x256 window that pans 1 px right and 0.5 px down
  per frame, with fresh sensor noise (sigma 2 grey levels) each frame: the background's clutter
  persists from frame to frame, as in a real video, so alarms on it are hard to filter;
- ``cut``: the real FLIR frames of the shared data in file order. They are a selection of the
  FLIR ADAS set (frames 6, 18, 60, ...), not a video, so the background changes every frame:
  clutter alarms never repeat, the easy case for the filter.

A small-target net (the quickstart's SGEM U-Net; trained here on ``sirst_train`` for
``--train-minutes`` unless ``--weights`` is given) runs once per frame; each K/N rule (gate
growing by ``--speed`` px per frame of age) then filters the same detections. A detection within
``TEST.IRSTD.DISTANCE`` (3 px) of a true target position is a hit, any other an alarm.

    IR_D2_DATASETS=datasets python3 benchmarks/bench_video.py [--frames 120] [--weights W]
        [--frames-dir FLIR_FRAMES/] [--speed 1.5]
"""

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
from _common import SHARED_DATA, given_or_trained, markdown_table, use_datasets, write_report
from detectron2.utils.logger import setup_logger

import ir_d2  # noqa: F401
from ir_d2.engine import VisualizationDemo
from ir_d2.utils.temporal import TemporalFilter, parse_k_of_n

TOOL = "benchmarks/bench_video.py"
CONFIG = "ir_d2://quick_schedules/irstd_sgem_unet_W8_quickstart.yaml"
RULES = ["1/1", "2/3", "3/5", "4/5", "5/7"]


def background(files, scene: str, i: int, rng, h: int = 256, w: int = 320) -> np.ndarray:
    """Frame ``i``'s float32 background of the ``scene`` (``pan`` or ``cut``)."""
    if scene == "cut":
        gray = cv2.imread(str(files[i % len(files)]), cv2.IMREAD_GRAYSCALE)
        return cv2.resize(gray, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    gray = cv2.imread(str(files[0]), cv2.IMREAD_GRAYSCALE).astype(np.float32)
    big_h, big_w = gray.shape
    cx = w / 2 + (i * 1.0) % (big_w - w)
    cy = h / 2 + (i * 0.5) % (big_h - h)
    window = cv2.getRectSubPix(gray, (w, h), (cx, cy))
    return window + rng.normal(0, 2.0, window.shape).astype(np.float32)


def make_video(
    frames_dir: Path, path: Path, n_frames: int, n_targets: int, scene: str, seed: int = 0
):
    """Write the video; return the true target positions (x, y) of each frame."""
    rng = np.random.default_rng(seed)
    files = sorted(frames_dir.glob("*.png"))
    if not files:
        raise FileNotFoundError(f"no PNG frames in {frames_dir}")
    h, w = 256, 320
    tracks = []
    for _ in range(n_targets):
        start = rng.uniform([20, 20], [w - 20, h - 20])
        velocity = rng.uniform(-1.0, 1.0, 2)
        sigma, gain = rng.uniform(1.0, 2.0), rng.uniform(40, 90)
        tracks.append((start, velocity, sigma, gain))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (w, h))
    truth = []
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n_frames):
        frame = background(files, scene, i, rng, h, w)
        points = []
        for start, velocity, sigma, gain in tracks:
            x, y = start + velocity * i
            x, y = 10 + (x - 10) % (w - 20), 10 + (y - 10) % (h - 20)  # wrap inside the frame
            frame += gain * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
            points.append((x, y))
        writer.write(cv2.cvtColor(np.clip(frame, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR))
        truth.append(np.asarray(points))
    writer.release()
    return truth


def count(points_per_frame, truth, distance):
    hits = alarms = 0
    for points, true in zip(points_per_frame, truth):
        for p in points:
            d = np.sqrt(((true - np.asarray(p)) ** 2).sum(axis=1))
            if (d < distance).any():
                hits += 1
            else:
                alarms += 1
    return hits, alarms


def scene_rows(demo, scene: str, args, distance: float) -> dict:
    """The demo's detections on the ``scene``'s video, filtered by each K/N rule."""
    with tempfile.TemporaryDirectory() as folder:
        video_file = Path(folder) / "video.mp4"
        truth = make_video(Path(args.frames_dir), video_file, args.frames, args.targets, scene)
        video = cv2.VideoCapture(str(video_file))
        detections = []
        while True:
            ok, frame = video.read()
            if not ok:
                break
            predictions, _ = demo.run_on_image(frame)
            detections.append([t["centroid"] for t in predictions["targets"]])
        video.release()
    rows = []
    base_hits, base_alarms = count(detections, truth, distance)
    for rule in RULES:
        temporal = TemporalFilter(*parse_k_of_n(rule), distance, args.speed)
        kept = [[p for p, keep in zip(d, temporal.update(d)) if keep] for d in detections]
        hits, alarms = count(kept, truth, distance)
        rows.append(
            {
                "rule": rule,
                "hits": hits,
                "alarms": alarms,
                "targets_kept": round(hits / max(base_hits, 1), 3),
                "alarms_removed": round(1 - alarms / max(base_alarms, 1), 3),
            }
        )
    return {
        "frames": len(detections),
        "true_targets": int(sum(len(t) for t in truth)),
        "rows": rows,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames-dir", default=str(SHARED_DATA / "roadscene-thermal"))
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--targets", type=int, default=3)
    parser.add_argument("--weights", default="")
    parser.add_argument("--speed", type=float, default=1.5, help="the filter's px per frame")
    parser.add_argument("--train-minutes", type=float, default=5.0)
    parser.add_argument("--datasets", default=None, help="folder of the datasets")
    parser.add_argument("--output", default="output/bench_video")
    args = parser.parse_args(argv)
    use_datasets(args.datasets)
    setup_logger(name="ir_d2")
    torch.manual_seed(0)
    cfg = given_or_trained(
        CONFIG, args.weights, args.train_minutes, args.output, "model_bench_video"
    )
    distance = cfg.TEST.IRSTD.DISTANCE
    demo = VisualizationDemo(cfg)
    report = {"weights": cfg.MODEL.WEIGHTS, "speed": args.speed, "scenes": {}}
    text = ""
    for scene in ("pan", "cut"):
        r = scene_rows(demo, scene, args, distance)
        report["scenes"][scene] = r
        text += (
            f"## {scene}: {r['frames']} frames, {r['true_targets']} true target positions\n\n"
            + markdown_table(
                ["K/N", "hits", "alarms", "targets kept", "alarms removed"],
                [[x["rule"], x["hits"], x["alarms"], x["targets_kept"], x["alarms_removed"]]
                 for x in r["rows"]],
            )  # fmt: skip
            + "\n"
        )
    write_report(args.output, "bench_video", TOOL, report, text)
    print(text)
    return report


if __name__ == "__main__":
    main()
