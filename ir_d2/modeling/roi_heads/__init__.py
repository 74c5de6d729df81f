"""Registered on import of ir_d2.modeling."""

from .fast_rcnn import IRFastRCNNOutputLayers
from .mask_head import IRMaskRCNNConvUpsampleHead, ir_mask_rcnn_loss
from .roi_heads import IRROIHeads

__all__ = [
    "IRFastRCNNOutputLayers",
    "IRMaskRCNNConvUpsampleHead",
    "IRROIHeads",
    "ir_mask_rcnn_loss",
]
