"""
A small procedurally generated IR small-target set, **synthetic** (NumPy / SciPy / Pillow: no
detectron2 import).

It is the embedded default the quick start and the tests run on when no real set is present; the
real sets (SIRST, NUDT-SIRST, IRSTD-1k) stay the primary path. Frames are thermal-like: a smooth
temperature gradient, sometimes a warmer or colder ground below a wavy horizon, low-frequency
clutter, one to three larger warm blobs (clouds, buildings: not targets), zero to three small hot
targets (elliptical Gaussian spots of 2-40 pixels whose peak is 3 to 25 times the noise level, so
the dim ones are hard), zero to two thin hot streaks that are not targets (wires, edges) and
sensor noise (white plus column fixed-pattern noise). The target mask is where a target's profile
is at least half its peak; targets are at least 16 pixels apart, so each is exactly one
8-connected component.

The set is made deterministically from a seed on first use into a cache folder (env
``IR_D2_CACHE``, else ``~/.cache/ir_d2``), laid out as the real sets are: ``images/``, ``masks/``
(8-bit L PNG, masks {0, 255}), ``train.txt``, ``test.txt``, plus ``targets.json`` (per frame, the
targets' centroids and areas). It is written to a temporary folder and renamed, so concurrent first
uses are safe.
"""

import json
import os
import shutil
import tempfile
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image
from scipy import ndimage

__all__ = [
    "SYNTHETIC_VERSION",
    "cache_dir",
    "make_synthetic_frame",
    "synthetic_set_dir",
    "build_synthetic_set",
]

# bump when the generator changes: a new cache folder is made
SYNTHETIC_VERSION = 2


def cache_dir() -> str:
    """ir_d2's cache folder: env ``IR_D2_CACHE``, else ``~/.cache/ir_d2``."""
    return os.path.expanduser(os.environ.get("IR_D2_CACHE") or os.path.join("~", ".cache", "ir_d2"))


def _place(rng, taken: List[Tuple[float, float]], height, width, margin, min_dist, tries=200):
    for _ in range(tries):
        y = rng.uniform(margin, height - 1 - margin)
        x = rng.uniform(margin, width - 1 - margin)
        if all((y - ty) ** 2 + (x - tx) ** 2 >= min_dist**2 for ty, tx in taken):
            return y, x
    return None


