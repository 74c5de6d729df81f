"""
Parameters and inference time of Mask R-CNN R50-FPN with and without BNSA (res3+res4) at 640x512,
measured in one run and printed as ratios. Goal (Wang & Ren 2025 call the cost minimal): BNSA adds
at most 10% inference time.

    python3 benchmarks/bench_bnsa.py [--repeat 5] [--height 512 --width 640]
"""

import argparse

import torch
from _common import ir_cfg, n_params, time_call
from detectron2.modeling import build_model

import ir_d2  # noqa: F401


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    image = torch.randint(0, 255, (3, args.height, args.width), dtype=torch.uint8)
    # The BNSA model is timed with its residual option (x + scale * BNSA(x), scale 0 at init): the
    # block computes exactly what the paper's plain form does (one more multiply-add), and with the
    # same weights for the shared parts both models see the same proposals and detections, so the
    # time difference is the blocks' alone (random plain blocks would change the detections).
    models = {
        name: build_model(ir_cfg(config, opts)).eval()
        for name, config, opts in [
            (
                "Mask R-CNN R50-FPN",
                "IR-InstanceSegmentation/mask_rcnn_R_50_FPN_100e_ircoco.yaml",
                [],
            ),
            (
                "+ BNSA res3+res4",
                "IR-InstanceSegmentation/mask_rcnn_R_50_BNSA-C3C4_FPN_100e_ircoco.yaml",
                ["MODEL.BNSA.RESIDUAL", True],
            ),
        ]
    }
    first, second = models.values()
    second.load_state_dict(first.state_dict(), strict=False)
    inputs = [{"image": image.to(first.device), "height": args.height, "width": args.width}]
    times = {name: [] for name in models}
    with torch.no_grad():
        for _ in range(args.repeat):  # interleaved, so drifts of the machine hit both alike
            for name, model in models.items():
                times[name].append(time_call(lambda m=model: m(inputs), warmup=1, repeat=1))
    rows = {name: (n_params(models[name]), sorted(t)[len(t) // 2]) for name, t in times.items()}
    model = first
    (p0, t0), (p1, t1) = rows.values()
    print(f"device: {model.device}, input {args.width}x{args.height}, median of {args.repeat}")
    print(f"{'model':<22} {'params (M)':>10} {'time (ms)':>10}")
    for name, (p, t) in rows.items():
        print(f"{name:<22} {p:>10.2f} {t * 1e3:>10.1f}")
    print(f"BNSA parameter overhead: +{p1 - p0:.2f} M ({(p1 / p0 - 1) * 100:.1f}%)")
    print(f"BNSA time ratio: {t1 / t0:.3f} (goal <= 1.10)")


if __name__ == "__main__":
    main()
