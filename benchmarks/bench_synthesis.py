"""
SIRST-5K synthesis speed on CPU (Lu et al. 2024, sec. III): frames synthesised per second, printed
as a ratio against plain reading of the same frames (image + mask, ``cv2.imread``) in the same run.
Real NUDT-SIRST frames from ../shared/data when present, else random 256x256 frames. Goal: the
online augmentation costs no more than reading the frame (ratio <= 1), so it never starves training.

    python3 benchmarks/bench_synthesis.py [--frames 64] [--repeat 9]
"""

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from _common import SHARED_DATA

from ir_d2.data.sirst5k import NoiseBank, SIRST5KAugmentation
from ir_d2.data.synthesis import n2n_displace, negative_augment


def _frames(n, tmp):
    root = SHARED_DATA / "nudt-sirst"
    if (root / "images").is_dir():
        images = sorted((root / "images").glob("*.png"))[:n]
        return [(p, root / "masks" / p.name) for p in images], "NUDT-SIRST 256x256"
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(n):
        img = rng.integers(0, 120, (256, 256), dtype=np.uint8)
        mask = np.zeros((256, 256), np.uint8)
        y, x = rng.integers(4, 252, 2)
        mask[y - 2 : y + 2, x - 2 : x + 2] = 255
        pi, pm = Path(tmp) / f"i{i}.png", Path(tmp) / f"m{i}.png"
        cv2.imwrite(str(pi), img)
        cv2.imwrite(str(pm), mask)
        pairs.append((pi, pm))
    return pairs, "random 256x256"


def _median_times(fns, repeat):
    """Median wall time of each function, the repeats interleaved so load drifts hit all alike."""
    for fn in fns.values():
        fn()  # warm-up
    times = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pairs, source = _frames(args.frames, tmp)
        n = len(pairs)
        frames = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p, _ in pairs]
        masks = [
            (cv2.imread(str(m), cv2.IMREAD_GRAYSCALE) > 127).astype(np.uint8) for _, m in pairs
        ]
        bank = NoiseBank.from_frames(frames)
        rng = np.random.default_rng(0)

        def read():
            for p, m in pairs:
                cv2.imread(str(p), cv2.IMREAD_UNCHANGED), cv2.imread(str(m), cv2.IMREAD_UNCHANGED)

        def offline():  # what the offline tool does per generated frame, writing aside
            for f, m in zip(frames, masks):
                negative_augment(n2n_displace(f, bank.sample(rng), 0.1), m, 3, (90,))

        bgr = [np.repeat(f[..., None], 3, axis=2) for f in frames]
        online_aug = SIRST5KAugmentation(bank, n2n_prob=1.0, alpha=0.1, negative=True)

        def online():  # mapper use: N2N + the 4-angle negative group of a BGR frame
            for f, m in zip(bgr, masks):
                online_aug(f, m, rng)

        def build_bank():
            NoiseBank.from_frames(frames)

        rows = _median_times(
            {
                "read image + mask (baseline)": read,
                "offline: N2N + 1 rotation": offline,
                "online: N2N + 4-angle group": online,
                "noise bank (eq. 1) per frame": build_bank,
            },
            args.repeat,
        )
    base = rows["read image + mask (baseline)"]
    print(f"{n} frames ({source}), CPU, median of {args.repeat}; {len(bank)} noise patches")
    print(f"{'step':<32} {'frames/s':>10} {'time ratio vs read':>20}")
    for name, t in rows.items():
        print(f"{name:<32} {n / t:>10.0f} {t / base:>20.2f}")


if __name__ == "__main__":
    main()
