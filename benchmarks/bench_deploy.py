"""
Faster CPU inference for deployment: frames per second of the SGEM U-Net (the paper row's widths,
8.63 M parameters), batch 1, at 256x256 and 512x640, for eager PyTorch, TorchScript, ONNX Runtime
and ONNX Runtime with dynamic INT8 quantisation, measured in one run (interleaved, median); then
the IoU change on ``sirst_test`` of a trained model run through ONNX Runtime and its INT8 version,
scored by the same predictors and metrics as PyTorch (``IRPredictor`` vs ``ExportedPredictor``).
Goals: ONNX Runtime at least 1.5x eager FPS; INT8 within 1 IoU point. Prints what it measures.

    IR_D2_DATASETS=datasets python3 benchmarks/bench_deploy.py [--weights model_final.pth
        --config-file CFG] [--train-minutes 8] [--repeat 20]

Without ``--weights`` the quickstart's SGEM U-Net (widths 8..128) is trained on ``sirst_train``
for ``--train-minutes`` first (the trained model of the IoU check).
"""

import argparse
import os
import tempfile
import time

import numpy as np
import torch
from _common import given_or_trained, markdown_table, use_datasets, write_report
from detectron2.data import DatasetCatalog
from detectron2.utils.logger import setup_logger

import ir_d2  # noqa: F401
from ir_d2.data.io import read_ir_image
from ir_d2.engine import ExportedPredictor, IRPredictor
from ir_d2.engine.defaults import setup_cfg
from ir_d2.evaluation import IRSTDMetrics, load_irstd_mask
from ir_d2.export import ExportedNet, IRSTDExportModule, export_irstd_onnx, export_irstd_torchscript
from ir_d2.modeling import build_irstd_net

TOOL = "benchmarks/bench_deploy.py"
SPEED_CONFIG = "ir_d2://IRSTD/irstd_sgem_unet_W40_1500e_nudt_sirst.yaml"
QUICK_CONFIG = "ir_d2://quick_schedules/irstd_sgem_unet_W8_quickstart.yaml"
SIZES = [(256, 256), (512, 640)]


