"""
Small-target segmentation metrics (IoU, nIoU, Pd, Fa, F1), pure NumPy / SciPy (no detectron2, no
torch).

Definitions are BasicIRSTD's (XinyiYing/BasicIRSTD, ``metrics.py``), used by DNANet, SGEM
(Deng & Yang 2025) and SIRST-5K (Lu et al. 2024); nIoU as open-mmlab/ACM's sample-wise IoU.
Two deliberate differences from BasicIRSTD's code, both where the code disagrees with its own
definition: unmatched predicted components are found by identity, not by comparing area values
(an unmatched component whose area equals a matched one's would be dropped from Fa), and a
frame whose union is empty counts 0 in nIoU instead of dividing by zero.
"""

from typing import Dict, List, Sequence

import numpy as np

from ir_d2.structures.masks import connected_components

__all__ = ["IRSTDMetrics", "match_targets"]


def match_targets(
    gt_centroids: np.ndarray, pred_centroids: np.ndarray, distance: float = 3.0
) -> np.ndarray:
    """
    BasicIRSTD's greedy one-to-one matching of targets: each GT component, in label order, takes
    the first still-unmatched predicted component, in label order, whose centroid lies strictly
    closer than ``distance`` pixels (Euclidean) to its own.

    Returns:
        (n_pred,) int array: the index of the GT target each predicted component matched, or -1.
    """
    gt_centroids = np.asarray(gt_centroids, dtype=np.float64).reshape(-1, 2)
    pred_centroids = np.asarray(pred_centroids, dtype=np.float64).reshape(-1, 2)
    owner = np.full(len(pred_centroids), -1, dtype=np.int64)
    if len(pred_centroids) == 0:
        return owner
    for g, centre in enumerate(gt_centroids):
        d = np.hypot(*(pred_centroids - centre).T)
        free = np.flatnonzero((owner < 0) & (d < distance))
        if free.size:
            owner[free[0]] = g
    return owner


