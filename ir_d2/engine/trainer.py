"""
The ir_d2 trainer: detectron2's ``DefaultTrainer`` with the IR mappers, the evaluator chosen by the
dataset's evaluator type, and the optimizers detectron2 lacks.
"""

import contextlib
import os

import torch
from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultTrainer
from detectron2.engine import defaults as d2_defaults

from ir_d2.data.build import build_ir_test_loader, build_ir_train_loader
from ir_d2.evaluation import IRCOCOEvaluator, build_irstd_evaluator

from .cpu_memory import keep_freed_memory
from .optimizer import build_ir_optimizer

__all__ = ["IRTrainer", "ddp_device_kwargs"]


def ddp_device_kwargs(model) -> dict:
    """
    ``DistributedDataParallel``'s device arguments for ``model``: detectron2's default (its local
    GPU, ``device_ids=[local_rank]``) for a CUDA model, ``device_ids=None`` for a CPU model, which
    torch requires (detectron2's ``create_ddp_model`` would pass ``[local_rank]`` and fail).
    """
    param = next(model.parameters(), None)
    if param is not None and param.device.type == "cpu":
        return {"device_ids": None}
    return {}


@contextlib.contextmanager
def _cpu_aware_ddp():
    """
    Within the block, detectron2's ``create_ddp_model`` passes :func:`ddp_device_kwargs`. It stands
    in for one line of the pinned detectron2, ``model = create_ddp_model(model,
    broadcast_buffers=False)`` in ``DefaultTrainer.__init__`` (detectron2/engine/defaults.py),
    which offers no hook for DDP's arguments; ``tests/test_distributed.py`` fails when that line
    changes.
    """
    original = d2_defaults.create_ddp_model

    def create_ddp_model(model, **kwargs):
        return original(model, **{**ddp_device_kwargs(model), **kwargs})

    d2_defaults.create_ddp_model = create_ddp_model
    try:
        yield
    finally:
        d2_defaults.create_ddp_model = original


class IRTrainer(DefaultTrainer):
    """
    ``DefaultTrainer`` for ir_d2 configs:

    - the train and test mappers come from ``INPUT.DATASET_MAPPER_NAME``
      (:func:`ir_d2.data.build_ir_mapper`), the loaders from :mod:`ir_d2.data.build` (with
      ``DATALOADER.SKIP_BAD_SAMPLES``, a clear error when every training sample is bad, and no
      substitute frame ever evaluated in place of a skipped one);
    - the evaluator from the dataset's ``evaluator_type``: "coco" gives :class:`IRCOCOEvaluator`
      (bbox, and segm when ``MODEL.MASK_ON``), "irstd" gives ``IRSTDEvaluator`` (IoU, nIoU, Pd,
      Fa, F1). An unknown type raises, naming the dataset, instead of detectron2's silent warning;
    - the optimizer from ``SOLVER.OPTIMIZER`` ("SGD", "Adam", "AdamW", "Adagrad");
    - on the CPU, freed memory kept for reuse (``IR_CPU_KEEP_FREED_MEMORY``);
    - the schedule from detectron2's ``SOLVER.LR_SCHEDULER_NAME`` ("WarmupMultiStepLR",
      "WarmupCosineLR", "WarmupStepWithFixedGammaLR");
    - several processes (``train_net.py --num-gpus N``, detectron2's ``launch``) on GPUs as
      detectron2 runs them, and on CPUs too (gloo): the model is wrapped in
      ``DistributedDataParallel`` with the device arguments of :func:`ddp_device_kwargs`.
    """

    def __init__(self, cfg):
        """detectron2's ``DefaultTrainer.__init__``, its model wrapped in
        ``DistributedDataParallel`` with :func:`ddp_device_kwargs` (:func:`_cpu_aware_ddp`).
        On the CPU, with ``IR_CPU_KEEP_FREED_MEMORY``, malloc keeps freed memory for reuse first
        (:func:`~ir_d2.engine.cpu_memory.keep_freed_memory`, before the loader's workers fork)."""
        if cfg.IR_CPU_KEEP_FREED_MEMORY and torch.device(cfg.MODEL.DEVICE).type == "cpu":
            keep_freed_memory()
        with _cpu_aware_ddp():
            super().__init__(cfg)

    @classmethod
    def build_train_loader(cls, cfg):
        return build_ir_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_ir_test_loader(cfg, dataset_name)

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_ir_optimizer(cfg, model)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type", None)
        if evaluator_type == "coco":
            tasks = ("bbox", "segm") if cfg.MODEL.MASK_ON else ("bbox",)
            return IRCOCOEvaluator(dataset_name, tasks=tasks, output_dir=output_folder)
        if evaluator_type == "irstd":
            return build_irstd_evaluator(cfg, dataset_name, output_folder)
        raise ValueError(
            f"Dataset {dataset_name!r} (DATASETS.TEST) has evaluator_type {evaluator_type!r}; "
            "ir_d2 evaluates 'coco' (instances) and 'irstd' (small-target masks) datasets. "
            f"Set MetadataCatalog.get({dataset_name!r}).evaluator_type."
        )
