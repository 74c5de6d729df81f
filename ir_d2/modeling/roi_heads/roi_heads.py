# -*- coding: utf-8 -*-
"""StandardROIHeads whose box predictor carries the IoU-family box losses (Wang & Ren 2025)."""

from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads

from .fast_rcnn import IRFastRCNNOutputLayers

__all__ = ["IRROIHeads"]


@ROI_HEADS_REGISTRY.register()
class IRROIHeads(StandardROIHeads):
    """
    ``StandardROIHeads`` (box head, mask head, poolers, sampling unchanged) whose box predictor is
    :class:`IRFastRCNNOutputLayers`, so ``MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE`` may also be
    ``"siou"``, ``"eiou"``, ``"focal_siou"``, ``"focal_ciou"`` or ``"focal_eiou"``. The mask head
    is chosen as usual by ``MODEL.ROI_MASK_HEAD.NAME``.
    """

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        ret = super()._init_box_head(cfg, input_shape)
        ret["box_predictor"] = IRFastRCNNOutputLayers(cfg, ret["box_head"].output_shape)
        return ret
