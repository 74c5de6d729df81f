# -*- coding: utf-8 -*-
"""
Mask head with the BCE + Dice + Lovasz mask loss of Wang & Ren 2025 (sec. 3.4, eq. 18).
"""

from typing import Dict, List, Optional

import torch
from detectron2.config import configurable
from detectron2.modeling.roi_heads import mask_head as d2_mask_head
from detectron2.modeling.roi_heads.mask_head import (
    ROI_MASK_HEAD_REGISTRY,
    MaskRCNNConvUpsampleHead,
    mask_rcnn_inference,
)
from detectron2.structures import Instances
from detectron2.utils.events import get_event_storage

from ir_d2.layers.mask_losses import _check_lovasz, ir_mask_loss

__all__ = ["IRMaskRCNNConvUpsampleHead", "MASK_LOSS_KEYS", "ir_mask_rcnn_loss"]

#: the keys of ``MODEL.ROI_MASK_HEAD`` that set :func:`ir_d2.layers.ir_mask_loss`, each its
#: argument's name in capitals
MASK_LOSS_KEYS = (
    "BCE_WEIGHT",
    "DICE_WEIGHT",
    "LOVASZ_WEIGHT",
    "DICE_SMOOTH",
    "LOVASZ",
    "LOVASZ_CLASSES",
)


class _CapturedBCE:
    """Stands in for ``torch.nn.functional`` in detectron2's mask head module during one
    ``mask_rcnn_loss`` call: its BCE keeps the logits and targets it is handed and returns 0."""

    def __init__(self):
        self.handed = None

    def __getattr__(self, name):
        return getattr(torch.nn.functional, name)

    def binary_cross_entropy_with_logits(self, logits, targets, reduction="mean"):
        self.handed = (logits, targets)
        return logits.sum() * 0


def _mask_rcnn_targets(pred_mask_logits: torch.Tensor, instances: List[Instances], vis_period: int):
    """
    What detectron2's ``mask_rcnn_loss`` hands its BCE: the logits of the GT class (R, M, M; the
    single channel when class-agnostic) and the GT masks cropped by the proposal boxes and resized
    to M (R, M, M, float32), after it writes its ``mask_rcnn/accuracy``, ``false_positive``,
    ``false_negative`` (and every ``vis_period`` its images) to the EventStorage; ``None`` when no
    image has an ROI.
    """
    # detectron2 builds these targets inside mask_rcnn_loss and returns only their BCE. Its call
    # runs here with its BCE captured; that stands in for one line of the pinned detectron2,
    # ``mask_loss = F.binary_cross_entropy_with_logits(pred_mask_logits, gt_masks,
    # reduction="mean")`` (detectron2/modeling/roi_heads/mask_head.py), and
    # tests/test_roi_heads.py::test_mask_targets_are_detectron2s fails when that function changes.
    if pred_mask_logits.size(2) != pred_mask_logits.size(3):
        raise ValueError(f"mask predictions must be square, got {tuple(pred_mask_logits.shape)}")
    capture, functional = _CapturedBCE(), d2_mask_head.F
    d2_mask_head.F = capture
    try:
        d2_mask_head.mask_rcnn_loss(pred_mask_logits, instances, vis_period)
    finally:
        d2_mask_head.F = functional
    return capture.handed


def ir_mask_rcnn_loss(
    pred_mask_logits: torch.Tensor,
    instances: List[Instances],
    *,
    vis_period: int = 0,
    **loss_kwargs,
) -> torch.Tensor:
    """
    Wang & Ren 2025, eq. 18, on the ROIs of detectron2's ``mask_rcnn_loss``: the logits of the GT
    class (or the single class-agnostic channel) against the GT masks cropped by the proposal
    boxes and resized to the mask side (``BitMasks/PolygonMasks.crop_and_resize``), then
    :func:`ir_d2.layers.ir_mask_loss` with ``loss_kwargs`` (its keyword arguments; its defaults are
    the paper's weights 1, 1, 0.1). Weights (1, 0, 0) give ``mask_rcnn_loss``'s loss and gradient
    up to float32 rounding.

    Writes detectron2's ``mask_rcnn/accuracy``, ``false_positive``, ``false_negative`` and the
    unweighted parts ``mask_rcnn/loss_mask_bce``, ``mask_rcnn/loss_mask_dice``,
    ``mask_rcnn/loss_mask_lovasz`` to the EventStorage (so TensorBoard shows each). No ROI gives
    ``pred_mask_logits.sum() * 0``.
    """
    targets = _mask_rcnn_targets(pred_mask_logits, instances, vis_period)
    if targets is None:
        return pred_mask_logits.sum() * 0
    logits, gt_masks = targets
    loss, parts = ir_mask_loss(logits, gt_masks, **loss_kwargs)
    storage = get_event_storage()
    for name, value in parts.items():
        storage.put_scalar(f"mask_rcnn/loss_mask_{name}", value)
    return loss


@ROI_MASK_HEAD_REGISTRY.register()
class IRMaskRCNNConvUpsampleHead(MaskRCNNConvUpsampleHead):
    """
    detectron2's ``MaskRCNNConvUpsampleHead`` (same layers and parameter names, so COCO
    checkpoints load) trained with :func:`ir_mask_rcnn_loss`, weighted by
    ``MODEL.ROI_MASK_HEAD.BCE_WEIGHT``, ``DICE_WEIGHT``, ``LOVASZ_WEIGHT`` (paper: 1, 1, 0.1), with
    ``DICE_SMOOTH``, ``LOVASZ`` ("softmax", the paper's eqs. 15-17, or "hinge") and
    ``LOVASZ_CLASSES``. Inference is unchanged.
    """

    @configurable
    def __init__(self, input_shape, *, mask_loss: Optional[Dict] = None, **kwargs):
        """
        Args:
            mask_loss: keyword arguments of :func:`ir_d2.layers.ir_mask_loss` (by default its
                own, the paper's); the config sets each from ``MODEL.ROI_MASK_HEAD`` (the key is
                the argument's name in capitals, :data:`MASK_LOSS_KEYS`).
            input_shape, kwargs: as detectron2's ``MaskRCNNConvUpsampleHead``.
        """
        super().__init__(input_shape, **kwargs)
        # plain values, not modules: the head is an nn.Sequential whose layers() runs every child
        self.mask_loss = dict(mask_loss or {})
        unknown = sorted(set(self.mask_loss) - {key.lower() for key in MASK_LOSS_KEYS})
        if unknown:  # else a misspelt argument would fail only at the first training step
            raise TypeError(
                f"mask_loss: unknown argument(s) {unknown} of ir_mask_loss; expected some of "
                f"{[key.lower() for key in MASK_LOSS_KEYS]}"
            )
        _check_lovasz(
            self.mask_loss.get("lovasz", "softmax"), self.mask_loss.get("lovasz_classes", "present")
        )
        for key in ("BCE_WEIGHT", "DICE_WEIGHT", "LOVASZ_WEIGHT", "DICE_SMOOTH"):
            value = self.mask_loss.get(key.lower(), 0.0)
            if value < 0:
                raise ValueError(f"MODEL.ROI_MASK_HEAD.{key} must be >= 0, got {value}")

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["mask_loss"] = {key.lower(): cfg.MODEL.ROI_MASK_HEAD[key] for key in MASK_LOSS_KEYS}
        return ret

    def forward(self, x, instances: List[Instances]):
        x = self.layers(x)
        if self.training:
            loss = ir_mask_rcnn_loss(x, instances, vis_period=self.vis_period, **self.mask_loss)
            return {"loss_mask": loss * self.loss_weight}
        mask_rcnn_inference(x, instances)
        return instances
