"""
Parameters, FLOPs (fvcore) and FPS of any ir_d2 / detectron2 config at a given input size: the SGEM
Table 1 columns (Params, GFLOPs, FPS) and the params column of the Mask R-CNN paper's Table 4.

    python -m ir_d2.tools.analyze_model --config-file CFG [--height 256 --width 256]
        [--runs 20] [--device cpu|cuda] [KEY VALUE ... | --opts KEY VALUE ...]

FLOPs count one multiply-add as one FLOP (fvcore's convention, as the papers' GFLOPs).
"""

import torch
from detectron2.modeling import build_model
from detectron2.utils.analysis import FlopCountAnalysis

import ir_d2  # noqa: F401  (registration)
from ir_d2.engine.defaults import setup_cfg
from ir_d2.utils.cli import add_opts_arguments, collect_opts, one_line_errors, positive, tool_parser
from ir_d2.utils.timing import count_parameters, time_calls

__all__ = ["analyze", "main"]


def analyze(cfg, height: int, width: int, runs: int = 20, warmup: int = 5) -> dict:
    """
    Returns {"params_M", "gflops", "fps", "ms", "ms_q1", "ms_q3", "threads"} of ``cfg``'s model
    (eval mode, random weights) on one ``height`` x ``width`` image, batch 1; the time is the
    median of ``runs`` calls after ``warmup`` calls (first calls allocate and pick kernels), with
    its quartiles, and ``threads`` torch's intra-op threads (a CPU figure depends on them and on
    the machine's load).
    """
    model = build_model(cfg).eval()
    device = next(model.parameters()).device
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, device=device)
    inputs = [{"image": image, "height": height, "width": width}]
    params = count_parameters(model) / 1e6
    with torch.no_grad():
        flops = FlopCountAnalysis(model, inputs)
        flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        gflops = flops.total() / 1e9
        times = time_calls(lambda: model(inputs), warmup=warmup, repeat=runs)
    seconds = times[len(times) // 2]
    return {
        "params_M": params,
        "gflops": gflops,
        "fps": 1.0 / seconds,
        "ms": seconds * 1e3,
        "ms_q1": times[len(times) // 4] * 1e3,
        "ms_q3": times[(3 * len(times)) // 4] * 1e3,
        "threads": torch.get_num_threads(),
    }


def main(argv=None):
    parser = tool_parser("ir_d2.tools.analyze_model", __doc__, raw_text=True)
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--height", type=positive(int, "--height"), default=256)
    parser.add_argument("--width", type=positive(int, "--width"), default=256)
    parser.add_argument("--runs", type=positive(int, "--runs"), default=20)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--threads", type=positive(int, "--threads"), help="torch threads (default: torch's)"
    )
    add_opts_arguments(parser)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with one_line_errors("analyze_model"):
        opts = ["MODEL.WEIGHTS", "", "MODEL.DEVICE", args.device, *collect_opts(args)]
        cfg = setup_cfg(args.config_file, opts)
    r = analyze(cfg, args.height, args.width, runs=args.runs)
    print(f"config: {args.config_file}")
    print(f"input: 1x3x{args.height}x{args.width}, device: {args.device}, {r['threads']} threads")
    print(f"{'Params (M)':>10} {'GFLOPs':>10} {'FPS':>10} {'ms':>10} {'ms (q1-q3)':>16}")
    spread = f"{r['ms_q1']:.1f}-{r['ms_q3']:.1f}"
    print(
        f"{r['params_M']:>10.2f} {r['gflops']:>10.2f} {r['fps']:>10.1f} {r['ms']:>10.1f} "
        f"{spread:>16}"
    )
    print(f"(median of {args.runs} runs after 5 warm-up runs; a loaded machine widens q1-q3)")
    return r


if __name__ == "__main__":
    main()
