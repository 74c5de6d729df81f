"""Evaluators and metrics of ir_d2."""

from ir_d2.structures.masks import connected_components, connected_targets

from .coco_evaluation import IRCOCOEvaluator
from .irstd_evaluation import (
    IRSTDEvaluator,
    build_irstd_evaluator,
    instances_score_map,
    load_irstd_mask,
)
from .irstd_metrics import IRSTDMetrics, match_targets

__all__ = ["IRCOCOEvaluator", "IRSTDEvaluator", "IRSTDMetrics", "build_irstd_evaluator"]
__all__ += ["instances_score_map", "load_irstd_mask"]
__all__ += ["connected_components", "connected_targets", "match_targets"]
