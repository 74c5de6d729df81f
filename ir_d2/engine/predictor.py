"""
IRPredictor: detectron2's DefaultPredictor for infrared frames.
"""

import numpy as np
import torch
from detectron2.data import transforms as T
from detectron2.engine import DefaultPredictor

from ..data.dataset_mapper import build_ir_augmentation
from ..data.io import check_normalize, to_bgr_uint8

__all__ = ["IRPredictor"]


class IRPredictor(DefaultPredictor):
    """
    DefaultPredictor for IR frames: ``predictor(frame)`` accepts an HxW or HxWx1 gray array
    (uint8, uint16 or any other dtype) or an HxWx3 BGR array (HxWx4 BGRA: alpha dropped), and
    prepares it as the mappers do: gray replicated to 3 channels, frames with more than 8 bits
    normalised by ``INPUT.IR.NORMALIZE`` / ``INPUT.IR.PERCENTILES``, and the mapper's test-time
    resize (``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST``; for ``INPUT.DATASET_MAPPER_NAME``
    "IRSTDDatasetMapper", ``INPUT.IR.TEST_SIZE``). A uint8 BGR frame gives exactly what
    DefaultPredictor gives. Returns the model's output for the frame, at its original size.
    """

    def __init__(self, cfg):
        super().__init__(cfg)
        self.normalize = cfg.INPUT.IR.NORMALIZE
        self.percentiles = tuple(cfg.INPUT.IR.PERCENTILES)
        check_normalize(self.normalize, self.percentiles)
        semantic = cfg.INPUT.DATASET_MAPPER_NAME == "IRSTDDatasetMapper"
        self.augmentations = T.AugmentationList(
            build_ir_augmentation(cfg, False, semantic=semantic)
        )

    def __call__(self, original_image: np.ndarray):
        """
        Args:
            original_image: HxW / HxWx1 gray or HxWx3 BGR frame (see the class docstring).

        Returns:
            dict: the model's output for this one frame.
        """
        image = to_bgr_uint8(original_image, self.normalize, self.percentiles)
        if self.input_format == "RGB":
            image = image[:, :, ::-1]
        height, width = image.shape[:2]
        aug_input = T.AugInput(np.ascontiguousarray(image))
        self.augmentations(aug_input)
        tensor = torch.as_tensor(aug_input.image.astype("float32").transpose(2, 0, 1))
        with torch.no_grad():
            return self.model([{"image": tensor, "height": height, "width": width}])[0]
