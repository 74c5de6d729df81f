"""
The one-call GPU check: everything ir_d2 wants to know about a GPU, in at most 10 minutes with the
defaults, needing nothing beyond the project's own set-up. It prints Markdown tables and writes
``<output>/gpu_check.json`` and ``<output>/gpu_check.md``:

1. FPS at 256x256, batch 1, float32 and float16 (the net cast to half), of the U-Net, the SGEM
   U-Net, the AFF U-Net, the SIRST-5K net and the baselines DNANet, ACM, ALCNet, ISNet and UIU-Net
   (their NUDT-SIRST configs, ``_common.COMPARISON_NETS``), measured alike (warm-up,
   synchronised, median); SGEM's FPS ratios to DNANet and to ACM beside the paper's
   342 / 27 = 12.7x and "more than 3x the fastest method".
2. Mask R-CNN R50-FPN at 640x512, vanilla against the final BNSA model (BNSA res3+res4,
   Focal-SIoU, BCE + Dice + Lovász): inference ms per image and training s per iteration (batch
   2), with mixed precision off and on (detectron2's ``SimpleTrainer`` / ``AMPTrainer``); the SGEM
   U-Net's training step likewise (batch 8 of 256x256). Every training step's losses must be
   finite (detectron2 raises otherwise), which the report records.
3. The SGEM U-Net paper row trained on NUDT-SIRST for ``--minutes`` (default 5), then scored on
   its test split: IoU / F1 beside the paper's 87.64 / 93.41 (after 1500 epochs), iterations
   done, peak GPU memory.

    python3 benchmarks/gpu_check.py                           # on the GPU, about 8 minutes
    python3 benchmarks/gpu_check.py --device cpu --minutes 0.2  # smoke run on a CPU

Models are randomly initialised (no download): figures are speeds, not accuracies, except part 3.
NUDT-SIRST is looked up under ``--datasets`` (default: ``IR_D2_DATASETS``); without it part 3
is skipped with a line saying so.
"""

import argparse
import itertools
import os
import platform
import resource
import time

import torch
from _common import (
    COMPARISON_NETS,
    PAPER_FPS_RATIO_DNANET,
    PAPER_FPS_RATIO_FASTEST,
    first_frames,
    ir_cfg,
    markdown_table,
    n_params,
    time_call,
    train_for,
    use_datasets,
    write_report,
)

import ir_d2  # noqa: F401
from ir_d2.modeling import build_irstd_net

TOOL = "benchmarks/gpu_check.py"
RCNN = [
    ("Mask R-CNN R50-FPN", "IR-InstanceSegmentation/mask_rcnn_R_50_FPN_100e_ircoco.yaml"),
    (
        "BNSA final model",
        "IR-InstanceSegmentation/"
        "mask_rcnn-focal_siou-bce_dice_lovasz_R_50_BNSA-C3C4_FPN_100e_ircoco.yaml",
    ),
]
SGEM_ROW = "IRSTD/irstd_sgem_unet_W40_1500e_nudt_sirst.yaml"
PAPER = {"IoU": 87.64, "F1": 93.41}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return (
                        f"{line.split(':', 1)[1].strip()} (CPU, {torch.get_num_threads()} threads)"
                    )
    except OSError:
        pass
    return f"{platform.machine()} CPU ({torch.get_num_threads()} threads)"


def _cell(value, missing="—"):
    return missing if value is None else value


def _ratio(value) -> str:
    return "n/a" if value is None else f"{value}x"


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------------ part 1
def fps_rows(device, warmup, repeat):
    nets = {name: build_irstd_net(ir_cfg(config)) for name, config, _ in COMPARISON_NETS}
    x = torch.randn(1, 3, 256, 256, device=device)
    rows = []
    for precision, dtype in (("fp32", torch.float32), ("fp16", torch.float16)):
        for name, net in nets.items():
            net = net.to(device=device, dtype=dtype).eval()
            row = {"net": name, "params_M": round(n_params(net), 3), "precision": precision}
            if dtype == torch.float16 and device.type != "cuda":
                # CPUs run half convolutions through slow fallbacks (about 200x float32 here)
                row.update(ms=None, fps=None, error="n/a on a CPU")
                rows.append(row)
                continue
            try:
                with torch.no_grad():
                    xd = x.to(dtype)
                    s = time_call(lambda n=net, xd=xd: n(xd), warmup, repeat)
                row.update(
                    ms=round(s * 1e3, 3), fps=float(f"{1.0 / s:.4g}")
                )  # 4 significant digits
            except RuntimeError as e:  # e.g. a half kernel missing on this device
                row.update(ms=None, fps=None, error=str(e).splitlines()[0])
            rows.append(row)
        for net in nets.values():
            net.float()
    return rows


