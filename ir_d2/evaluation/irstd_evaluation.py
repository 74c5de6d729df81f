"""
IRSTDEvaluator: detectron2 DatasetEvaluator for binary small-target segmentation (IoU, nIoU, Pd,
Fa, F1 by :class:`IRSTDMetrics`), for ``inference_on_dataset`` and the trainer's evaluation.
"""

import json
import logging
import os
from collections import OrderedDict
from typing import Optional, Sequence

import numpy as np
from detectron2.data import DatasetCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager

from ir_d2.data.io import read_ir_mask

from .irstd_metrics import IRSTDMetrics

__all__ = ["IRSTDEvaluator", "build_irstd_evaluator", "instances_score_map", "load_irstd_mask"]


def load_irstd_mask(
    path: str, mask_threshold: int = 127, dataset_name: Optional[str] = None
) -> np.ndarray:
    """
    An IRSTD ground-truth mask as an HxW bool array at its original size: pixels above
    ``mask_threshold`` (``INPUT.IR.MASK_THRESHOLD``) are targets, so {0, 255} and IRSTD-1k's
    {0, 64, 255} masks both work. Read by :func:`ir_d2.data.read_ir_mask`, as the IR mappers do,
    so training and evaluation binarise a mask alike.
    """
    return read_ir_mask(path, threshold=mask_threshold, dataset_name=dataset_name).astype(bool)


def instances_score_map(instances) -> np.ndarray:
    """
    A detector's ``Instances`` (at the original size, as detectron2 returns them) as an HxW
    float map for :class:`IRSTDMetrics`: each pixel holds the highest score of the predicted
    masks covering it (0 where none does), so thresholding the map at the detector's score
    threshold gives the union of its output masks, and higher thresholds keep the masks of the
    more confident detections (a Pd-Fa curve over scores). Box-only instances mark each box's
    centre pixel instead (Pd matches targets by centroid, Fa counts one pixel per false box).
    """
    height, width = instances.image_size
    out = np.zeros((height, width), dtype=np.float32)
    if len(instances) == 0:
        return out
    scores = instances.scores.detach().float().cpu().numpy()
    if instances.has("pred_masks"):
        masks = instances.pred_masks.detach().cpu().numpy()
        if masks.dtype != bool:
            masks = masks > 0.5  # soft masks (N, H, W) in [0, 1]
        for mask, score in zip(masks, scores):  # in place, no frame-sized temporary per mask
            np.maximum(out, np.float32(score), out=out, where=mask)
        return out
    if not instances.has("pred_boxes"):
        raise ValueError("IRSTDEvaluator: 'instances' without pred_masks or pred_boxes.")
    centers = instances.pred_boxes.get_centers().detach().cpu().numpy()
    cols = np.clip(np.floor(centers[:, 0]).astype(int), 0, width - 1)
    rows = np.clip(np.floor(centers[:, 1]).astype(int), 0, height - 1)
    np.maximum.at(out, (rows, cols), scores.astype(np.float32))
    return out


