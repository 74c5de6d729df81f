"""
Parameters, GFLOPs (fvcore, one multiply-add = one flop) and FPS at 256x256, batch 1, of every
small-target net of the papers' comparison tables (``_common.COMPARISON_NETS``: SGEM U-Net,
U-Net, the SIRST-5K net, the AFF U-Net, DNANet, ACM, ALCNet, ISNet, UIU-Net, each built from its
NUDT-SIRST config), measured in one run, interleaved, beside the figures SGEM's Table 1 and
SIRST-5K's Table II print. Then SGEM's FPS ratios beside the paper's claims: 342 / 27 = 12.7x
DNANet, more than 3x the fastest method (ACM here). On a CPU the figures are not the paper's
regime (a CPU is bound by FLOPs); ``gpu_check.py`` measures them on a GPU.

    python3 benchmarks/bench_irstd.py [--repeat 20] [--size 256]
"""

import argparse

import torch
from _common import (
    COMPARISON_NETS,
    PAPER_FPS_RATIO_DNANET,
    PAPER_FPS_RATIO_FASTEST,
    gflops,
    ir_cfg,
    markdown_table,
    n_params,
    time_call,
)

import ir_d2  # noqa: F401
from ir_d2.modeling import build_irstd_net


def printed(figures: dict) -> str:
    """The papers' parameter / GFLOPs figures of a net, as one cell."""
    out = []
    if "sgem" in figures:
        out.append(f"{figures['sgem'][0]} M / {figures['sgem'][1]} G (SGEM T1)")
    if "sirst5k" in figures:
        out.append(f"{figures['sirst5k']} M (SIRST-5K T2)")
    return "; ".join(out) or "—"


def measure(size: int, repeat: int, device: str):
    """One row per net: params, GFLOPs, median FPS (the nets timed in turn, ``repeat`` rounds)."""
    torch.manual_seed(0)
    nets = {name: build_irstd_net(ir_cfg(config)).eval() for name, config, _ in COMPARISON_NETS}
    x = torch.randn(1, 3, size, size)
    flops = {name: gflops(net, x) for name, net in nets.items()}
    x = x.to(device)
    times = {name: [] for name in nets}
    with torch.no_grad():
        for net in nets.values():
            net.to(device)
            time_call(lambda n=net: n(x), warmup=2, repeat=1)
        for _ in range(repeat):  # interleaved, so drifts of the machine hit every net alike
            for name, net in nets.items():
                times[name].append(time_call(lambda n=net: n(x), warmup=0, repeat=1))
    rows = []
    for name, _, figures in COMPARISON_NETS:
        t = sorted(times[name])
        rows.append(
            {
                "net": name,
                "params_M": round(n_params(nets[name]), 3),
                "gflops": round(flops[name], 2),
                "fps": round(1.0 / t[len(t) // 2], 2),
                "printed": printed(figures),
            }
        )
    return rows


def ratios(rows) -> dict:
    """SGEM U-Net's FPS over DNANet's, over ACM's and over the fastest other baseline's."""
    fps = {r["net"]: r["fps"] for r in rows}
    baselines = ("DNANet", "ACM", "ALCNet", "ISNet", "UIU-Net")
    fastest = max(baselines, key=fps.get)
    return {
        "dnanet": round(fps["SGEM U-Net"] / fps["DNANet"], 2),
        "acm": round(fps["SGEM U-Net"] / fps["ACM"], 2),
        "fastest": fastest,
        "fastest_ratio": round(fps["SGEM U-Net"] / fps[fastest], 2),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = measure(args.size, args.repeat, device)
    r = ratios(rows)
    print(
        f"device: {device} ({torch.get_num_threads()} threads), input 1x3x{args.size}x{args.size},"
        f" median of {args.repeat}\n"
    )
    header = ["net", "params (M)", "GFLOPs", "FPS", "the papers print"]
    print(
        markdown_table(
            header, [[x["net"], x["params_M"], x["gflops"], x["fps"], x["printed"]] for x in rows]
        )
    )
    print(
        f"\nSGEM U-Net / DNANet FPS: {r['dnanet']} (paper: 342 / 27 = {PAPER_FPS_RATIO_DNANET:.1f})"
        f"\nSGEM U-Net / ACM FPS: {r['acm']}; / the fastest baseline ({r['fastest']}): "
        f"{r['fastest_ratio']} (paper: more than {PAPER_FPS_RATIO_FASTEST:.0f}x the fastest method)"
    )
    return rows, r


if __name__ == "__main__":
    main()