class IRSTDMetrics:
    """
    Dataset-level IoU, nIoU, Pd, Fa and F1 of binary small-target segmentation.

    ``update(pred, gt)`` once per frame, at the frame's original size; ``compute()`` at the end.
    Over the frames seen (with ``P = pred > threshold`` and ``G = gt``):

    - ``IoU`` = sum |P & G| / sum |P | G| (dataset level; 0 when every union is empty), in %;
    - ``nIoU`` = mean over frames of |P & G| / |P | G| (a frame with an empty union counts 0), in %;
    - ``Pd`` = matched GT targets / GT targets, in % (NaN when there are no GT targets), where
      the 8-connected components of G and P are matched by :func:`match_targets`;
    - ``Fa`` = pixels of unmatched predicted components / all pixels, in units of 1e-6;
    - ``F1`` = 2 precision recall / (precision + recall) with pixel precision
      sum |P & G| / sum |P| and recall sum |P & G| / sum |G| over the dataset (0 when undefined),
      in %.

    With ``roc_thresholds``, Pd and Fa are also computed at each of them (``"Pd@t"``, ``"Fa@t"``
    in ``compute()``; arrays in ``roc()``): the Pd-Fa curve the papers plot.

    The state is a handful of counters, so instances from several processes combine with
    :meth:`merge`.

    Args:
        threshold: probability above which (strictly) a pixel is a target.
        distance: centroid distance (pixels) below which (strictly) two targets match.
        roc_thresholds: extra thresholds for Pd and Fa.
    """

    def __init__(
        self, threshold: float = 0.5, distance: float = 3.0, roc_thresholds: Sequence[float] = ()
    ):
        if distance <= 0:
            raise ValueError(f"IRSTDMetrics distance (TEST.IRSTD.DISTANCE) must be > 0: {distance}")
        self.threshold = float(threshold)
        self.distance = float(distance)
        self.roc_thresholds = tuple(float(t) for t in roc_thresholds)
        self.reset()

    def reset(self):
        self.num_images = 0
        self.inter = 0  # sum |P & G|
        self.union = 0  # sum |P | G|
        self.pred_pixels = 0  # sum |P|
        self.gt_pixels = 0  # sum |G|
        self.niou_sum = 0.0
        self.all_pixels = 0
        self.gt_targets = 0
        # per threshold (main threshold first, then roc_thresholds)
        n = 1 + len(self.roc_thresholds)
        self.matched = np.zeros(n, dtype=np.int64)
        self.fa_pixels = np.zeros(n, dtype=np.int64)

    # ------------------------------------------------------------------------------- update
    @staticmethod
    def _as_2d(array, what: str) -> np.ndarray:
        array = np.asarray(array)
        if array.ndim == 3 and array.shape[0] == 1:
            array = array[0]
        if array.ndim != 2:
            raise ValueError(
                f"IRSTDMetrics.update: {what} must be HxW (or 1xHxW), got {array.shape}"
            )
        return array

    def _masks(self, pred: np.ndarray) -> List[np.ndarray]:
        """
        The prediction thresholded at the main threshold and at each ROC threshold. Equal
        thresholds, and every threshold of a bool / {0, 1} pred, share one array object, so
        :meth:`update` labels and matches each distinct mask once.
        """
        thresholds = (self.threshold, *self.roc_thresholds)
        if pred.dtype == bool:
            return [pred] * len(thresholds)
        if np.issubdtype(pred.dtype, np.integer):
            if pred.size and (pred.min() < 0 or pred.max() > 1):
                raise ValueError(
                    "IRSTDMetrics.update: an integer pred must be a {0, 1} mask; pass "
                    "probabilities as floats."
                )
            return [pred.astype(bool)] * len(thresholds)
        if np.isnan(pred).any():
            raise ValueError("IRSTDMetrics.update: pred has NaN values.")
        by_threshold = {t: pred > t for t in set(thresholds)}
        return [by_threshold[t] for t in thresholds]

    def update(self, pred, gt):
        """
        Add one frame.

        Args:
            pred: HxW probability map (float, thresholded at ``threshold``) or mask (bool, or
                integer {0, 1}, used as is at every threshold).
            gt: HxW mask; nonzero pixels are targets (binarise 0-255 masks with values other than
                0 and 255, such as IRSTD-1k's 64, before calling: ``gt > 127``).
        """
        pred = self._as_2d(pred, "pred")
        gt = self._as_2d(gt, "gt")
        if pred.shape != gt.shape:
            raise ValueError(
                f"IRSTDMetrics.update: pred {pred.shape} and gt {gt.shape} differ; both must be at "
                "the frame's original size."
            )
        gt = gt.astype(bool)
        masks = self._masks(pred)

        p = masks[0]
        inter = int(np.count_nonzero(p & gt))
        union = int(np.count_nonzero(p | gt))
        self.num_images += 1
        self.inter += inter
        self.union += union
        self.pred_pixels += int(np.count_nonzero(p))
        self.gt_pixels += int(np.count_nonzero(gt))
        self.niou_sum += inter / union if union else 0.0
        self.all_pixels += gt.size

        _, gt_centroids, _ = connected_components(gt)
        self.gt_targets += len(gt_centroids)
        found = {}  # id of a distinct mask (see _masks) -> (matched, fa_pixels)
        for i, mask in enumerate(masks):
            if id(mask) not in found:
                _, centroids, areas = connected_components(mask)
                owner = match_targets(gt_centroids, centroids, self.distance)
                found[id(mask)] = (np.count_nonzero(owner >= 0), areas[owner < 0].sum())
            matched, fa_pixels = found[id(mask)]
            self.matched[i] += matched
            self.fa_pixels[i] += fa_pixels

    def merge(self, other: "IRSTDMetrics") -> "IRSTDMetrics":
        """Add the counters of ``other`` (same thresholds and distance) to these; returns self."""
        if (other.threshold, other.distance, other.roc_thresholds) != (
            self.threshold,
            self.distance,
            self.roc_thresholds,
        ):
            raise ValueError("IRSTDMetrics.merge: the thresholds or the distance differ.")
        for name in (
            "num_images",
            "inter",
            "union",
            "pred_pixels",
            "gt_pixels",
            "niou_sum",
            "all_pixels",
            "gt_targets",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.matched = self.matched + other.matched
        self.fa_pixels = self.fa_pixels + other.fa_pixels
        return self

    # ------------------------------------------------------------------------------ compute
    def _pd(self, i: int) -> float:
        return 100.0 * self.matched[i] / self.gt_targets if self.gt_targets else float("nan")

    def _fa(self, i: int) -> float:
        return 1e6 * self.fa_pixels[i] / self.all_pixels if self.all_pixels else 0.0

    def compute(self) -> Dict[str, float]:
        """``{"IoU", "nIoU", "Pd", "F1"}`` in %, ``"Fa"`` in 1e-6, plus ``"Pd@t"``/``"Fa@t"``."""
        precision = self.inter / self.pred_pixels if self.pred_pixels else 0.0
        recall = self.inter / self.gt_pixels if self.gt_pixels else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        results = {
            "IoU": 100.0 * self.inter / self.union if self.union else 0.0,
            "nIoU": 100.0 * self.niou_sum / self.num_images if self.num_images else 0.0,
            "Pd": self._pd(0),
            "Fa": self._fa(0),
            "F1": 100.0 * f1,
        }
        for i, t in enumerate(self.roc_thresholds, start=1):
            results[f"Pd@{t:g}"] = self._pd(i)
            results[f"Fa@{t:g}"] = self._fa(i)
        return {k: float(v) for k, v in results.items()}

    def roc(self) -> Dict[str, np.ndarray]:
        """Pd (%) and Fa (1e-6) at each ROC threshold, as arrays: the points of the Pd-Fa curve."""
        idx = range(1, 1 + len(self.roc_thresholds))
        return {
            "thresholds": np.asarray(self.roc_thresholds, dtype=np.float64),
            "Pd": np.asarray([self._pd(i) for i in idx], dtype=np.float64),
            "Fa": np.asarray([self._fa(i) for i in idx], dtype=np.float64),
        }