def make_synthetic_frame(
    rng: np.random.Generator,
    height: int = 256,
    width: int = 256,
    *,
    max_targets: int = 3,
    empty_prob: float = 0.15,
) -> Tuple[np.ndarray, np.ndarray, List[Dict]]:
    """
    One synthetic IR frame: ``(image HxW uint8, mask HxW uint8 {0, 255}, targets)`` where
    ``targets`` lists each target's ``centroid`` (x, y) and ``area`` (pixels of its mask).
    """
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    # smooth temperature gradient
    image = rng.uniform(40, 110) + rng.uniform(-30, 30) * (xx / width - 0.5)
    image = image + rng.uniform(-30, 30) * (yy / height - 0.5)
    # ground below a wavy horizon, warmer or colder than the sky
    if rng.random() < 0.5:
        phase, cycles = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 2.0)
        horizon = height * rng.uniform(0.45, 0.8) + rng.uniform(-8, 8) * np.sin(
            2 * np.pi * cycles * xx[0] / width + phase
        )
        ground = (yy > horizon[None, :]).astype(np.float64) * rng.uniform(-25, 35)
        image = image + ndimage.gaussian_filter(ground, 2.0)
    # low-frequency clutter
    clutter = ndimage.gaussian_filter(rng.standard_normal((height, width)), rng.uniform(6, 16))
    image = image + clutter / (clutter.std() + 1e-9) * rng.uniform(3, 12)
    # larger warm blobs (not targets)
    for _ in range(rng.integers(1, 4)):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        sy, sx = rng.uniform(5, 14, size=2)
        blob = np.exp(-((yy - cy) ** 2 / (2 * sy**2) + (xx - cx) ** 2 / (2 * sx**2)))
        image = image + rng.uniform(10, 30) * blob
    noise = rng.uniform(1.5, 5.0)  # sensor noise level (std of the white noise below)
    # small hot targets, peak at a signal-to-noise ratio of 3 to 25 (the dim ones are hard)
    mask = np.zeros((height, width), dtype=bool)
    targets, centres = [], []
    n = 0 if rng.random() < empty_prob else int(rng.integers(1, max_targets + 1))
    for _ in range(n):
        centre = _place(rng, centres, height, width, margin=8, min_dist=16)
        if centre is None:
            break
        centres.append(centre)
        cy, cx = centre
        sy, sx = rng.uniform(0.7, 2.6, size=2)
        profile = np.exp(-((yy - cy) ** 2 / (2 * sy**2) + (xx - cx) ** 2 / (2 * sx**2)))
        image = image + noise * np.exp(rng.uniform(np.log(3), np.log(25))) * profile
        footprint = profile >= 0.5
        mask |= footprint
        ys, xs = np.nonzero(footprint)
        targets.append({"centroid": [float(xs.mean()), float(ys.mean())], "area": int(len(ys))})
    # target-like clutter (not targets): short thin hot streaks (wires, edges, glints)
    for _ in range(rng.integers(0, 3)):
        centre = _place(rng, centres, height, width, margin=8, min_dist=12)
        if centre is None:
            break
        cy, cx = centre
        angle, length = rng.uniform(0, np.pi), rng.uniform(4, 10)
        along = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
        across = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
        streak = np.exp(-(across**2) / (2 * 0.6**2)) * (np.abs(along) <= length / 2)
        image = image + noise * rng.uniform(3, 15) * ndimage.gaussian_filter(streak, 0.5)
    # sensor noise: white plus column fixed-pattern
    image = image + rng.normal(0, noise, size=(height, width))
    image = image + rng.normal(0, rng.uniform(0.5, 2.0), size=(1, width))
    image = np.rint(np.clip(image, 0, 255)).astype(np.uint8)
    return image, mask.astype(np.uint8) * 255, targets


def synthetic_set_dir(seed: int = 0, num_train: int = 160, num_test: int = 40, size: int = 256):
    """Cache folder of the synthetic set with these parameters (it may not exist yet)."""
    key = f"v{SYNTHETIC_VERSION}_seed{seed}_train{num_train}_test{num_test}_{size}px"
    return os.path.join(cache_dir(), "ir_synthetic", key)


def build_synthetic_set(
    seed: int = 0, num_train: int = 160, num_test: int = 40, size: int = 256
) -> str:
    """
    Make the synthetic set in the cache folder unless it is there already; returns the folder.
    Frame ``i`` is drawn from its own generator spawned from ``seed``, so the set is the same on
    every machine and run.
    """
    final = synthetic_set_dir(seed, num_train, num_test, size)
    if os.path.isfile(os.path.join(final, "targets.json")):
        return final
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".building-", dir=parent)
    try:
        os.makedirs(os.path.join(tmp, "images"))
        os.makedirs(os.path.join(tmp, "masks"))
        names, all_targets = [], {}
        seeds = np.random.SeedSequence(seed).spawn(num_train + num_test)
        for i, frame_seed in enumerate(seeds):
            name = f"synth_{i:05d}"
            image, mask, targets = make_synthetic_frame(
                np.random.default_rng(frame_seed), size, size
            )
            Image.fromarray(image).save(os.path.join(tmp, "images", name + ".png"))
            Image.fromarray(mask).save(os.path.join(tmp, "masks", name + ".png"))
            names.append(name)
            all_targets[name] = targets
        for split, part in (("train", names[:num_train]), ("test", names[num_train:])):
            with open(os.path.join(tmp, f"{split}.txt"), "w") as f:
                f.write("\n".join(part) + "\n")
        with open(os.path.join(tmp, "targets.json"), "w") as f:
            json.dump({"seed": seed, "version": SYNTHETIC_VERSION, "targets": all_targets}, f)
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished first
            if not os.path.isfile(os.path.join(final, "targets.json")):
                raise
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return final
