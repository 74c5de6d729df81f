"""
IRPredictor: detectron2's DefaultPredictor for infrared frames.
"""

import logging
from typing import Optional, Tuple

import numpy as np
import torch
from detectron2.data import transforms as T
from detectron2.engine import DefaultPredictor
from scipy import ndimage

from ..data.augmentation import build_ir_augmentation
from ..data.io import check_normalize, to_bgr_uint8
from ..structures.masks import connected_targets, label_components
from .defaults import weights_problem

__all__ = ["IRFrameInput", "IRPredictor", "invalid_pixels", "suppress_invalid"]

logger = logging.getLogger(__name__)


def invalid_pixels(frame: np.ndarray) -> Optional[np.ndarray]:
    """HxW bool map of the non-finite pixels (NaN, inf; any channel) of a float frame, or None
    when there are none (integer frames never have any)."""
    a = np.asarray(frame)
    if a.dtype.kind != "f":
        return None
    bad = ~np.isfinite(a)
    if a.ndim == 3:
        bad = bad.any(axis=2)
    return bad if bad.any() else None


def suppress_invalid(predictions: dict, invalid: np.ndarray, margin: int, threshold: float):
    """
    Drop what a model reports in or at the edge of invalid pixels (``invalid``, HxW bool at the
    output's size, grown to every pixel within ``margin`` pixels, Euclidean): small-target outputs
    get probability 0 on that region and on every component of ``sem_seg > threshold`` that
    touches it, and their ``"targets"`` are recomputed; instances whose mask (or, without masks,
    box centre) touches it are removed. Returns ``predictions``, changed in place.
    """
    bad = invalid
    if margin > 0:  # every pixel within Euclidean distance ``margin`` of an invalid one
        yy, xx = np.ogrid[-margin : margin + 1, -margin : margin + 1]
        bad = ndimage.binary_dilation(invalid, structure=yy * yy + xx * xx <= margin * margin)
    if "sem_seg" in predictions:
        prob = predictions["sem_seg"]
        p = prob[0].detach().cpu().numpy().copy()
        labels, _ = label_components(p > threshold)
        touching = np.unique(labels[bad & (labels > 0)])
        p[bad | np.isin(labels, touching[touching > 0])] = 0.0
        predictions["sem_seg"] = torch.as_tensor(p, dtype=prob.dtype)[None].to(prob.device)
        predictions["targets"] = connected_targets(p, threshold)
    if "instances" in predictions:
        inst = predictions["instances"]
        bad_t = torch.as_tensor(bad, device=inst.pred_boxes.device)
        if inst.has("pred_masks"):
            hit = (inst.pred_masks & bad_t).flatten(1).any(dim=1)
        else:
            centres = inst.pred_boxes.get_centers().long()
            x = centres[:, 0].clamp(0, bad.shape[1] - 1)
            y = centres[:, 1].clamp(0, bad.shape[0] - 1)
            hit = bad_t[y, x]
        predictions["instances"] = inst[~hit]
    return predictions


