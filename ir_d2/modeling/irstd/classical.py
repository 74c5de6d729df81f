"""
Classical single-frame small-target detectors, the cheap rows of SIRST-5K's Table I (Lu et al.
2024), as IRSTD nets without parameters (pure torch): built, run and scored like the learned nets
(``train_net --eval-only``, IRSTDEvaluator, DefaultPredictor), never trained.

Each computes a background-suppressed response of the gray frame and marks the pixels whose
response exceeds ``mean + k * std`` of the frame's response (the adaptive threshold of both
papers' classical baselines). The output is a logit map, ``(response - threshold) / std`` times a
fixed gain, so that the segmentor's probability is above 0.5 exactly where the response is above
the threshold.
"""

import math
from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .build import IRSTD_NET_REGISTRY
from .unet import IRSTDNetInitMixin

__all__ = [
    "ClassicalDetector",
    "MaxMedian",
    "TopHat",
    "adaptive_threshold_logits",
    "ellipse_element",
    "max_median_response",
    "white_tophat_response",
]

#: logits per standard deviation of the response above the threshold
LOGIT_GAIN = 4.0


def ellipse_element(size: int) -> torch.Tensor:
    """
    The elliptical structuring element of side ``size`` as a (size, size) bool tensor, row by row
    as OpenCV's ``getStructuringElement(MORPH_ELLIPSE, (size, size))`` draws it (each row ``dy``
    from the centre spans ``c * sqrt(1 - dy^2 / r^2)`` rounded to the nearest integer either side).
    """
    if size < 1:
        raise ValueError(f"MODEL.IRSTD.CLASSICAL.KERNEL must be >= 1, got {size}.")
    r = c = size // 2
    element = torch.zeros(size, size, dtype=torch.bool)
    for i in range(size):
        dy = i - r
        dx = int(round(c * math.sqrt((r * r - dy * dy) / (r * r)))) if r else 0
        element[i, max(c - dx, 0) : min(c + dx + 1, size)] = True
    return element


def _flat_morphology(x: torch.Tensor, element: torch.Tensor, erode: bool) -> torch.Tensor:
    """Erosion (minimum) or dilation (maximum) of ``x`` over the flat structuring element
    ``element`` centred on each pixel, as OpenCV's ``erode`` / ``dilate`` (no reflection of the
    element; pixels outside the frame ignored). One shifted view of the frame at a time."""
    h, w = x.shape[-2:]
    r = element.shape[0] // 2
    padded = F.pad(x, (r, r, r, r), value=math.inf if erode else -math.inf)
    reduce = torch.minimum if erode else torch.maximum
    out = None
    for i, j in element.nonzero().tolist():
        view = padded[..., i : i + h, j : j + w]
        out = view.clone() if out is None else reduce(out, view)
    return out


def white_tophat_response(gray: torch.Tensor, element: torch.Tensor) -> torch.Tensor:
    """
    White top-hat ``x - opening(x)``, ``opening = dilate(erode(x))`` with the flat structuring
    element ``element`` (a bool (k, k) mask), as OpenCV's ``morphologyEx(MORPH_TOPHAT)`` with its
    default border: bright structures smaller than the element remain, the smooth background
    goes. Works on any (..., H, W) tensor.
    """
    opening = _flat_morphology(_flat_morphology(gray, element, True), element, False)
    return gray - opening


def max_median_response(gray: torch.Tensor, size: int) -> torch.Tensor:
    """
    The Max-Median filter (Deshpande et al., "Max-mean and max-median filters for detection of
    small targets", SPIE 3809, 1999): in a ``size`` x ``size`` window the medians of the pixels
    on the horizontal, the vertical and the two diagonal lines through the centre; their maximum
    estimates the background, which is subtracted: ``response = x - max(median_h, median_v,
    median_d, median_a)``. The border is replicated. ``size`` odd, >= 3.
    """
    if size < 3 or size % 2 == 0:
        raise ValueError(f"MODEL.IRSTD.CLASSICAL.KERNEL must be odd and >= 3, got {size}.")
    n = size // 2
    padded = F.pad(gray, (n, n, n, n), mode="replicate")
    h, w = gray.shape[-2:]
    medians = []
    for sy, sx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        line = torch.stack(
            [
                padded[..., n + d * sy : n + d * sy + h, n + d * sx : n + d * sx + w]
                for d in range(-n, n + 1)
            ]
        )
        medians.append(line.median(dim=0).values)
    return gray - torch.stack(medians).amax(dim=0)


