"""
Tiled inference on large frames: wall time and peak memory of ``IRPredictor`` on one gray 8-bit
frame of each size (default 640x512, 2000x1500, 4000x3000, width x height), run whole
(``TEST.IRSTD.TILE_SIZE 0``) and tiled (``--tile``, ``--overlap``), with the SGEM U-Net's paper
widths and random weights (``MODEL.WEIGHTS ""``; the time and memory do not depend on the
weights). Each case runs in a fresh child process, so that one case's memory never counts in
another's: peak memory is the child's peak resident set (``ru_maxrss``) during inference minus
its peak before it (model built, frame made), and on a GPU also ``torch.cuda.max_memory_
allocated``. Time is the median of ``--repeats`` calls after one warm-up call. Then, per size, the
tiled / whole ratios and how far the tiled probability map is from the whole one (the largest
absolute difference, and the share of pixels that differ by more than 1e-4).

    python3 benchmarks/bench_tiling.py [--sizes 640x512 2000x1500 4000x3000] [--tile 512]
        [--overlap 32] [--repeats 3] [--device cpu] [--config-file CFG] [KEY VALUE ...]
"""

import argparse
import json
import os
import tempfile
import time

import numpy as np
from _common import CONFIGS, markdown_table, measure_in_child, peak_rss_mib, write_report

TOOL = "benchmarks/bench_tiling.py"
DEFAULT_CONFIG = "IRSTD/irstd_sgem_unet_W40_1500e_nudt_sirst.yaml"
DEFAULT_SIZES = ["640x512", "2000x1500", "4000x3000"]


def parse_size(text: str):
    """``"WxH"`` as (height, width)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a size is WIDTHxHEIGHT, e.g. 640x512: {text!r}"
        ) from None
    return height, width


def run_case(case: dict) -> dict:
    """One case, in this (fresh) process: build the predictor, make the frame, then time
    ``case["repeats"]`` calls after a warm-up; the probability map is saved to
    ``case["save"]`` (``.npy``) when given."""
    import torch

    import ir_d2  # noqa: F401
    from ir_d2.engine import IRPredictor
    from ir_d2.engine.defaults import setup_cfg

    if case["threads"]:
        torch.set_num_threads(case["threads"])
    torch.manual_seed(0)
    opts = ["MODEL.DEVICE", case["device"], "MODEL.WEIGHTS", ""]
    opts += ["TEST.IRSTD.TILE_SIZE", case["tile"], "TEST.IRSTD.TILE_OVERLAP", case["overlap"]]
    cfg = setup_cfg(case["config"], [*opts, *case["opts"]])
    predictor = IRPredictor(cfg)
    height, width = case["size"]
    frame = np.random.default_rng(0).integers(0, 256, (height, width), dtype=np.uint8)
    cuda = case["device"].startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = peak_rss_mib()
    times = []
    for i in range(case["repeats"] + 1):
        start = time.perf_counter()
        out = predictor(frame)
        if cuda:
            torch.cuda.synchronize()
        if i:  # the first call warms up
            times.append(time.perf_counter() - start)
    result = {
        "seconds": float(np.median(times)),
        "peak_rss_MiB": round(peak_rss_mib() - before, 1),
        "targets": len(out["targets"]),
    }
    if cuda:
        result["peak_cuda_MiB"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    if case.get("save"):
        np.save(case["save"], out["sem_seg"][0].float().cpu().numpy())
    return result


def measure(case: dict) -> dict:
    """:func:`run_case` in a fresh child process (:func:`_common.measure_in_child`)."""
    return measure_in_child(__file__, case)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", default=DEFAULT_CONFIG, help="under configs/, or a path")
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=None, help="WxH frames")
    parser.add_argument("--tile", type=int, default=512, help="TEST.IRSTD.TILE_SIZE")
    parser.add_argument("--overlap", type=int, default=32, help="TEST.IRSTD.TILE_OVERLAP")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per case (median)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--output", default="output/bench_tiling")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config KEY VALUE pairs")
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(run_case(json.loads(args.child))))
        return None
    if args.tile <= 0:
        parser.error("--tile must be > 0 (0 is the whole frame, always measured)")
    sizes = args.sizes or [parse_size(s) for s in DEFAULT_SIZES]
    config = args.config_file
    if not os.path.isfile(config) and not config.startswith("ir_d2://"):
        config = str(CONFIGS / config)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for height, width in sizes:
            row = {"size": f"{width}x{height}"}
            for mode, tile in (("whole", 0), ("tiled", args.tile)):
                case = {
                    "config": config,
                    "opts": list(args.opts),
                    "device": args.device,
                    "threads": args.threads,
                    "size": [height, width],
                    "tile": tile,
                    "overlap": args.overlap,
                    "repeats": args.repeats,
                    "save": f"{folder}/{mode}.npy",
                }
                row[mode] = measure(case)
                print(f"{row['size']} {mode}: {row[mode]}", flush=True)
            whole, tiled = np.load(f"{folder}/whole.npy"), np.load(f"{folder}/tiled.npy")
            diff = np.abs(whole - tiled)
            row["max_abs_diff"] = float(diff.max())
            row["share_diff_1e-4"] = float((diff > 1e-4).mean())
            row["time_ratio"] = round(row["tiled"]["seconds"] / row["whole"]["seconds"], 3)
            row["memory_ratio"] = round(
                row["tiled"]["peak_rss_MiB"] / max(row["whole"]["peak_rss_MiB"], 1e-9), 3
            )
            rows.append(row)
    import torch

    conditions = {
        "config": args.config_file,
        "opts": list(args.opts),
        "tile": args.tile,
        "overlap": args.overlap,
        "repeats": args.repeats,
        "device": args.device,
        "threads": args.threads or torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
    }
    gpu = args.device.startswith("cuda")
    header = ["frame (WxH)", "whole s", "tiled s", "tiled / whole time", "whole peak MiB"]
    header += ["tiled peak MiB", "tiled / whole memory", "max abs diff", "pixels diff > 1e-4"]
    if gpu:
        header += ["whole CUDA MiB", "tiled CUDA MiB"]
    table = []
    for r in rows:
        cells = [r["size"], round(r["whole"]["seconds"], 3), round(r["tiled"]["seconds"], 3)]
        cells += [r["time_ratio"], r["whole"]["peak_rss_MiB"], r["tiled"]["peak_rss_MiB"]]
        cells += [r["memory_ratio"], f"{r['max_abs_diff']:.2e}", f"{r['share_diff_1e-4']:.2%}"]
        if gpu:
            cells += [r["whole"].get("peak_cuda_MiB"), r["tiled"].get("peak_cuda_MiB")]
        table.append(cells)
    text = (
        f"## IRPredictor, {args.config_file} (random weights), tile {args.tile}, overlap "
        f"{args.overlap}, {args.device} ({conditions['threads']} threads), median of "
        f"{args.repeats}\n\nPeak memory: the child process's peak resident set during inference "
        "minus before it.\n\n" + markdown_table(header, table)
    )
    write_report(args.output, "bench_tiling", TOOL, {"rows": rows, **conditions}, text)
    print(text)
    return rows


if __name__ == "__main__":
    main()
