# -*- coding: utf-8 -*-
"""
Mask head with the BCE + Dice + Lovasz mask loss of Wang & Ren 2025 (sec. 3.4, eq. 18).
"""

from typing import List

import torch
from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling.roi_heads.mask_head import (
    ROI_MASK_HEAD_REGISTRY,
    MaskRCNNConvUpsampleHead,
    mask_rcnn_inference,
)
from detectron2.structures import Instances
from detectron2.utils.events import get_event_storage

from ir_d2.layers.losses import _check_lovasz, ir_mask_loss

__all__ = ["IRMaskRCNNConvUpsampleHead", "ir_mask_rcnn_loss"]


# detectron2's mask_rcnn_loss builds the cropped GT masks inside and returns only the BCE, and no
# other detectron2 function returns them, so its GT extraction and its mask_rcnn/* logging are
# repeated below, line for line; test_bce_only_equals_detectron2_mask_rcnn_loss checks that weights
# (1, 0, 0) still give its loss, gradient and accuracy exactly.
def _mask_targets(pred_mask_logits: torch.Tensor, instances: List[Instances]):
    """The logits of the GT class (R, M, M) and the GT masks cropped by the proposal boxes and
    resized to M (R, M, M, float32), as in ``mask_rcnn_loss``; ``(None, None)`` when no ROI."""
    cls_agnostic_mask = pred_mask_logits.size(1) == 1
    mask_side_len = pred_mask_logits.size(2)
    if pred_mask_logits.size(2) != pred_mask_logits.size(3):
        raise ValueError(f"mask predictions must be square, got {tuple(pred_mask_logits.shape)}")
    gt_classes, gt_masks = [], []
    for instances_per_image in instances:
        if len(instances_per_image) == 0:
            continue
        if not cls_agnostic_mask:
            gt_classes.append(instances_per_image.gt_classes.to(dtype=torch.int64))
        gt_masks.append(
            instances_per_image.gt_masks.crop_and_resize(
                instances_per_image.proposal_boxes.tensor, mask_side_len
            ).to(device=pred_mask_logits.device)
        )
    if len(gt_masks) == 0:
        return None, None
    if cls_agnostic_mask:
        logits = pred_mask_logits[:, 0]
    else:
        indices = torch.arange(pred_mask_logits.size(0))
        logits = pred_mask_logits[indices, cat(gt_classes, dim=0)]
    return logits, cat(gt_masks, dim=0).to(dtype=torch.float32)


def _log_mask_stats(logits, gt_masks, vis_period):
    """``mask_rcnn_loss``'s ``mask_rcnn/*`` accuracy scalars and optional visualisation."""
    gt_bool = gt_masks > 0.5  # the same as mask_rcnn_loss's for bool and float masks
    mask_incorrect = (logits > 0.0) != gt_bool
    mask_accuracy = 1 - (mask_incorrect.sum().item() / max(mask_incorrect.numel(), 1.0))
    num_positive = gt_bool.sum().item()
    false_positive = (mask_incorrect & ~gt_bool).sum().item() / max(
        gt_bool.numel() - num_positive, 1.0
    )
    false_negative = (mask_incorrect & gt_bool).sum().item() / max(num_positive, 1.0)
    storage = get_event_storage()
    storage.put_scalar("mask_rcnn/accuracy", mask_accuracy)
    storage.put_scalar("mask_rcnn/false_positive", false_positive)
    storage.put_scalar("mask_rcnn/false_negative", false_negative)
    if vis_period > 0 and storage.iter % vis_period == 0:
        vis_masks = torch.cat([logits.sigmoid(), gt_masks], axis=2)
        name = "Left: mask prediction;   Right: mask GT"
        for idx, vis_mask in enumerate(vis_masks):
            storage.put_image(name + f" ({idx})", torch.stack([vis_mask] * 3, axis=0))
    return storage


