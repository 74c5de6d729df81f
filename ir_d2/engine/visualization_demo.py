"""
:class:`VisualizationDemo`: detectron2's ``demo/predictor.py`` ``VisualizationDemo`` for IR frames
and small-target nets. ``python -m ir_d2.tools.demo`` (``projects/demo.py``) is its command line:
inputs, outputs, the video file and per-frame table.

What is drawn:

- instance models (the Mask R-CNN): detectron2's ``Visualizer.draw_instance_predictions`` on an
  image and its ``VideoVisualizer`` on a video (an instance keeps its colour from frame to frame),
  as detectron2's demo does;
- small-target nets (``sem_seg`` is a target probability, ``targets`` its connected components):
  ir_d2's heat-map with a circle around each target
  (:func:`ir_d2.utils.visualizer.draw_small_targets`). detectron2's ``Visualizer.draw_sem_seg``
  draws a label map (the argmax over classes, each region filled and labelled), not a
  probability: the argmax of a one-channel net is 0 everywhere, and a 3-pixel target filled in
  colour would not be seen; the probability as a heat-map and a marker at each target are what
  a person needs to judge a detection.
"""

from typing import Iterator, Optional, Tuple

import numpy as np
import torch
from detectron2.data import MetadataCatalog
from detectron2.utils.video_visualizer import VideoVisualizer
from detectron2.utils.visualizer import ColorMode, Visualizer

from ..utils.temporal import TemporalFilter
from ..utils.visualizer import draw_small_targets
from .exported_predictor import ExportedPredictor, is_exported_model
from .predictor import IRPredictor

__all__ = ["VisualizationDemo", "confirm", "n_reported"]


class VisualizationDemo:
    """
    An :class:`IRPredictor` (an :class:`ExportedPredictor` when ``MODEL.WEIGHTS`` is an exported
    ``.onnx`` / ``.ts`` net) and the overlay that suits the model's output.

    Args:
        cfg: the model's config.
        instance_mode: detectron2's ``ColorMode`` of instance overlays.
    """

    def __init__(self, cfg, instance_mode=ColorMode.IMAGE):
        self.cfg = cfg
        self.metadata = MetadataCatalog.get(
            cfg.DATASETS.TEST[0] if len(cfg.DATASETS.TEST) else "__unused"
        )
        self.cpu_device = torch.device("cpu")
        self.instance_mode = instance_mode
        if is_exported_model(cfg.MODEL.WEIGHTS):
            self.predictor = ExportedPredictor(cfg)
        else:
            self.predictor = IRPredictor(cfg)

    def run_on_image(
        self, image: np.ndarray, temporal: Optional[TemporalFilter] = None
    ) -> Tuple[dict, np.ndarray]:
        """
        Args:
            image: an HxW gray (any dtype: 8 or 16 bits, float) or HxWx3 BGR frame.
            temporal: a video's :class:`TemporalFilter`: only the detections it confirms are
                reported (``"targets"``; ``"instances"``) and drawn, and the output also holds
                ``"detected"``, the number of detections before the filter.

        Returns:
            predictions (dict): the output of the model.
            vis_output (np.ndarray): HxWx3 uint8 BGR, the frame as the model saw it (8-bit) with
                the overlay.
        """
        return self._run(image, temporal)

    def _frame_from_video(self, video) -> Iterator[np.ndarray]:
        while video.isOpened():
            success, frame = video.read()
            if not success:
                break
            yield frame

    def run_on_video(
        self, video, temporal: Optional[TemporalFilter] = None
    ) -> Iterator[Tuple[dict, np.ndarray]]:
        """
        Args:
            video (cv2.VideoCapture): a video file or camera, read one frame at a time.
            temporal: a :class:`TemporalFilter` (reset first) applied over the frames, as in
                :meth:`run_on_image`.

        Yields:
            ``(predictions, vis_frame)`` of each frame, ``vis_frame`` HxWx3 uint8 BGR. A frame is
            read, predicted and drawn before it is yielded (what a consumer times between two
            frames), and only one is held in memory.
        """
        video_visualizer = VideoVisualizer(self.metadata, self.instance_mode)
        if temporal is not None:
            temporal.reset()
        for frame in self._frame_from_video(video):
            yield self._run(frame, temporal, video_visualizer)

    def _run(self, frame, temporal=None, video_visualizer=None) -> Tuple[dict, np.ndarray]:
        # prepared once: the uint8 BGR frame the model sees is also what the overlay is drawn on
        shown, invalid = self.predictor.prepare(frame)
        predictions = self.predictor.predict(shown, invalid)
        if temporal is not None:
            confirm(predictions, temporal)
        if "instances" in predictions:
            instances = predictions["instances"].to(self.cpu_device)
            rgb = shown[:, :, ::-1]
            if video_visualizer is None:
                visualizer = Visualizer(rgb, self.metadata, instance_mode=self.instance_mode)
                vis = visualizer.draw_instance_predictions(predictions=instances)
            else:
                vis = video_visualizer.draw_instance_predictions(rgb, instances)
            return predictions, np.ascontiguousarray(vis.get_image()[:, :, ::-1])
        if "sem_seg" in predictions:
            # a probability heat-map and target markers; Visualizer draws label maps only (above)
            prob = predictions["sem_seg"].detach().to(self.cpu_device).numpy()
            prob = prob[0] if prob.shape[0] == 1 else prob.max(axis=0)
            return predictions, draw_small_targets(shown, prob, predictions.get("targets", ()))
        raise ValueError(f"cannot draw a model output with keys {sorted(predictions)}")


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


def n_reported(predictions: dict) -> int:
    """The detections the demo reports: instances, or small targets."""
    if "instances" in predictions:
        return len(predictions["instances"])
    return len(predictions.get("targets", ()))
