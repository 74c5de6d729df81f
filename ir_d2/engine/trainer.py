"""
The ir_d2 trainer: detectron2's ``DefaultTrainer`` with the IR mappers, the evaluator chosen by the
dataset's evaluator type, and the optimizers detectron2 lacks.
"""

import os

from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultTrainer

from ir_d2.data.build import build_ir_test_loader, build_ir_train_loader
from ir_d2.evaluation import IRCOCOEvaluator, build_irstd_evaluator

from .optimizer import build_ir_optimizer

__all__ = ["IRTrainer"]


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
      "WarmupCosineLR", "WarmupStepWithFixedGammaLR").
    """

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
