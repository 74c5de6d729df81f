"""
Temporal confirmation of small targets in a video (pure Python and NumPy; ours, not a paper's).

A target detected in one frame is reported only when a target was also detected within
``distance`` pixels of it in at least ``k`` of the last ``n`` frames (the current one included),
as track-before-detect practice does: a single-frame false alarm (noise, a glint) rarely repeats
at the same place, while a real target, moving a few pixels per frame, does.
"""

from collections import deque
from typing import Iterable, List, Sequence, Tuple

import numpy as np

__all__ = ["TemporalFilter", "parse_k_of_n"]


def parse_k_of_n(text: str) -> Tuple[int, int]:
    """``"K/N"`` -> (K, N) with 1 <= K <= N; ValueError naming the form otherwise."""
    try:
        k, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise ValueError(f"--temporal takes K/N (e.g. 3/5), got {text!r}") from None
    if not 1 <= k <= n:
        raise ValueError(f"--temporal K/N needs 1 <= K <= N, got {text!r}")
    return k, n


class TemporalFilter:
    """
    ``keep = filter.update(points)`` once per frame, in order: ``points`` are the frame's
    detections as (x, y) centres; ``keep`` is a bool list, True for the detections seen in at
    least ``k`` of the last ``n`` frames, this one included. A detection of ``a`` frames ago
    matches when it is closer (strictly) than ``distance + speed * a`` pixels: a target moving up
    to ``speed`` pixels a frame stays matched. The history holds every detection of the last
    ``n - 1`` frames, kept or not, so a target confirmed late is not lost for being unconfirmed
    before. With k = 1 every detection is kept.

    Args:
        k, n: the K-of-N rule (1 <= k <= n).
        distance: match distance in pixels (the metrics' centroid distance, 3, by default).
        speed: the largest target motion in pixels per frame that the gate allows for.
    """

    def __init__(self, k: int, n: int, distance: float = 3.0, speed: float = 0.0):
        if not 1 <= k <= n:
            raise ValueError(f"TemporalFilter needs 1 <= k <= n, got k={k}, n={n}")
        if distance <= 0:
            raise ValueError(f"TemporalFilter distance must be > 0, got {distance}")
        if speed < 0:
            raise ValueError(f"TemporalFilter speed must be >= 0 pixels a frame, got {speed}")
        self.k, self.n = int(k), int(n)
        self.distance, self.speed = float(distance), float(speed)
        self.history = deque(maxlen=self.n - 1)

    def reset(self) -> None:
        self.history.clear()

    def update(self, points: Iterable[Sequence[float]]) -> List[bool]:
        pts = np.asarray([tuple(p)[:2] for p in points], dtype=np.float64).reshape(-1, 2)
        seen = np.ones(len(pts), dtype=np.int64)  # the current frame itself
        for age, past in enumerate(reversed(self.history), start=1):
            if len(past) and len(pts):
                d2 = ((pts[:, None, :] - past[None, :, :]) ** 2).sum(axis=2)
                seen += (d2 < (self.distance + self.speed * age) ** 2).any(axis=1)
        if self.n > 1:
            self.history.append(pts)
        return [bool(s >= self.k) for s in seen]