def quantize_int8(onnx_file: str, out_file: str) -> None:
    """ONNX Runtime's dynamic INT8 quantisation (weights int8, activations quantised on the
    fly), after its pre-processing pass (shape inference, graph optimisation)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = out_file.replace(".onnx", ".pre.onnx")
    quant_pre_process(onnx_file, pre, skip_symbolic_shape=True)
    quantize_dynamic(pre, out_file, weight_type=QuantType.QInt8)
    os.remove(pre)


def export_all(net, folder, sample) -> dict:
    """``{runtime: callable(x) -> prob}``: eager, TorchScript, ONNX Runtime, ONNX Runtime INT8."""
    module = IRSTDExportModule(net).eval()
    onnx_file, ts_file = f"{folder}/model.onnx", f"{folder}/model.ts"
    int8_file = f"{folder}/model.int8.onnx"
    export_irstd_onnx(module, sample, onnx_file)
    export_irstd_torchscript(module, sample, ts_file)
    quantize_int8(onnx_file, int8_file)

    def eager(x):
        with torch.no_grad():
            return module(x)

    return {
        "eager PyTorch": eager,
        "TorchScript": ExportedNet(ts_file),
        "ONNX Runtime": ExportedNet(onnx_file),
        "ONNX Runtime INT8": ExportedNet(int8_file),
    }


def fps_table(runtimes, repeat) -> list:
    rows = []
    for h, w in SIZES:
        x = torch.randn(1, 3, h, w)
        times = {name: [] for name in runtimes}
        for fn in runtimes.values():
            fn(x)  # warm-up
        for _ in range(repeat):  # interleaved, so drifts of the machine hit every runtime alike
            for name, fn in runtimes.items():
                t0 = time.perf_counter()
                fn(x)
                times[name].append(time.perf_counter() - t0)
        eager = float(np.median(times["eager PyTorch"]))
        for name, t in times.items():
            med = float(np.median(t))
            rows.append(
                {
                    "size": f"{h}x{w}",
                    "runtime": name,
                    "ms": round(med * 1e3, 1),
                    "fps": round(1 / med, 2),
                    "x_eager": round(eager / med, 2),
                }
            )
    return rows


def iou_table(cfg, folder, test="sirst_test") -> list:
    """IoU, nIoU, Pd, Fa, F1 on ``test`` of the trained model through each runtime."""
    eager = IRPredictor(cfg)
    sample = torch.zeros(1, 3, 256, 256)
    module = IRSTDExportModule(eager.model.net).eval()
    export_irstd_onnx(module, sample, f"{folder}/trained.onnx")
    quantize_int8(f"{folder}/trained.onnx", f"{folder}/trained.int8.onnx")
    predictors = {"eager PyTorch": eager}
    for name, file in (
        ("ONNX Runtime", "trained.onnx"),
        ("ONNX Runtime INT8", "trained.int8.onnx"),
    ):
        c = cfg.clone()
        c.defrost()
        c.MODEL.WEIGHTS = f"{folder}/{file}"
        predictors[name] = ExportedPredictor(c)
    metrics = {name: IRSTDMetrics(threshold=cfg.TEST.IRSTD.THRESHOLD) for name in predictors}
    skipped = []
    for d in DatasetCatalog.get(test):
        frame = read_ir_image(d["file_name"], normalize=cfg.INPUT.IR.NORMALIZE)
        gt = load_irstd_mask(d["sem_seg_file_name"], cfg.INPUT.IR.MASK_THRESHOLD, test)
        if gt.shape != frame.shape[:2]:  # SIRST's one mask of another size than its image
            skipped.append(d["file_name"])
            continue
        for name, predictor in predictors.items():
            prob = predictor(frame)["sem_seg"][0].numpy()
            metrics[name].update(prob, gt)
    rows = []
    base = metrics["eager PyTorch"].compute()
    for name, m in metrics.items():
        r = m.compute()
        rows.append(
            {"runtime": name, **{k: round(r[k], 2) for k in ("IoU", "nIoU", "Pd", "Fa", "F1")},
             "IoU_change": round(r["IoU"] - base["IoU"], 2) + 0.0, "frames_skipped": skipped}
        )  # fmt: skip
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", default=QUICK_CONFIG, help="the trained model's config")
    parser.add_argument("--weights", default="", help="its weights (else trained first)")
    parser.add_argument("--train-minutes", type=float, default=8.0)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--datasets", default=None)
    parser.add_argument("--output", default="output/bench_deploy")
    parser.add_argument("--skip-iou", action="store_true", help="FPS only")
    args = parser.parse_args(argv)
    use_datasets(args.datasets)
    setup_logger(name="ir_d2")
    torch.manual_seed(0)
    report = {"threads": torch.get_num_threads(), "torch": torch.__version__}
    import onnxruntime

    report["onnxruntime"] = onnxruntime.__version__
    with tempfile.TemporaryDirectory() as folder:
        net = build_irstd_net(setup_cfg(SPEED_CONFIG, ["MODEL.DEVICE", "cpu"])).eval()
        runtimes = export_all(net, folder, torch.zeros(1, 3, *SIZES[0]))
        report["fps"] = fps_table(runtimes, args.repeat)
        if not args.skip_iou:
            cfg = given_or_trained(
                args.config_file,
                args.weights,
                args.train_minutes,
                args.output,
                "model_bench_deploy",
            )
            report["iou"] = iou_table(cfg, folder)
    text = "## FPS, SGEM U-Net (8.63 M), batch 1, CPU\n\n" + markdown_table(
        ["size", "runtime", "ms", "FPS", "x eager"],
        [[r["size"], r["runtime"], r["ms"], r["fps"], r["x_eager"]] for r in report["fps"]],
    )
    if "iou" in report:
        text += f"\n## A trained model ({args.config_file}) on sirst_test\n\n" + markdown_table(
            ["runtime", "IoU", "nIoU", "Pd", "Fa (1e-6)", "F1", "IoU change"],
            [[r["runtime"], r["IoU"], r["nIoU"], r["Pd"], r["Fa"], r["F1"], r["IoU_change"]]
             for r in report["iou"]],
        )  # fmt: skip
    write_report(args.output, "bench_deploy", TOOL, report, text)
    print(text)
    return report


if __name__ == "__main__":
    main()
