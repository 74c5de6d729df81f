"""
Parameters, GFLOPs (fvcore, one multiply-add = one flop) and FPS at 256x256, batch 1, of the
small-target nets (U-Net, SGEM U-Net, AFF U-Net, built from their configs) and of the
DNANet-class dense nested U-Net baseline (``ir_d2.modeling.NestedUNet``), measured in one run
and printed like Table 1 of SGEM (Deng & Yang 2025) with FPS ratios to the baseline. Goal from
the paper: SGEM U-Net at least 3x the FPS of the DNANet-class net on the same GPU (CPU figures are
printed when no GPU is there).

    python3 benchmarks/bench_irstd.py [--repeat 20] [--size 256]
"""

import argparse

import torch
from _common import ir_cfg, n_params, time_call
from fvcore.nn import FlopCountAnalysis

import ir_d2  # noqa: F401
from ir_d2.modeling import NestedUNet, build_irstd_net

NETS = [
    ("U-Net", "IRSTD/irstd_unet_W32_1500e_sirst.yaml"),
    ("SGEM U-Net", "IRSTD/irstd_sgem_unet_W40_1500e_sirst.yaml"),
    ("AFF U-Net", "IRSTD/irstd_aff_unet_W32_bs256-1500e_sirst.yaml"),
]


def gflops(net, x):
    counter = FlopCountAnalysis(net, x)
    counter.unsupported_ops_warnings(False)
    counter.uncalled_modules_warnings(False)
    return counter.total() / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    nets = {"DNANet-class nested U-Net": NestedUNet(deep_supervision=True)}
    for name, config in NETS:
        nets[name] = build_irstd_net(ir_cfg(config))
    x = torch.randn(1, 3, args.size, args.size)
    flops = {name: gflops(net.eval(), x) for name, net in nets.items()}
    x = x.to(device)
    times = {name: [] for name in nets}
    with torch.no_grad():
        for net in nets.values():
            net.to(device).eval()
            time_call(lambda n=net: n(x), warmup=3, repeat=1)
        for _ in range(args.repeat):  # interleaved, so drifts of the machine hit every net alike
            for name, net in nets.items():
                times[name].append(time_call(lambda n=net: n(x), warmup=0, repeat=1))
    fps = {name: 1.0 / sorted(t)[len(t) // 2] for name, t in times.items()}
    base = "DNANet-class nested U-Net"
    print(f"device: {device}, input 1x3x{args.size}x{args.size}, median of {args.repeat}")
    print(f"{'method':<27} {'params (M)':>10} {'GFLOPs':>8} {'FPS':>8} {'FPS ratio':>10}")
    for name, net in nets.items():
        print(
            f"{name:<27} {n_params(net):>10.2f} {flops[name]:>8.2f} {fps[name]:>8.1f} "
            f"{fps[name] / fps[base]:>10.2f}"
        )
    print(f"SGEM U-Net / DNANet-class FPS: {fps['SGEM U-Net'] / fps[base]:.2f} (goal >= 3 on GPU)")


if __name__ == "__main__":
    main()
