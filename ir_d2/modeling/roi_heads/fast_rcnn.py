# -*- coding: utf-8 -*-
"""
Fast R-CNN box predictor with the IoU-family box losses of Wang & Ren 2025 (sec. 3.3, Table 2).
"""

from detectron2.config import configurable
from detectron2.layers import nonzero_tuple
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers

from ir_d2.layers.box_losses import IOU_LOSS_TYPES, iou_box_loss

__all__ = ["IRFastRCNNOutputLayers", "D2_BOX_LOSS_TYPES"]

#: Values of MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE that detectron2 itself handles.
D2_BOX_LOSS_TYPES = ("smooth_l1", "giou", "diou", "ciou")


class IRFastRCNNOutputLayers(FastRCNNOutputLayers):
    """
    detectron2's ``FastRCNNOutputLayers`` whose ``box_reg_loss`` also accepts ``"siou"``,
    ``"eiou"``, ``"focal_siou"``, ``"focal_ciou"`` and ``"focal_eiou"``
    (``MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE``). As detectron2's giou path, these losses act on
    the decoded boxes of the foreground proposals (class-specific deltas of the GT class), are
    summed and divided by the number of sampled proposals, and keep the name ``loss_box_reg``.
    detectron2's own types go to detectron2 unchanged.
    """

    @configurable
    def __init__(self, input_shape, *, focal_iou_gamma: float = 0.5, **kwargs):
        """
        Args:
            focal_iou_gamma: exponent of the detached IoU weight of the focal losses (eq. 12).
            others: as :class:`FastRCNNOutputLayers`.
        """
        super().__init__(input_shape, **kwargs)
        valid = D2_BOX_LOSS_TYPES + IOU_LOSS_TYPES
        if self.box_reg_loss_type not in valid:
            raise ValueError(
                f"MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE={self.box_reg_loss_type!r} is not one of "
                f"{valid}"
            )
        if focal_iou_gamma < 0:
            raise ValueError(
                f"MODEL.ROI_BOX_HEAD.FOCAL_IOU_GAMMA must be >= 0, got {focal_iou_gamma}"
            )
        if self.box_reg_loss_type in IOU_LOSS_TYPES and len(self.box2box_transform.weights) != 4:
            raise ValueError(
                f"MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE={self.box_reg_loss_type!r} needs "
                "axis-aligned boxes (4 regression weights), not rotated ones"
            )
        self.focal_iou_gamma = focal_iou_gamma

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["focal_iou_gamma"] = cfg.MODEL.ROI_BOX_HEAD.FOCAL_IOU_GAMMA
        return ret

    def box_reg_loss(self, proposal_boxes, gt_boxes, pred_deltas, gt_classes):
        """
        Args: as :meth:`FastRCNNOutputLayers.box_reg_loss` (proposal/GT boxes (R, 4), deltas
        (R, 4) or (R, K * 4), GT classes (R,)).
        """
        if self.box_reg_loss_type not in IOU_LOSS_TYPES:
            return super().box_reg_loss(proposal_boxes, gt_boxes, pred_deltas, gt_classes)
        box_dim = proposal_boxes.shape[1]
        # foreground proposals only, with the deltas of their GT class (as detectron2)
        fg_inds = nonzero_tuple((gt_classes >= 0) & (gt_classes < self.num_classes))[0]
        if pred_deltas.shape[1] == box_dim:  # class-agnostic regression
            fg_pred_deltas = pred_deltas[fg_inds]
        else:
            fg_pred_deltas = pred_deltas.view(-1, self.num_classes, box_dim)[
                fg_inds, gt_classes[fg_inds]
            ]
        fg_pred_boxes = self.box2box_transform.apply_deltas(fg_pred_deltas, proposal_boxes[fg_inds])
        loss_box_reg = iou_box_loss(
            self.box_reg_loss_type,
            fg_pred_boxes,
            gt_boxes[fg_inds],
            gamma=self.focal_iou_gamma,
            reduction="sum",
        )
        # normalised by all sampled proposals, as detectron2 (equal weight per foreground box)
        return loss_box_reg / max(gt_classes.numel(), 1.0)
