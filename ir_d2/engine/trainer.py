"""
The ir_d2 trainer: detectron2's ``DefaultTrainer`` with the IR mappers, the evaluator chosen by the
dataset's evaluator type, and the optimizers detectron2 lacks.
"""

import logging
import os
import weakref

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import MetadataCatalog
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase
from detectron2.engine.defaults import create_ddp_model
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ir_d2.data.build import build_ir_test_loader, build_ir_train_loader
from ir_d2.evaluation import IRCOCOEvaluator, build_irstd_evaluator

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
    - the schedule from detectron2's ``SOLVER.LR_SCHEDULER_NAME`` ("WarmupMultiStepLR",
      "WarmupCosineLR", "WarmupStepWithFixedGammaLR");
    - several processes (``train_net.py --num-gpus N``, detectron2's ``launch``) on GPUs as
      detectron2 runs them, and on CPUs too (gloo): the model is wrapped in
      ``DistributedDataParallel`` with the device arguments of :func:`ddp_device_kwargs`.
    """

    def __init__(self, cfg):
        """
        detectron2's ``DefaultTrainer.__init__``, step for step, but for the
        ``DistributedDataParallel`` wrapping, which passes :func:`ddp_device_kwargs` (that call
        sits in the middle of detectron2's constructor, so the constructor is written out here).
        """
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())

        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)

        model = create_ddp_model(model, broadcast_buffers=False, **ddp_device_kwargs(model))
        self._trainer = (AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer)(
            model, data_loader, optimizer
        )

        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = DetectionCheckpointer(
            model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self)
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg

        self.register_hooks(self.build_hooks())

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
