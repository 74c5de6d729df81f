"""Training and inference helpers of ir_d2."""

from .predictor import IRPredictor  # noqa: F401
