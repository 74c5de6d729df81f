"""Optimizers detectron2's ``build_optimizer`` lacks: Adam, AdamW and Adagrad (SOLVER.OPTIMIZER)."""

import torch
from detectron2.solver import build_optimizer as d2_build_optimizer
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping

__all__ = ["build_ir_optimizer", "OPTIMIZERS"]

OPTIMIZERS = ("SGD", "Adam", "AdamW", "Adagrad")


def build_ir_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    """
    Build the optimizer named by ``cfg.SOLVER.OPTIMIZER``.

    "SGD" is detectron2's ``build_optimizer`` unchanged. "Adam", "AdamW" and "Adagrad" (SGEM uses
    Adam, SIRST-5K Adagrad) use detectron2's parameter groups (``SOLVER.WEIGHT_DECAY_NORM``,
    ``BIAS_LR_FACTOR``, ``WEIGHT_DECAY_BIAS``), ``SOLVER.BASE_LR``, ``SOLVER.WEIGHT_DECAY``,
    ``SOLVER.BETAS`` (Adam/AdamW), ``SOLVER.EPS`` (0: the optimizer's default) and gradient
    clipping (``SOLVER.CLIP_GRADIENTS``).

    ``SOLVER.EPS`` 0 matters: Adagrad's default 1e-10 under Adam makes every weight with a
    near-zero gradient step by the full lr (``m / (sqrt(v) + eps)`` ~ sign(g)); the SIRST-5K
    recipe's AFF U-Net trained with Adam that way never left the Soft-IoU plateau
    (benchmarks/README.md).
    """
    name = cfg.SOLVER.OPTIMIZER
    if name == "SGD":
        return d2_build_optimizer(cfg, model)
    if name not in OPTIMIZERS:
        raise ValueError(f"SOLVER.OPTIMIZER = {name!r}: expected one of {list(OPTIMIZERS)}.")
    params = get_default_optimizer_params(
        model,
        base_lr=cfg.SOLVER.BASE_LR,
        weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
        weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
    )
    kwargs = {"lr": cfg.SOLVER.BASE_LR, "weight_decay": cfg.SOLVER.WEIGHT_DECAY}
    if cfg.SOLVER.EPS < 0:
        raise ValueError(
            f"SOLVER.EPS must be >= 0 (0: the optimizer's default), got {cfg.SOLVER.EPS}"
        )
    if cfg.SOLVER.EPS > 0:
        kwargs["eps"] = cfg.SOLVER.EPS
    if name in ("Adam", "AdamW"):
        kwargs["betas"] = tuple(cfg.SOLVER.BETAS)
    optimizer_cls = getattr(torch.optim, name)
    return maybe_add_gradient_clipping(cfg, optimizer_cls)(params, **kwargs)
