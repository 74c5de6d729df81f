"""Training and inference helpers of ir_d2."""

from .defaults import WeightsUnavailableError, ensure_weights, setup_cfg  # noqa: F401
from .exported_predictor import ExportedPredictor, is_exported_model  # noqa: F401
from .launch import launch  # noqa: F401
from .optimizer import build_ir_optimizer  # noqa: F401
from .predictor import IRPredictor  # noqa: F401
from .trainer import IRTrainer  # noqa: F401
from .visualization_demo import VisualizationDemo  # noqa: F401
