"""
The classical rows of SIRST-5K's Table I (Lu et al. 2024) that are cheap, the white top-hat and
the Max-Median filter (``ir_d2.modeling.TopHat`` / ``MaxMedian``), each tuned for IoU on a
training split (the element's or window's side and the threshold ``mean + k * std``), then scored
on the test split through ``train_net``'s own path: the config built with the tuned values,
``inference_on_dataset`` and ``IRSTDEvaluator`` (IoU, nIoU, Pd, Fa, F1), as every learned net is.

    IR_D2_DATASETS=datasets python3 benchmarks/bench_classical.py [--train nudt_sirst_train]
        [--test nudt_sirst_test] [--eval-frames 0]

The configs ``IRSTD/irstd_tophat_*`` and ``IRSTD/irstd_max_median_*`` hold the values this script
picked on NUDT-SIRST's training split; ``train_net --eval-only`` reproduces their test row.
"""

import argparse

import numpy as np
import torch
from _common import first_frames, markdown_table, use_datasets, write_report
from detectron2.data import DatasetCatalog
from detectron2.evaluation import inference_on_dataset
from detectron2.modeling import build_model

import ir_d2  # noqa: F401
from ir_d2.data import IRSTDDatasetMapper
from ir_d2.engine.defaults import setup_cfg
from ir_d2.engine.trainer import IRTrainer
from ir_d2.evaluation import IRSTDMetrics, build_irstd_evaluator
from ir_d2.modeling.irstd.classical import (
    ellipse_element,
    max_median_response,
    white_tophat_response,
)

TOOL = "benchmarks/bench_classical.py"
DETECTORS = {
    "TopHat": ("IRSTD/irstd_tophat_nudt_sirst.yaml", (5, 9, 13, 17)),
    "MaxMedian": (
        "IRSTD/irstd_max_median_nudt_sirst.yaml",
        (3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 25),
    ),
}
KS = (2, 3, 4, 6, 8, 12, 16, 24)


def responses(net: str, kernel: int, frames):
    """(response, mask) of every (gray, mask) frame, the detector's response as its net computes
    it (float gray values; both responses and the threshold are invariant to the normalisation)."""
    out = []
    for gray, mask in frames:
        g = torch.from_numpy(gray.astype(np.float32))[None, None]
        if net == "TopHat":
            r = white_tophat_response(g, ellipse_element(kernel))
        else:
            r = max_median_response(g, kernel)
        out.append((r[0, 0].numpy(), mask))
    return out


def score(pairs, k: float) -> dict:
    """IoU, nIoU, Pd, Fa, F1 of the threshold ``mean + k * std`` over (response, mask) pairs."""
    m = IRSTDMetrics()
    for r, mask in pairs:
        m.update(r > r.mean() + k * r.std(), mask)
    return m.compute()


def irstd_frames(cfg, name):
    """(gray, bool mask) of every frame of ``name`` at its size, read by the small-target test
    mapper (masks binarised as for the nets)."""
    mapper = IRSTDDatasetMapper(cfg, is_train=False)
    out = []
    for d in DatasetCatalog.get(name):
        m = mapper(d)
        out.append((m["image"].float().mean(dim=0).numpy(), m["sem_seg"].numpy() > 0))
    return out


def tune(net: str, kernels, train) -> tuple:
    """(kernel, k) of the best IoU on the ``train`` frames (each kernel's responses once)."""
    best, best_iou = None, -1.0
    for kernel in kernels:
        pairs = responses(net, kernel, train)
        for k in KS:
            iou = score(pairs, k)["IoU"]
            if iou > best_iou:
                best, best_iou = (kernel, k), iou
    return best


def evaluate(config: str, kernel: int, k: float, test: str, device: str) -> dict:
    """The detector built from ``config`` with ``kernel`` and ``k``, scored on ``test`` as
    ``train_net --eval-only`` scores any small-target model."""
    opts = ["MODEL.DEVICE", device, "MODEL.IRSTD.CLASSICAL.KERNEL", kernel]
    opts += ["MODEL.IRSTD.CLASSICAL.K", float(k), "DATALOADER.NUM_WORKERS", 0]
    cfg = setup_cfg(config, opts)
    model = build_model(cfg).eval()
    loader = IRTrainer.build_test_loader(cfg, test)
    with torch.no_grad():
        return inference_on_dataset(model, loader, build_irstd_evaluator(cfg, test))["irstd"]


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train", default="nudt_sirst_train")
    parser.add_argument("--test", default="nudt_sirst_test")
    parser.add_argument("--eval-frames", type=int, default=0, help="first N test frames (0: all)")
    parser.add_argument("--datasets", default=None, help="folder of the datasets")
    parser.add_argument("--output", default="output/bench_classical")
    args = parser.parse_args(argv)
    use_datasets(args.datasets)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = setup_cfg("IRSTD/Base-IRSTD.yaml", ["MODEL.DEVICE", "cpu"])
    train = irstd_frames(cfg, args.train)
    test = first_frames(args.test, args.eval_frames)
    rows = []
    for net, (config, kernels) in DETECTORS.items():
        kernel, k = tune(net, kernels, train)
        metrics = evaluate(config, kernel, k, test, device)
        rows.append({"net": net, "kernel": kernel, "k": k, "config": config, **metrics})
    header = ["detector", "kernel", "k", "IoU", "nIoU", "Pd", "Fa (1e-6)", "F1"]
    table = markdown_table(
        header,
        [
            [
                r["net"],
                r["kernel"],
                r["k"],
                *(f"{r[m]:.2f}" for m in ("IoU", "nIoU", "Pd", "Fa", "F1")),
            ]
            for r in rows
        ],
    )
    text = f"tuned on {args.train} (IoU), scored on {test} by IRSTDEvaluator\n\n{table}"
    write_report(args.output, "bench_classical", TOOL, {"rows": rows, "train": args.train}, text)
    print(text)
    return rows


if __name__ == "__main__":
    main()
