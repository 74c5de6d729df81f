"""
Run a config and its weights on IR images, folders or videos and write overlays people can look at:
masks and boxes for instance models, a probability heat-map with target markers for small-target
nets.

    python -m ir_d2.tools.demo --config-file CFG --input FRAME.png DIR/ VIDEO.mp4 --output OUT/
        [--confidence-threshold 0.5] [--opts MODEL.WEIGHTS model_final.pth ...]

(``projects/demo.py`` is the same script.) Frames may be 8-bit gray, RGB, or 16-bit PNG/TIFF
(normalised by ``INPUT.IR.NORMALIZE``). Each image gives ``OUT/<name>.png``, each video
``OUT/<name>.mp4``; a summary of the detections is logged per frame.
"""

import argparse
import logging
import time
from pathlib import Path

import cv2
import numpy as np
from detectron2.data import MetadataCatalog
from detectron2.utils.logger import setup_logger

import ir_d2  # noqa: F401  (registration)
from ir_d2.data.io import IRDataError, read_ir_image, to_bgr_uint8
from ir_d2.engine import IRPredictor
from ir_d2.engine.defaults import ensure_weights, setup_cfg
from ir_d2.utils.visualizer import draw_instances, draw_small_targets

__all__ = ["IRVisualizationDemo", "main"]

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
        # normalise once: the uint8 BGR frame is what the predictor would make of ``frame``, and
        # what the overlay is drawn on
        shown = to_bgr_uint8(frame, self.predictor.normalize, self.predictor.percentiles)
        predictions = self.predictor(shown)
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


def expand_inputs(paths):
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


def _run_video(demo, path: Path, output: Path):
    video = cv2.VideoCapture(str(path))
    if not video.isOpened():
        raise IRDataError(f"cannot open video {path}")
    fps = video.get(cv2.CAP_PROP_FPS) or 10.0
    writer, n = None, 0
    try:
        while True:
            ok, frame = video.read()
            if not ok:
                break
            _, overlay = demo.run_on_frame(frame)
            if writer is None:
                h, w = overlay.shape[:2]
                writer = cv2.VideoWriter(str(output), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
            writer.write(overlay)
            n += 1
    finally:
        video.release()
        if writer is not None:
            writer.release()
    if n == 0:
        raise IRDataError(f"video {path} has no readable frame")
    return n


def get_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--input", nargs="+", required=True, help="images, folders or videos")
    parser.add_argument("--output", required=True, help="folder for the overlays")
    parser.add_argument(
        "--confidence-threshold",
        type=float,
        default=0.5,
        help="minimum score of instances (instance models) / probability of targets (IRSTD)",
    )
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE pairs")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logger(name="ir_d2")
    setup_logger(name="detectron2")
    t = args.confidence_threshold
    cfg = setup_cfg(
        args.config_file,
        [*args.opts, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", t, "MODEL.IRSTD.THRESHOLD", t],
    )
    ensure_weights(cfg.MODEL.WEIGHTS)
    inputs = expand_inputs(args.input)
    demo = IRVisualizationDemo(cfg)
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path, kind in inputs:
        start = time.perf_counter()
        if kind == "video":
            target = out_dir / f"{path.stem}.mp4"
            n = _run_video(demo, path, target)
            logger.info(f"{path}: {n} frames in {time.perf_counter() - start:.2f}s -> {target}")
        else:
            frame = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if frame is None:  # formats OpenCV does not read: the IR reader names the file
                frame = read_ir_image(str(path), normalize=cfg.INPUT.IR.NORMALIZE)
            if frame.ndim == 3 and frame.shape[2] == 4:
                frame = frame[:, :, :3]
            predictions, overlay = demo.run_on_frame(frame)
            target = out_dir / f"{path.stem}.png"
            cv2.imwrite(str(target), overlay)
            logger.info(
                f"{path}: {_summary(predictions)} in {time.perf_counter() - start:.2f}s -> {target}"
            )
        written.append(str(target))
    return written


if __name__ == "__main__":
    main()
