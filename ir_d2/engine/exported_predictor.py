"""
ExportedPredictor: :class:`IRPredictor`'s inputs and outputs for a small-target net exported by
``python -m ir_d2.tools.export_model`` (ONNX Runtime or TorchScript), without the PyTorch model.
"""

import logging

import numpy as np
import torch

from ..export.runtime import ExportedNet, read_export_metadata
from ..layers import check_tiling, tiled_probabilities
from ..modeling.meta_arch import irstd_input, irstd_results
from .predictor import IRFrameInput

__all__ = ["ExportedPredictor", "is_exported_model"]

logger = logging.getLogger(__name__)


def _same(a, b) -> bool:
    """Whether two constants agree up to float32 rounding (an export stores float32 values)."""
    return np.shape(a) == np.shape(b) and np.allclose(a, b, rtol=1e-6, atol=0)


def is_exported_model(weights: str) -> bool:
    """Whether ``MODEL.WEIGHTS`` names an exported model (``.onnx`` or ``.ts``)."""
    return str(weights).endswith((".onnx", ".ts"))


class ExportedPredictor(IRFrameInput):
    """
    ``predictor(frame)`` as :class:`IRPredictor` (gray, 16-bit, float with NaN, BGR frames alike;
    the same reading, resizing and invalid-pixel handling) returning ``{"sem_seg", "targets"}``
    like :class:`ir_d2.modeling.IRSTDSegmentor`, computed by the exported net of
    ``cfg.MODEL.WEIGHTS`` (``model.onnx`` through ONNX Runtime, ``model.ts`` through
    TorchScript). The input is built by the segmentor's own :func:`irstd_input` and the outputs
    by its :func:`irstd_results`, so both predictors agree up to the runtime's arithmetic.

    The net's constants (``pixel_mean``, ``pixel_std``, ``size_divisibility``) come from the
    export's ``ir_d2_export.json`` when it is there (the values the net was exported with), else
    from ``cfg``; a difference is logged. ``cfg`` gives the reading settings (``INPUT.*``) and
    the target threshold (``MODEL.IRSTD.THRESHOLD``) and tiled inference
    (``TEST.IRSTD.TILE_SIZE`` > 0: a frame larger than the tile in either side runs tile by tile,
    as in the segmentor; :func:`ir_d2.layers.tiled_probabilities`).

    Args:
        cfg: the config the model was trained with, ``MODEL.WEIGHTS`` the exported file.
        threads: ONNX Runtime / torch threads (0: the runtime's default).
    """

    def __init__(self, cfg, threads: int = 0):
        if cfg.MODEL.META_ARCHITECTURE != "IRSTDSegmentor":
            raise ValueError(
                f"ExportedPredictor runs exported small-target nets; MODEL.META_ARCHITECTURE is "
                f"{cfg.MODEL.META_ARCHITECTURE!r} (an exported detector's flat outputs become "
                "Instances with ir_d2.export.rcnn_outputs)"
            )
        super().__init__(cfg)
        self.net = ExportedNet(cfg.MODEL.WEIGHTS, threads=threads)
        consts = {
            "pixel_mean": [float(v) for v in cfg.MODEL.PIXEL_MEAN],
            "pixel_std": [float(v) for v in cfg.MODEL.PIXEL_STD],
            "size_divisibility": int(cfg.MODEL.IRSTD.SIZE_DIVISIBILITY),
        }
        meta = read_export_metadata(cfg.MODEL.WEIGHTS) or {}
        for key in consts:
            if key in meta and not _same(meta[key], consts[key]):
                logger.warning(
                    f"ExportedPredictor: {key} is {meta[key]} in the export's metadata and "
                    f"{consts[key]} in the config; using the export's"
                )
                consts[key] = meta[key]
        self.pixel_mean = torch.tensor(consts["pixel_mean"]).view(-1, 1, 1)
        self.pixel_std = torch.tensor(consts["pixel_std"]).view(-1, 1, 1)
        self.size_divisibility = consts["size_divisibility"]
        self.tile_size = cfg.TEST.IRSTD.TILE_SIZE
        self.tile_overlap = cfg.TEST.IRSTD.TILE_OVERLAP
        if self.tile_size:
            check_tiling(self.tile_size, self.tile_overlap, max(self.size_divisibility, 1))

    def run_model(self, inputs: dict) -> dict:
        batch = irstd_input(
            [inputs["image"]], self.pixel_mean, self.pixel_std, self.size_divisibility
        )
        if self.tile_size > 0 and max(batch.image_sizes[0]) > self.tile_size:
            prob = tiled_probabilities(
                lambda x: torch.from_numpy(self.net(x)),
                batch.tensor,
                self.tile_size,
                self.tile_overlap,
                max(self.size_divisibility, 1),
            )
        else:
            prob = torch.from_numpy(self.net(batch.tensor))
        size = (inputs["height"], inputs["width"])
        return irstd_results(prob, batch.image_sizes, [size], self.threshold)[0]