class IRSTDEvaluator(DatasetEvaluator):
    """
    Evaluates the ``"sem_seg"`` output of :class:`IRSTDSegmentor` (a 1xHxW foreground probability
    at the original size), or the ``"instances"`` of a detector such as the BNSA Mask R-CNN (as
    the score map of :func:`instances_score_map`: the union of its masks, or its boxes' centres
    for a box-only model), against the ground-truth masks named by the dataset dicts'
    ``sem_seg_file_name``, with :class:`IRSTDMetrics`. Both families are thus scored by the same
    IoU, nIoU, Pd, Fa and F1 (:func:`build_irstd_evaluator` thresholds a detector's map at its
    ``MODEL.ROI_HEADS.SCORE_THRESH_TEST``). Results are returned as
    ``{"irstd": {"IoU", "nIoU", "Pd", "Fa", "F1", ...}}`` and, with ``output_dir``, also written to
    ``<output_dir>/irstd_evaluation.json``.

    The ground truth is the input's own ``"sem_seg"`` ({0, 1}, as ``IRSTDDatasetMapper`` returns
    it at test time) when it is at the prediction's size; otherwise the mask file of the input is
    read and binarised with ``mask_threshold``. That file is looked up by its ``file_name`` in
    ``DatasetCatalog.get(dataset_name)`` (as detectron2's SemSegEvaluator does), or taken from
    the input's own ``sem_seg_file_name`` when it has one.
    """

    def __init__(
        self,
        dataset_name: str,
        output_dir: Optional[str] = None,
        *,
        threshold: float = 0.5,
        distance: float = 3.0,
        roc_thresholds: Sequence[float] = (),
        distributed: bool = True,
        mask_threshold: int = 127,
    ):
        self._logger = logging.getLogger(__name__)
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._distributed = distributed
        self._mask_threshold = mask_threshold
        self._metrics_args = dict(
            threshold=threshold, distance=distance, roc_thresholds=tuple(roc_thresholds)
        )
        self._gt_files = None
        self.reset()

    def reset(self):
        self._metrics = IRSTDMetrics(**self._metrics_args)

    def _gt_file(self, input_dict) -> str:
        if "sem_seg_file_name" in input_dict:
            return input_dict["sem_seg_file_name"]
        if self._gt_files is None:
            self._gt_files = {
                d["file_name"]: d.get("sem_seg_file_name")
                for d in DatasetCatalog.get(self._dataset_name)
            }
        gt_file = self._gt_files.get(input_dict["file_name"])
        if gt_file is None:
            raise KeyError(
                f"IRSTDEvaluator: no sem_seg_file_name for {input_dict['file_name']} in dataset "
                f"{self._dataset_name!r}."
            )
        return gt_file

    def _num_skipped(self, num_evaluated: int) -> int:
        """Frames of the dataset that were not evaluated (0 for a dataset that is not
        registered, e.g. frames fed by hand)."""
        if self._dataset_name not in DatasetCatalog:
            return 0
        return max(0, len(DatasetCatalog.get(self._dataset_name)) - num_evaluated)

    def process(self, inputs, outputs):
        for input_dict, output in zip(inputs, outputs):
            if "sem_seg" in output:
                prob = output["sem_seg"]
                prob = prob.detach().float().cpu().numpy() if hasattr(prob, "detach") else prob
            elif "instances" in output:
                prob = instances_score_map(output["instances"])
            else:
                raise ValueError(
                    f"IRSTDEvaluator needs a 'sem_seg' or an 'instances' output, got "
                    f"{sorted(output)} for {input_dict['file_name']}."
                )
            prob = np.asarray(prob)
            if prob.ndim == 3:
                if prob.shape[0] != 1:
                    raise ValueError(
                        f"IRSTDEvaluator expects a 1xHxW foreground probability as 'sem_seg', "
                        f"got {prob.shape} for {input_dict['file_name']}."
                    )
                prob = prob[0]
            gt = input_dict.get("sem_seg")
            if gt is not None and tuple(gt.shape[-2:]) == prob.shape:
                # the test mapper's {0, 1} mask at the original size: no second read of the file
                gt = np.asarray(gt) > 0
            else:
                gt_file = self._gt_file(input_dict)
                gt = load_irstd_mask(gt_file, self._mask_threshold, self._dataset_name)
                if prob.shape != gt.shape:
                    raise ValueError(
                        f"IRSTDEvaluator: prediction {prob.shape} for {input_dict['file_name']} "
                        f"is not at the size of its mask {gt_file} {gt.shape}; pass 'height' and "
                        "'width' in the inputs so the model returns the original size."
                    )
            self._metrics.update(prob, gt)

    def evaluate(self):
        metrics = self._metrics
        if self._distributed:
            comm.synchronize()
            gathered = comm.all_gather(metrics)
            if not comm.is_main_process():
                return {}
            metrics = IRSTDMetrics(**self._metrics_args)
            for other in gathered:
                metrics.merge(other)
        if metrics.num_images == 0:
            self._logger.warning(f"IRSTDEvaluator on {self._dataset_name}: no images processed.")
            return {}
        results = metrics.compute()
        skipped = self._num_skipped(metrics.num_images)
        if skipped:
            self._logger.warning(
                f"IRSTDEvaluator on {self._dataset_name}: {metrics.num_images} of "
                f"{metrics.num_images + skipped} frames were evaluated ({skipped} skipped as bad "
                "samples); the metrics are over those frames only"
            )
        if self._output_dir:
            PathManager.mkdirs(self._output_dir)
            with PathManager.open(
                os.path.join(self._output_dir, "irstd_evaluation.json"), "w"
            ) as f:
                record = {**results, "num_images": metrics.num_images, "num_skipped": skipped}
                json.dump(record, f, indent=2)
        self._logger.info(
            f"IRSTD metrics on {self._dataset_name} ({metrics.num_images} images, "
            f"{metrics.gt_targets} targets): {results}"
        )
        return OrderedDict({"irstd": results})


def build_irstd_evaluator(cfg, dataset_name: str, output_dir: Optional[str] = None):
    """
    An :class:`IRSTDEvaluator` configured by ``cfg.TEST.IRSTD.*`` and
    ``cfg.INPUT.IR.MASK_THRESHOLD``. For a model other than ``IRSTDSegmentor`` (a detector whose
    ``instances`` are scored) the operating point is ``MODEL.ROI_HEADS.SCORE_THRESH_TEST``: every
    mask the detector outputs counts, as in its COCO evaluation.
    """
    if cfg.MODEL.META_ARCHITECTURE == "IRSTDSegmentor":
        threshold = cfg.TEST.IRSTD.THRESHOLD
    else:
        threshold = cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST
    return IRSTDEvaluator(
        dataset_name,
        output_dir,
        threshold=threshold,
        distance=cfg.TEST.IRSTD.DISTANCE,
        roc_thresholds=tuple(cfg.TEST.IRSTD.ROC_THRESHOLDS),
        distributed=True,
        mask_threshold=cfg.INPUT.IR.MASK_THRESHOLD,
    )
