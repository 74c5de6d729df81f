"""
Functions that detectron2's ``launch`` runs in each process of the multi-process tests
(test_distributed.py). They live in a module of their own because ``launch`` spawns fresh
interpreters, which import them by name; each registers its datasets itself through the config
(``DATASETS.IR_REGISTER``), as a real run does.
"""

import atexit
import json
import os
import time
import zlib

import cv2
import numpy as np
import torch
import torch.distributed as dist
from detectron2.data import DatasetCatalog
from detectron2.data import detection_utils as utils
from detectron2.evaluation import inference_on_dataset
from detectron2.structures import Instances
from detectron2.utils import comm
from torch import nn

from ir_d2.engine.defaults import setup_cfg
from ir_d2.engine.trainer import IRTrainer
from ir_d2.evaluation import load_irstd_mask


def unwrap(model):
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def record_open_group_at_exit(prefix):
    """At this process's exit (after ``launch``'s worker returned), write whether its process
    group is still open to ``<prefix>.rank<r>``; a group left open is then closed, at a barrier,
    so this test's own exit cannot race."""
    rank = comm.get_rank()

    def record():
        with open(f"{prefix}.rank{rank}", "w") as f:
            f.write(str(dist.is_initialized()))
        if dist.is_initialized():  # left open (detectron2's launch): closed here, safely
            dist.barrier()
            dist.destroy_process_group()

    atexit.register(record)
    comm.synchronize()  # a collective the closing barrier follows


def finish_then_abort(prefix, when):
    """Write ``<prefix>.rank<r>``, then rank 1 dies of SIGABRT: ``when`` "in_job" before the job
    returns, "at_exit" in the interpreter's teardown, after ``launch``'s worker returned and once
    rank 0 has reached its own teardown (so the abort cannot overtake rank 0's marker)."""
    rank = comm.get_rank()
    comm.synchronize()
    with open(f"{prefix}.rank{rank}", "w") as f:
        f.write("done")
    if rank == 1 and when == "in_job":
        os.abort()
    if when != "at_exit":
        return
    exiting = f"{prefix}.rank0.exiting"
    if rank == 0:
        atexit.register(lambda: open(exiting, "w").close())
    else:

        def abort_after_rank0():
            deadline = time.monotonic() + 60
            while not os.path.exists(exiting) and time.monotonic() < deadline:
                time.sleep(0.01)
            os.abort()

        atexit.register(abort_after_rank0)


def train_and_save_rank_state(config_file, opts, name):
    """Train with :class:`IRTrainer`, then save this rank's whole state (parameters and buffers)
    to ``OUTPUT_DIR/<name>.rank<r>.pth``."""
    cfg = setup_cfg(config_file, opts)
    trainer = IRTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    state = {k: v.detach().cpu().clone() for k, v in unwrap(trainer.model).state_dict().items()}
    torch.save(state, f"{cfg.OUTPUT_DIR}/{name}.rank{comm.get_rank()}.pth")


def _rng(file_name):
    """A generator seeded by the frame's name: the same outputs in every process layout."""
    return np.random.default_rng(zlib.crc32(file_name.encode()))


class FixedOutputs(nn.Module):
    """
    A stand-in model whose outputs depend only on each frame's ground truth and name, so one
    process and two processes evaluate exactly the same predictions:

    - "sem_seg": the GT mask blurred and scaled by a random factor, plus sparse bright noise (some
      targets missed, some false alarms);
    - "mask_instances": each GT target (8-connected component) as an instance with a random
      score, plus one false square;
    - "coco": the dataset's own annotations with boxes moved by up to 2 px, random scores and one
      false detection per frame.
    """

    def __init__(self, dataset_name, kind):
        super().__init__()
        self.kind = kind
        self.dicts = {d["file_name"]: d for d in DatasetCatalog.get(dataset_name)}

    def forward(self, inputs):
        return [getattr(self, f"_{self.kind}")(self.dicts[x["file_name"]]) for x in inputs]

    def _sem_seg(self, d):
        gt = load_irstd_mask(d["sem_seg_file_name"]).astype(np.float32)
        rng = _rng(d["file_name"])
        prob = cv2.GaussianBlur(gt, (5, 5), 1.5) * rng.uniform(0.6, 1.4)
        prob = np.clip(prob + 0.6 * rng.random(gt.shape) ** 20, 0.0, 1.0)
        return {"sem_seg": torch.from_numpy(prob.astype(np.float32))[None]}

    def _mask_instances(self, d):
        gt = load_irstd_mask(d["sem_seg_file_name"]).astype(np.uint8)
        rng = _rng(d["file_name"])
        n, labels = cv2.connectedComponents(gt, connectivity=8)
        masks = [labels == i for i in range(1, n)]
        false = np.zeros(gt.shape, bool)
        y, x = rng.integers(0, gt.shape[0] - 3), rng.integers(0, gt.shape[1] - 3)
        false[y : y + 3, x : x + 3] = True
        masks.append(false)
        inst = Instances(gt.shape)
        inst.pred_masks = torch.from_numpy(np.stack(masks))
        inst.scores = torch.from_numpy(rng.uniform(0.05, 1.0, len(masks)).astype(np.float32))
        inst.pred_classes = torch.zeros(len(masks), dtype=torch.int64)
        return {"instances": inst}

    def _coco(self, d):
        rng = _rng(d["file_name"])
        size = (d["height"], d["width"])
        gt = utils.annotations_to_instances(d["annotations"], size, mask_format="bitmask")
        boxes = gt.gt_boxes.tensor + torch.from_numpy(rng.uniform(-2, 2, (len(gt), 4))).float()
        false_box = torch.tensor([[2.0, 2.0, 12.0, 12.0]])
        false_mask = torch.zeros((1, *size), dtype=torch.bool)
        false_mask[0, 2:12, 2:12] = True
        inst = Instances(size)
        inst.pred_boxes = type(gt.gt_boxes)(torch.cat([boxes, false_box]))
        inst.pred_masks = torch.cat([gt.gt_masks.tensor, false_mask])
        inst.scores = torch.from_numpy(rng.uniform(0.05, 1.0, len(gt) + 1).astype(np.float32))
        inst.pred_classes = torch.cat([gt.gt_classes, torch.zeros(1, dtype=torch.int64)])
        return {"instances": inst}


def evaluate_fixed_outputs(runs, result_file):
    """
    For each ``(config_file, dataset, kind, mapper)`` of ``runs``: the ir_d2 test loader and
    evaluator of ``dataset`` over :class:`FixedOutputs` of ``kind``; the main process writes every
    result to ``result_file`` (JSON).
    """
    results = {}
    for config_file, dataset, kind, mapper in runs:
        cfg = setup_cfg(config_file, ["INPUT.DATASET_MAPPER_NAME", mapper])
        evaluator = IRTrainer.build_evaluator(cfg, dataset)
        loader = IRTrainer.build_test_loader(cfg, dataset)
        results[f"{dataset}/{kind}"] = inference_on_dataset(
            FixedOutputs(dataset, kind), loader, evaluator
        )
    if comm.is_main_process():
        with open(result_file, "w") as f:
            json.dump(results, f)