def adaptive_threshold_logits(response: torch.Tensor, k: float) -> torch.Tensor:
    """
    Logits of the adaptive threshold ``T = mean + k * std`` of each image's response (over its
    H x W pixels): ``LOGIT_GAIN * (response - T) / std``, positive exactly where the response is
    above ``T``.
    """
    flat = response.flatten(start_dim=-2)
    mean = flat.mean(dim=-1)[..., None, None]
    std = flat.std(dim=-1, unbiased=False)[..., None, None].clamp(min=1e-6)
    return LOGIT_GAIN * (response - (mean + k * std)) / std


class ClassicalDetector(IRSTDNetInitMixin, nn.Module):
    """
    Base of the classical detectors: (N, C, H, W) normalised frames -> (N, 1, H, W) logits of
    :func:`adaptive_threshold_logits` on :meth:`response` of the frame's channel mean. For a gray
    frame (R = G = B, as every small-target set) the channel mean of the normalised frame is an
    increasing affine function of the gray value, to which both the responses (linear in the
    frame) and the ``mean + k * std`` threshold are invariant, so the normalisation changes
    nothing. No parameters, nothing to train: ``train_net --eval-only`` scores it (the padding
    that the segmentor adds to a multiple of ``MODEL.IRSTD.SIZE_DIVISIBILITY`` counts in the
    frame's statistics).

    Args:
        in_channels: channels of the input (``MODEL.IRSTD.IN_CHANNELS``).
        kernel: the structuring element's or window's side (``MODEL.IRSTD.CLASSICAL.KERNEL``).
        k: the threshold in standard deviations above the mean (``MODEL.IRSTD.CLASSICAL.K``).
    """

    def __init__(self, in_channels: int = 3, kernel: int = 5, k: float = 4.0):
        super().__init__()
        self.set_in_channels(in_channels)
        self.channels: Sequence[int] = ()
        self.kernel = int(kernel)
        self.k = float(k)

    @classmethod
    def from_config(cls, cfg) -> dict:
        """Constructor arguments from ``cfg.MODEL.IRSTD``."""
        return {
            "in_channels": cfg.MODEL.IRSTD.IN_CHANNELS,
            "kernel": cfg.MODEL.IRSTD.CLASSICAL.KERNEL,
            "k": cfg.MODEL.IRSTD.CLASSICAL.K,
        }

    def output_heads(self) -> List[nn.Conv2d]:
        return []

    def response(self, gray: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        gray = x.float().mean(dim=1, keepdim=True)
        return adaptive_threshold_logits(self.response(gray), self.k)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, k={self.k}"


@IRSTD_NET_REGISTRY.register()
class TopHat(ClassicalDetector):
    """The white top-hat detector (:func:`white_tophat_response`) with an elliptical element of
    side ``kernel`` (:func:`ellipse_element`), thresholded at ``mean + k * std``."""

    def __init__(self, in_channels: int = 3, kernel: int = 5, k: float = 4.0):
        super().__init__(in_channels, kernel, k)
        self.register_buffer("element", ellipse_element(self.kernel), persistent=False)

    def response(self, gray: torch.Tensor) -> torch.Tensor:
        return white_tophat_response(gray, self.element)


@IRSTD_NET_REGISTRY.register()
class MaxMedian(ClassicalDetector):
    """The Max-Median detector (:func:`max_median_response`) over a ``kernel`` x ``kernel``
    window, thresholded at ``mean + k * std``."""

    def __init__(self, in_channels: int = 3, kernel: int = 5, k: float = 4.0):
        super().__init__(in_channels, kernel, k)
        max_median_response(torch.zeros(1, 1, 1, 1), self.kernel)  # checks the window

    def response(self, gray: torch.Tensor) -> torch.Tensor:
        return max_median_response(gray, self.kernel)