def fps_ratios(rows, baseline: str, paper):
    """SGEM U-Net's FPS over ``baseline``'s, per precision, beside the paper's ratio."""
    fps = {(r["net"], r["precision"]): r["fps"] for r in rows}
    out = {}
    for precision in ("fp32", "fp16"):
        sgem, base = fps.get(("SGEM U-Net", precision)), fps.get((baseline, precision))
        out[precision] = round(sgem / base, 2) if sgem and base else None
    out["paper"] = paper
    return out


# ------------------------------------------------------------------------------------ part 2
def _rcnn_batch(device, height=512, width=640, n_images=2, seed=0):
    """Two 640x512 frames with three box-and-mask instances each (bright blobs on noise)."""
    from detectron2.structures import BitMasks, Boxes, Instances

    g = torch.Generator().manual_seed(seed)
    batch = []
    for _ in range(n_images):
        image = torch.randint(0, 60, (3, height, width), generator=g, dtype=torch.uint8)
        boxes, masks = [], torch.zeros(3, height, width, dtype=torch.bool)
        for k in range(3):
            w, h = (int(v) for v in torch.randint(24, 120, (2,), generator=g))
            x0 = int(torch.randint(0, width - w, (1,), generator=g))
            y0 = int(torch.randint(0, height - h, (1,), generator=g))
            boxes.append([x0, y0, x0 + w, y0 + h])
            masks[k, y0 : y0 + h, x0 : x0 + w] = True
            image[:, y0 : y0 + h, x0 : x0 + w] = 200
        inst = Instances((height, width))
        inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        inst.gt_classes = torch.tensor([0, 1, 2])
        inst.gt_masks = BitMasks(masks)
        batch.append({"image": image, "height": height, "width": width, "instances": inst})
    return batch