class IRFrameInput:
    """
    How an IR frame becomes a model input and the model's output a prediction, shared by
    :class:`IRPredictor` and :class:`ir_d2.engine.ExportedPredictor`: :meth:`prepare` (reading
    conventions, invalid pixels), :meth:`model_input` (the test-time resize of the mapper),
    :meth:`predict` (the model, then nothing reported at invalid pixels) and ``predictor(frame)``.
    A subclass implements :meth:`run_model`.
    """

    #: pixels around invalid ones where no target is reported
    invalid_margin = 3

    def __init__(self, cfg):
        self.input_format = cfg.INPUT.FORMAT
        self.normalize = cfg.INPUT.IR.NORMALIZE
        self.percentiles = tuple(cfg.INPUT.IR.PERCENTILES)
        check_normalize(self.normalize, self.percentiles)
        semantic = cfg.INPUT.DATASET_MAPPER_NAME == "IRSTDDatasetMapper"
        self.augmentations = T.AugmentationList(
            build_ir_augmentation(cfg, False, semantic=semantic)
        )
        self.threshold = cfg.MODEL.IRSTD.THRESHOLD
        self._warned_invalid = False

    def prepare(self, frame: np.ndarray) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """
        The frame as the model's HxWx3 uint8 BGR array (what the overlays are drawn on) and the
        HxW bool map of its invalid pixels (None when there are none).
        """
        invalid = invalid_pixels(frame)
        if invalid is not None:
            frame = np.array(frame, dtype=np.float64)
            valid = frame[~invalid] if frame.ndim == 2 else frame[~invalid].reshape(-1)
            finite = valid[np.isfinite(valid)]
            frame[~np.isfinite(frame)] = np.median(finite) if finite.size else 0.0
            if not self._warned_invalid:
                self._warned_invalid = True
                logger.warning(
                    f"IRPredictor: the frame has {int(invalid.sum())} NaN/inf pixels of "
                    f"{invalid.size}; they are filled with the median of the valid pixels and "
                    f"nothing is reported in or within {self.invalid_margin} pixels of them "
                    "(later frames are handled the same way without this warning)"
                )
        return to_bgr_uint8(frame, self.normalize, self.percentiles), invalid

    def model_input(self, image: np.ndarray) -> dict:
        """A prepared HxWx3 BGR frame as the model's input dict: in ``INPUT.FORMAT``, resized as
        the test mapper does, with the original ``height`` and ``width``."""
        if self.input_format == "RGB":
            image = image[:, :, ::-1]
        height, width = image.shape[:2]
        aug_input = T.AugInput(np.ascontiguousarray(image))
        self.augmentations(aug_input)
        tensor = torch.as_tensor(aug_input.image.astype("float32").transpose(2, 0, 1))
        return {"image": tensor, "height": height, "width": width}

    def run_model(self, inputs: dict) -> dict:
        """The model's output for one :meth:`model_input` dict."""
        raise NotImplementedError

    def predict(self, image: np.ndarray, invalid: Optional[np.ndarray] = None) -> dict:
        """The model's output for a prepared frame (:meth:`prepare`), with nothing reported in or
        beside its ``invalid`` pixels."""
        predictions = self.run_model(self.model_input(image))
        if invalid is not None:
            suppress_invalid(predictions, invalid, self.invalid_margin, self.threshold)
        return predictions

    def __call__(self, original_image: np.ndarray) -> dict:
        """
        Args:
            original_image: HxW / HxWx1 gray or HxWx3 BGR frame (uint8, uint16, float with
                NaN / inf pixels).

        Returns:
            dict: the model's output for this one frame, at its original size.
        """
        return self.predict(*self.prepare(original_image))


class IRPredictor(IRFrameInput, DefaultPredictor):
    """
    DefaultPredictor for IR frames: ``predictor(frame)`` accepts an HxW or HxWx1 gray array
    (uint8, uint16 or any other dtype) or an HxWx3 BGR array (HxWx4 BGRA: alpha dropped), and
    prepares it as the mappers do: gray replicated to 3 channels, frames with more than 8 bits
    normalised by ``INPUT.IR.NORMALIZE`` / ``INPUT.IR.PERCENTILES``, and the mapper's test-time
    resize (``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST``; for ``INPUT.DATASET_MAPPER_NAME``
    "IRSTDDatasetMapper", ``INPUT.IR.TEST_SIZE``). A uint8 BGR frame gives exactly what
    DefaultPredictor gives. Returns the model's output for the frame, at its original size.

    Invalid pixels: a float frame's NaN / inf pixels (dead pixels, masked regions of a radiometric
    frame) are filled with the median of its valid pixels before normalisation (a constant would
    draw an artificial edge around them), and nothing is reported in them or within
    ``invalid_margin`` pixels of them (:func:`suppress_invalid`). The first such frame is warned
    about with its count of invalid pixels.
    """

    def __init__(self, cfg):
        problem = weights_problem(cfg.MODEL.WEIGHTS)
        if problem:  # fvcore would say "Checkpoint ... not found!" from deep inside
            raise FileNotFoundError(problem)
        DefaultPredictor.__init__(self, cfg)
        IRFrameInput.__init__(self, cfg)

    def run_model(self, inputs: dict) -> dict:
        with torch.no_grad():
            return self.model([inputs])[0]