def ir_mask_rcnn_loss(
    pred_mask_logits: torch.Tensor,
    instances: List[Instances],
    *,
    bce_weight: float = 1.0,
    dice_weight: float = 1.0,
    lovasz_weight: float = 0.1,
    dice_smooth: float = 1.0,
    lovasz: str = "softmax",
    lovasz_classes: str = "present",
    vis_period: int = 0,
) -> torch.Tensor:
    """
    Wang & Ren 2025, eq. 18, on the ROIs of detectron2's ``mask_rcnn_loss``: the logits of the GT
    class (or the single class-agnostic channel) against the GT masks cropped by the proposal
    boxes and resized to the mask side (``BitMasks/PolygonMasks.crop_and_resize``), then
    :func:`ir_d2.layers.ir_mask_loss`. Weights (1, 0, 0) give exactly ``mask_rcnn_loss``.

    Writes detectron2's ``mask_rcnn/accuracy``, ``false_positive``, ``false_negative`` and the
    unweighted parts ``mask_rcnn/loss_mask_bce``, ``mask_rcnn/loss_mask_dice``,
    ``mask_rcnn/loss_mask_lovasz`` to the EventStorage (so TensorBoard shows each). No ROI gives
    ``pred_mask_logits.sum() * 0``.
    """
    logits, gt_masks = _mask_targets(pred_mask_logits, instances)
    if logits is None:
        return pred_mask_logits.sum() * 0
    storage = _log_mask_stats(logits, gt_masks, vis_period)
    loss, parts = ir_mask_loss(
        logits,
        gt_masks,
        bce_weight=bce_weight,
        dice_weight=dice_weight,
        lovasz_weight=lovasz_weight,
        dice_smooth=dice_smooth,
        lovasz=lovasz,
        lovasz_classes=lovasz_classes,
    )
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
    def __init__(
        self,
        input_shape,
        *,
        bce_weight: float = 1.0,
        dice_weight: float = 1.0,
        lovasz_weight: float = 0.1,
        dice_smooth: float = 1.0,
        lovasz: str = "softmax",
        lovasz_classes: str = "present",
        **kwargs,
    ):
        super().__init__(input_shape, **kwargs)
        _check_lovasz(lovasz, lovasz_classes)
        weights = {
            "BCE_WEIGHT": bce_weight,
            "DICE_WEIGHT": dice_weight,
            "LOVASZ_WEIGHT": lovasz_weight,
            "DICE_SMOOTH": dice_smooth,
        }
        for key, value in weights.items():
            if value < 0:
                raise ValueError(f"MODEL.ROI_MASK_HEAD.{key} must be >= 0, got {value}")
        # plain floats, not modules: the head is an nn.Sequential whose layers() runs every child
        self.bce_weight = float(bce_weight)
        self.dice_weight = float(dice_weight)
        self.lovasz_weight = float(lovasz_weight)
        self.dice_smooth = float(dice_smooth)
        self.lovasz = lovasz
        self.lovasz_classes = lovasz_classes

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret.update(
            bce_weight=cfg.MODEL.ROI_MASK_HEAD.BCE_WEIGHT,
            dice_weight=cfg.MODEL.ROI_MASK_HEAD.DICE_WEIGHT,
            lovasz_weight=cfg.MODEL.ROI_MASK_HEAD.LOVASZ_WEIGHT,
            dice_smooth=cfg.MODEL.ROI_MASK_HEAD.DICE_SMOOTH,
            lovasz=cfg.MODEL.ROI_MASK_HEAD.LOVASZ,
            lovasz_classes=cfg.MODEL.ROI_MASK_HEAD.LOVASZ_CLASSES,
        )
        return ret

    def forward(self, x, instances: List[Instances]):
        x = self.layers(x)
        if self.training:
            loss = ir_mask_rcnn_loss(
                x,
                instances,
                bce_weight=self.bce_weight,
                dice_weight=self.dice_weight,
                lovasz_weight=self.lovasz_weight,
                dice_smooth=self.dice_smooth,
                lovasz=self.lovasz,
                lovasz_classes=self.lovasz_classes,
                vis_period=self.vis_period,
            )
            return {"loss_mask": loss * self.loss_weight}
        mask_rcnn_inference(x, instances)
        return instances