def _irstd_batch(n=8, size=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    batch = []
    for _ in range(n):
        image = torch.randint(0, 80, (3, size, size), generator=g, dtype=torch.uint8)
        sem = torch.zeros(size, size, dtype=torch.long)
        y, x = (int(v) for v in torch.randint(8, size - 8, (2,), generator=g))
        sem[y - 2 : y + 3, x - 2 : x + 3] = 1
        image[:, sem.bool()] = 250
        batch.append({"image": image, "sem_seg": sem, "height": size, "width": size})
    return batch


def train_step_seconds(model, batch, amp: bool, device, warmup: int, iters: int):
    """Seconds per training iteration with detectron2's SimpleTrainer (or AMPTrainer), and
    whether every loss stayed finite."""
    from detectron2.engine import AMPTrainer, SimpleTrainer
    from detectron2.utils.events import EventStorage

    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    trainer = (AMPTrainer if amp else SimpleTrainer)(model, itertools.repeat(batch), optimizer)
    with EventStorage(0) as trainer.storage:
        try:
            for trainer.iter in range(warmup):
                trainer.run_step()
            _sync(device)
            t0 = time.perf_counter()
            for trainer.iter in range(warmup, warmup + iters):
                trainer.run_step()
            _sync(device)
        except FloatingPointError as e:  # detectron2: "Loss became infinite or NaN ..."
            return None, str(e).splitlines()[0]
    return (time.perf_counter() - t0) / iters, "finite"


def rcnn_rows(device, warmup, repeat, train_warmup, train_iters):
    from detectron2.modeling import build_model

    amp_modes = (False, True) if device.type == "cuda" else (False,)
    torch.manual_seed(0)
    # Random weights with detectron2's FrozenBN would leave the ResNet unnormalised, so the
    # models are built with GN (as detectron2's from-scratch configs); BNSA's blocks keep BN.
    scratch = ["MODEL.RESNETS.NORM", "GN", "MODEL.BACKBONE.FREEZE_AT", 0, "MODEL.FPN.NORM", "GN"]
    scratch += ["MODEL.RESNETS.STRIDE_IN_1X1", False, "MODEL.ROI_HEADS.NUM_CLASSES", 3]
    models = {
        name: build_model(ir_cfg(config, ["MODEL.DEVICE", str(device), *scratch]))
        for name, config in RCNN
    }
    # the shared parts start equal, so both models see the same proposals and detections
    second = list(models.values())[1]
    second.load_state_dict(list(models.values())[0].state_dict(), strict=False)
    batch = _rcnn_batch(device)
    infer = [{k: v for k, v in d.items() if k != "instances"} for d in batch[:1]]
    rows = []
    for name, model in models.items():
        for amp in amp_modes:
            model.eval()
            with torch.no_grad(), torch.autocast(device.type, enabled=amp):
                s = time_call(lambda m=model: m(infer), warmup, repeat)
            step, losses = train_step_seconds(model, batch, amp, device, train_warmup, train_iters)
            rows.append(
                {
                    "model": name,
                    "params_M": round(n_params(model), 3),
                    "amp": amp,
                    "infer_ms": round(s * 1e3, 1),
                    "train_s_per_iter": round(step, 3) if step else None,
                    "losses": losses,
                }
            )
    model = build_model(ir_cfg(SGEM_ROW, ["MODEL.DEVICE", str(device)]))
    for amp in amp_modes:
        step, losses = train_step_seconds(
            model, _irstd_batch(), amp, device, train_warmup, train_iters
        )
        rows.append(
            {
                "model": "SGEM U-Net (batch 8, 256x256)",
                "params_M": round(n_params(model), 3),
                "amp": amp,
                "infer_ms": None,
                "train_s_per_iter": round(step, 3) if step else None,
                "losses": losses,
            }
        )
    return rows


# ------------------------------------------------------------------------------------ part 3
def timeboxed_sgem(device, minutes, eval_frames, output, workers):
    from detectron2.data import DatasetCatalog
    from detectron2.evaluation import inference_on_dataset

    from ir_d2.engine.trainer import IRTrainer
    from ir_d2.evaluation import build_irstd_evaluator

    try:
        DatasetCatalog.get("nudt_sirst_train")
    except (FileNotFoundError, OSError) as e:
        return {"skipped": f"NUDT-SIRST not found ({str(e).splitlines()[0]})"}
    cfg = ir_cfg(
        SGEM_ROW,
        [
            "MODEL.DEVICE", str(device), "SOLVER.MAX_ITER", 10**8,
            "SOLVER.CHECKPOINT_PERIOD", 10**8, "TEST.EVAL_PERIOD", 0,
            "DATALOADER.NUM_WORKERS", workers, "OUTPUT_DIR", f"{output}/sgem_nudt_sirst", "SEED", 0,
        ],
    )  # fmt: skip
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer = IRTrainer(cfg)
    trainer.resume_or_load(resume=False)
    iters, seconds = train_for(trainer, minutes * 60)
    trainer.model.eval()
    test = first_frames("nudt_sirst_test", eval_frames)
    evaluator = build_irstd_evaluator(cfg, test)
    metrics = inference_on_dataset(
        trainer.model, IRTrainer.build_test_loader(cfg, test), evaluator
    )["irstd"]
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        peak_kind = "GPU"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
        peak_kind = "host (no GPU)"
    return {
        "iterations": iters,
        "minutes": round(seconds / 60, 2),
        "epochs": round(
            iters * cfg.SOLVER.IMS_PER_BATCH / len(DatasetCatalog.get(cfg.DATASETS.TRAIN[0])), 2
        ),
        "test_frames": len(DatasetCatalog.get(test)),
        **{k: round(metrics[k], 2) for k in ("IoU", "nIoU", "Pd", "Fa", "F1")},
        "paper_IoU": PAPER["IoU"],
        "paper_F1": PAPER["F1"],
        "peak_memory_GiB": round(peak, 2),
        "peak_memory_kind": peak_kind,
    }


# ------------------------------------------------------------------------------------ report
def markdown(report) -> str:
    env = report["environment"]
    out = [
        f"# ir_d2 GPU check: {env['device_name']}\n",
        f"torch {env['torch']}, CUDA {env['cuda']}, Python {env['python']}, "
        f"{report['seconds_total']:.0f} s in all\n",
        "\n## FPS at 256x256, batch 1\n\n",
    ]
    out.append(
        markdown_table(
            ["net", "params (M)", "precision", "ms", "FPS"],
            [
                [
                    r["net"],
                    r["params_M"],
                    r["precision"],
                    _cell(r["ms"]),
                    _cell(r["fps"], r.get("error")),
                ]
                for r in report["fps"]
            ],
        )
    )
    for baseline, key in (("DNANet", "fps_ratio_sgem_to_dnanet"), ("ACM", "fps_ratio_sgem_to_acm")):
        ratios = report[key]
        out.append(
            f"\nSGEM U-Net / {baseline} FPS: {_ratio(ratios['fp32'])} (fp32), "
            f"{_ratio(ratios['fp16'])} (fp16); the paper: {ratios['paper']}x (the authors' GPU)\n"
        )
    out.append("\n## Mask R-CNN at 640x512 and the SGEM U-Net's training step\n\n")
    out.append(
        markdown_table(
            ["model", "params (M)", "AMP", "inference ms/img", "training s/iter", "losses"],
            [
                [
                    r["model"],
                    r["params_M"],
                    "on" if r["amp"] else "off",
                    _cell(r["infer_ms"]),
                    _cell(r["train_s_per_iter"]),
                    r["losses"],
                ]
                for r in report["rcnn"]
            ],
        )
    )
    if report["device"] != "cuda":
        out.append("\nAMP rows need CUDA (detectron2's AMPTrainer): none on this device.\n")
    t = report["sgem_nudt_sirst"]
    out.append("\n## SGEM U-Net on NUDT-SIRST, time-boxed\n\n")
    if "skipped" in t:
        out.append(f"skipped: {t['skipped']}\n")
    else:
        out.append(
            markdown_table(
                ["minutes", "iterations", "epochs", "test frames", "IoU", "nIoU", "Pd", "Fa (1e-6)",
                 "F1", "paper IoU / F1 (1500 epochs)",
                 f"peak memory, {t['peak_memory_kind']} (GiB)"],
                [[t["minutes"], t["iterations"], t["epochs"], t["test_frames"], t["IoU"], t["nIoU"],
                  t["Pd"], t["Fa"], t["F1"], f"{t['paper_IoU']} / {t['paper_F1']}",
                  t["peak_memory_GiB"]]],
            )
        )  # fmt: skip
    return "".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--minutes", type=float, default=5.0, help="SGEM training budget")
    parser.add_argument("--output", default="output/gpu_check")
    parser.add_argument("--datasets", default=None, help="folder holding nudt-sirst/")
    parser.add_argument(
        "--repeat", type=int, default=0, help="timed calls per figure (0: 100 on GPU, 3 on CPU)"
    )
    parser.add_argument(
        "--train-iters", type=int, default=0, help="timed training steps (0: 20 on GPU, 1 on CPU)"
    )
    parser.add_argument(
        "--eval-frames", type=int, default=0, help="first N NUDT-SIRST test frames (0: all 664)"
    )
    parser.add_argument(
        "--workers", type=int, default=min(4, os.cpu_count() or 1), help="loader workers, part 3"
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: this machine has no CUDA device (use --device cpu)")
    on_gpu = device.type == "cuda"
    repeat = args.repeat or (100 if on_gpu else 3)
    warmup = 10 if on_gpu else 1
    train_iters = args.train_iters or (20 if on_gpu else 1)
    use_datasets(args.datasets)
    torch.manual_seed(0)
    start = time.perf_counter()
    report = {
        "device": device.type,
        "environment": {
            "device_name": torch.cuda.get_device_name(device) if on_gpu else _cpu_name(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
        },
        "settings": {
            "repeat": repeat,
            "warmup": warmup,
            "train_iters": train_iters,
            "minutes": args.minutes,
            "eval_frames": args.eval_frames,
        },
    }
    report["fps"] = fps_rows(device, warmup, repeat)
    report["fps_ratio_sgem_to_dnanet"] = fps_ratios(
        report["fps"], "DNANet", round(PAPER_FPS_RATIO_DNANET, 2)
    )
    report["fps_ratio_sgem_to_acm"] = fps_ratios(
        report["fps"], "ACM", f"> {PAPER_FPS_RATIO_FASTEST:.0f} (the fastest method)"
    )
    report["rcnn"] = rcnn_rows(device, warmup, max(1, repeat // 5), 3 if on_gpu else 0, train_iters)
    report["sgem_nudt_sirst"] = timeboxed_sgem(
        device, args.minutes, args.eval_frames, args.output, args.workers
    )
    report["seconds_total"] = round(time.perf_counter() - start, 1)
    text = markdown(report)
    write_report(args.output, "gpu_check", TOOL, report, text)
    print(text)
    print(f"written: {args.output}/gpu_check.json, {args.output}/gpu_check.md")
    return report


if __name__ == "__main__":
    main()
