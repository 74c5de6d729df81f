"""
Parameters, GFLOPs (fvcore, one multiply-add = one flop) and FPS at 256x256, batch 1, of the
small-target nets (U-Net, SGEM U-Net, AFF U-Net, built from their configs) and of a DNANet-class
dense nested U-Net baseline written here, measured in one run and printed like Table 1 of SGEM
(Deng & Yang 2025) with FPS ratios to the baseline. Goal from the paper: SGEM U-Net at least 3x
the FPS of the DNANet-class net on the same GPU (CPU figures are printed when no GPU is there).

    python3 benchmarks/bench_irstd.py [--repeat 20] [--size 256]
"""

import argparse

import torch
import torch.nn.functional as F
from _common import ir_cfg, n_params, time_call
from fvcore.nn import FlopCountAnalysis
from torch import nn

import ir_d2  # noqa: F401
from ir_d2.modeling import build_irstd_net
from ir_d2.modeling.irstd.aff import AFFBlock

NETS = [
    ("U-Net", "IRSTD/irstd_unet_W32_1500e_sirst.yaml"),
    ("SGEM U-Net", "IRSTD/irstd_sgem_unet_W40_1500e_sirst.yaml"),
    ("AFF U-Net", "IRSTD/irstd_aff_unet_W32_bs256-1500e_sirst.yaml"),
]


def _resize(x, ref):
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


class NestedUNet(nn.Module):
    """
    A DNANet-class dense nested U-Net (Li et al., DNANet, TIP 2022), the baseline of the
    benchmark only: 5 levels of widths (16, 32, 64, 128, 256); node X(i, j) (level i, column j)
    is a stage of residual channel+spatial attention blocks (2 blocks below level 0) over
    [X(i, 0..j-1), up(X(i+1, j-1)), down(X(i-1, j))] (UNet++-style dense nested skips with the
    extra down-sampled input of DNANet's interactive module); the output fuses X(4,0), X(3,1),
    X(2,2), X(1,3) (1x1 conv, up-sampled) with X(0,4) in one more stage; deep supervision heads on
    X(0, 1..3) and the fused map.
    """

    def __init__(self, in_channels=3, widths=(16, 32, 64, 128, 256), blocks=(2, 2, 2, 2)):
        super().__init__()
        self.levels = len(widths)

        def stage(cin, cout, n):
            return nn.Sequential(AFFBlock(cin, cout), *[AFFBlock(cout, cout) for _ in range(n - 1)])

        def n_blocks(i):
            return blocks[i - 1] if i > 0 else 1

        self.nodes = nn.ModuleDict()
        for i in range(self.levels):
            cin = in_channels if i == 0 else widths[i - 1]
            self.nodes[f"{i}_0"] = stage(cin, widths[i], n_blocks(i))
        for j in range(1, self.levels):
            for i in range(self.levels - j):
                cin = j * widths[i] + widths[i + 1] + (widths[i - 1] if i > 0 else 0)
                self.nodes[f"{i}_{j}"] = stage(cin, widths[i], n_blocks(i))
        self.project = nn.ModuleList(
            [nn.Conv2d(widths[k], widths[0], 1) for k in range(self.levels - 1, 0, -1)]
        )
        self.fuse = stage(self.levels * widths[0], widths[0], 1)
        self.heads = nn.ModuleList([nn.Conv2d(widths[0], 1, 1) for _ in range(self.levels - 1)])

    def forward(self, x):
        feats = {}
        for i in range(self.levels):
            y = x if i == 0 else F.max_pool2d(feats[(i - 1, 0)], 2, 2, ceil_mode=True)
            feats[(i, 0)] = self.nodes[f"{i}_0"](y)
        for j in range(1, self.levels):
            for i in range(self.levels - j):
                ref = feats[(i, 0)]
                inputs = [feats[(i, k)] for k in range(j)] + [_resize(feats[(i + 1, j - 1)], ref)]
                if i > 0:
                    inputs.append(_resize(feats[(i - 1, j)], ref))
                feats[(i, j)] = self.nodes[f"{i}_{j}"](torch.cat(inputs, 1))
        top = feats[(0, self.levels - 1)]
        fused = [
            _resize(p(feats[(k, self.levels - 1 - k)]), top)
            for p, k in zip(self.project, range(self.levels - 1, 0, -1))
        ]
        fused = self.fuse(torch.cat(fused + [top], 1))
        maps = [feats[(0, j)] for j in range(1, self.levels - 1)] + [fused]
        return [h(m) for h, m in zip(self.heads, maps)]


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
    nets = {"DNANet-class nested U-Net": NestedUNet()}
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
