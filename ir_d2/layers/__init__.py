"""Layers and losses of ir_d2, in torch (importing them imports no detectron2; a norm built by
name comes from detectron2's ``get_norm``, :func:`ir_d2.layers.norm.get_norm`)."""

from .bce import binary_cross_entropy_loss
from .box_losses import (
    IOU_LOSS_TYPES,
    ciou_loss,
    eiou_loss,
    focal_ciou_loss,
    focal_eiou_loss,
    focal_iou,
    focal_siou_loss,
    iou_box_loss,
    siou_loss,
)
from .edge_loss import gradient_magnitude, isnet_edge_loss, mask_edges
from .mask_losses import (
    LOVASZ_CLASSES,
    LOVASZ_KINDS,
    dice_loss,
    ir_mask_loss,
    lovasz_hinge_loss,
    lovasz_softmax_loss,
)
from .neg_loss import NEG_LOSS_MODES, negative_sample_loss
from .norm import get_norm
from .soft_iou import soft_iou_loss
from .tiling import check_tiling, tile_origins, tiled_probabilities

__all__ = [
    "IOU_LOSS_TYPES",
    "LOVASZ_CLASSES",
    "LOVASZ_KINDS",
    "NEG_LOSS_MODES",
    "binary_cross_entropy_loss",
    "check_tiling",
    "ciou_loss",
    "dice_loss",
    "eiou_loss",
    "focal_ciou_loss",
    "focal_eiou_loss",
    "focal_iou",
    "focal_siou_loss",
    "get_norm",
    "gradient_magnitude",
    "iou_box_loss",
    "ir_mask_loss",
    "isnet_edge_loss",
    "lovasz_hinge_loss",
    "lovasz_softmax_loss",
    "mask_edges",
    "negative_sample_loss",
    "siou_loss",
    "soft_iou_loss",
    "tile_origins",
    "tiled_probabilities",
]
