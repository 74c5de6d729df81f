# -*- coding: utf-8 -*-
"""
Box-regression losses of Wang & Ren, "Attention-Based Mask R-CNN Enhancement for Infrared Image
Target Segmentation", Symmetry 17(7):1099, 2025 (sec. 3.3, eqs. 5-12; Table 2). Pure torch.

The losses follow the signature of ``detectron2.layers.ciou_loss`` and ``fvcore.nn.giou_loss``:
``(boxes1, boxes2, reduction="none", eps=1e-7)`` with XYXY boxes of shape (..., 4), ``boxes1`` the
predictions and ``boxes2`` the targets. They compute in float32 whatever the input dtype (so fp16 /
bf16 inputs under autocast are safe) and return float32. Boxes must have ``x1 <= x2`` and
``y1 <= y2``; zero-width or zero-height boxes, coincident centres and very large boxes give
finite losses and finite gradients (for float16 / bfloat16 inputs ``eps`` is raised to the
dtype's machine epsilon, so the gradient stays finite in the input's dtype).
"""

import math

import torch

__all__ = [
    "IOU_LOSS_TYPES",
    "ciou_loss",
    "eiou_loss",
    "focal_ciou_loss",
    "focal_eiou_loss",
    "focal_iou",
    "focal_siou_loss",
    "iou_box_loss",
    "siou_loss",
]


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean() if loss.numel() > 0 else loss.sum() * 0.0
    raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


class _BoxPair:
    """Geometry shared by the IoU-family losses, in float32: widths, heights, centre offsets
    (target minus prediction), the smallest enclosing box, the IoU, and ``eps`` as the losses use
    it (:func:`_low_precision_eps`)."""

    def __init__(self, boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float):
        if boxes1.shape != boxes2.shape or boxes1.shape[-1:] != (4,):
            raise ValueError(
                "box losses expect two XYXY tensors of the same shape (..., 4), got "
                f"{tuple(boxes1.shape)} and {tuple(boxes2.shape)}"
            )
        self.eps = eps = _low_precision_eps(boxes1, eps)
        x1, y1, x2, y2 = boxes1.float().unbind(dim=-1)
        x1g, y1g, x2g, y2g = boxes2.float().unbind(dim=-1)
        # clamp: an inverted box counts as empty instead of giving a negative area
        self.w1, self.h1 = (x2 - x1).clamp(min=0), (y2 - y1).clamp(min=0)
        self.w2, self.h2 = (x2g - x1g).clamp(min=0), (y2g - y1g).clamp(min=0)
        inter_w = (torch.min(x2, x2g) - torch.max(x1, x1g)).clamp(min=0)
        inter_h = (torch.min(y2, y2g) - torch.max(y1, y1g)).clamp(min=0)
        inter = inter_w * inter_h
        union = self.w1 * self.h1 + self.w2 * self.h2 - inter
        self.iou = inter / (union + eps)
        # centre offsets, target minus prediction
        self.dx = (x1g + x2g - x1 - x2) * 0.5
        self.dy = (y1g + y2g - y1 - y2) * 0.5
        # width and height of the smallest box enclosing both
        self.cw = torch.max(x2, x2g) - torch.min(x1, x1g)
        self.ch = torch.max(y2, y2g) - torch.min(y1, y1g)


def _low_precision_eps(boxes: torch.Tensor, eps: float) -> float:
    """``eps`` raised to the machine epsilon of a float16 / bfloat16 input (9.8e-4 / 7.8e-3):
    the losses compute in float32, but their gradient goes back to the input's dtype, and on
    boxes smaller than 1e-3 px the gradient of the distance terms (about 1 / eps) overflows
    float16. float32 and float64 inputs keep ``eps`` as given."""
    if boxes.dtype in (torch.float16, torch.bfloat16):
        return max(eps, torch.finfo(boxes.dtype).eps)
    return eps


def _ciou(boxes1, boxes2, eps):
    g = _BoxPair(boxes1, boxes2, eps)
    eps = g.eps
    diag2 = g.cw**2 + g.ch**2 + eps
    # eps in the denominators keeps zero-height boxes finite (detectron2's ciou_loss divides by h)
    v = (4 / math.pi**2) * (
        torch.atan(g.w2 / (g.h2 + eps)) - torch.atan(g.w1 / (g.h1 + eps))
    ).pow(2)
    with torch.no_grad():
        alpha = v / (1 - g.iou + v + eps)
    return 1 - g.iou + (g.dx**2 + g.dy**2) / diag2 + alpha * v, g.iou


def ciou_loss(boxes1, boxes2, reduction: str = "none", eps: float = 1e-7) -> torch.Tensor:
    """
    Complete-IoU loss (Zheng et al., AAAI 2020; Wang & Ren 2025, Table 2 "CIoU"):
    ``1 - IoU + rho^2 / c^2 + alpha * v``, ``v = 4 / pi^2 (atan(w_gt / h_gt) - atan(w / h))^2``,
    ``alpha = v / (1 - IoU + v)`` without gradient. Same value as ``detectron2.layers.ciou_loss``
    on ordinary boxes; this pure-torch version adds eps to the heights so zero-height boxes stay
    finite and computes in float32.
    """
    return _reduce(_ciou(boxes1, boxes2, eps)[0], reduction)


def _siou(boxes1, boxes2, eps):
    g = _BoxPair(boxes1, boxes2, eps)
    eps = g.eps
    # sigma: distance between the centres; eps^2 keeps d(sigma) finite for coincident centres
    sigma = torch.sqrt(g.dx**2 + g.dy**2 + eps * eps)
    # Angle cost Lambda = 1 - 2 sin^2(arcsin(x) - pi/4) = sin(2 arcsin x) is symmetric under
    # x = sin(alpha) <-> cos(alpha) = sin(beta), so using the smaller of |dx|, |dy| gives the same
    # value as x = |dy| / sigma while keeping x <= 1/sqrt(2), where arcsin has a bounded gradient.
    x = (torch.min(g.dx.abs(), g.dy.abs()) / sigma).clamp(max=math.sqrt(0.5))
    angle = 1 - 2 * torch.sin(torch.arcsin(x) - math.pi / 4) ** 2
    gamma = 2 - angle
    rho_x = (g.dx / (g.cw + eps)) ** 2
    rho_y = (g.dy / (g.ch + eps)) ** 2
    distance = (1 - torch.exp(-gamma * rho_x)) + (1 - torch.exp(-gamma * rho_y))
    omega_w = (g.w1 - g.w2).abs() / (torch.max(g.w1, g.w2) + eps)
    omega_h = (g.h1 - g.h2).abs() / (torch.max(g.h1, g.h2) + eps)
    shape = (1 - torch.exp(-omega_w)) ** 4 + (1 - torch.exp(-omega_h)) ** 4
    return 1 - g.iou + (distance + shape) / 2, g.iou


def siou_loss(boxes1, boxes2, reduction: str = "none", eps: float = 1e-7) -> torch.Tensor:
    """
    SCYLLA-IoU loss (Gevorgyan 2022; Wang & Ren 2025, eqs. 7-11):
    ``L = 1 - IoU + (Delta + Omega) / 2`` with

    * angle cost ``Lambda = 1 - 2 sin^2(arcsin(x) - pi/4)``, ``x = |dy| / sigma``, sigma the
      distance between the box centres (eq. 7);
    * distance cost ``Delta = sum_{t=x,y} (1 - exp(-gamma rho_t))``, ``gamma = 2 - Lambda``,
      ``rho_x = (dx / C_w)^2``, ``rho_y = (dy / C_h)^2``, ``C_w, C_h`` the size of the smallest
      enclosing box (eqs. 8-9);
    * shape cost ``Omega = sum_{t=w,h} (1 - exp(-omega_t))^4``,
      ``omega_w = |w - w_gt| / max(w, w_gt)`` (eq. 10), shape exponent theta = 4.

    Choice: Lambda is evaluated on the smaller of ``|dx| / sigma`` and ``|dy| / sigma``; Lambda
    equals ``sin(2 alpha)``, which is the same for both, so the value is the paper's, but the
    gradient of arcsin stays bounded when the centres are vertically aligned. Coincident centres
    give Lambda = 0 and Delta = 0.
    """
    return _reduce(_siou(boxes1, boxes2, eps)[0], reduction)


def _eiou(boxes1, boxes2, eps):
    g = _BoxPair(boxes1, boxes2, eps)
    eps = g.eps
    cw2, ch2 = g.cw**2, g.ch**2
    loss = (
        1
        - g.iou
        + (g.dx**2 + g.dy**2) / (cw2 + ch2 + eps)
        + (g.w1 - g.w2) ** 2 / (cw2 + eps)
        + (g.h1 - g.h2) ** 2 / (ch2 + eps)
    )
    return loss, g.iou


def eiou_loss(boxes1, boxes2, reduction: str = "none", eps: float = 1e-7) -> torch.Tensor:
    """
    Efficient-IoU loss (Zhang et al., "Focal and efficient IOU loss for accurate bounding box
    regression", Neurocomputing 2022, eq. 8; Wang & Ren 2025, Table 2 "EIoU"):
    ``1 - IoU + rho^2 / c^2 + (w - w_gt)^2 / C_w^2 + (h - h_gt)^2 / C_h^2``, rho the distance
    between the centres, c the diagonal and ``C_w, C_h`` the size of the smallest enclosing box.
    Not mmdetection's "extended IoU", which is a different loss.
    """
    return _reduce(_eiou(boxes1, boxes2, eps)[0], reduction)


def focal_iou(loss: torch.Tensor, iou: torch.Tensor, gamma: float = 0.5) -> torch.Tensor:
    """
    Focal re-weighting of an IoU-family box loss (Wang & Ren 2025, eq. 12, after Zhang et al.'s
    Focal-EIoU): ``IoU^gamma * L``. The weight ``IoU^gamma`` is detached from the graph, so the
    gradient is ``IoU^gamma * dL`` (a constant per box); high-IoU boxes weigh more. The paper uses
    gamma = lambda = 0.5 (fig. 9). A box with IoU 0 gets weight 0.
    """
    if gamma < 0:
        raise ValueError(f"focal IoU gamma must be >= 0, got {gamma}")
    return iou.detach().clamp(min=0.0, max=1.0).pow(gamma) * loss


def focal_siou_loss(
    boxes1, boxes2, gamma: float = 0.5, reduction: str = "none", eps: float = 1e-7
) -> torch.Tensor:
    """Focal-SIoU (Wang & Ren 2025, eq. 12 applied to eq. 11): ``IoU^gamma * siou_loss``, the
    weight detached. The paper's box loss."""
    return _reduce(focal_iou(*_siou(boxes1, boxes2, eps), gamma=gamma), reduction)


def focal_ciou_loss(
    boxes1, boxes2, gamma: float = 0.5, reduction: str = "none", eps: float = 1e-7
) -> torch.Tensor:
    """Focal-CIoU (Wang & Ren 2025, Table 2): ``IoU^gamma * ciou_loss``, the weight detached."""
    return _reduce(focal_iou(*_ciou(boxes1, boxes2, eps), gamma=gamma), reduction)


def focal_eiou_loss(
    boxes1, boxes2, gamma: float = 0.5, reduction: str = "none", eps: float = 1e-7
) -> torch.Tensor:
    """Focal-EIoU (Zhang et al. 2022, eq. 11 with IoU^gamma; Wang & Ren 2025, Table 2):
    ``IoU^gamma * eiou_loss``, the weight detached."""
    return _reduce(focal_iou(*_eiou(boxes1, boxes2, eps), gamma=gamma), reduction)


#: Box losses this package adds to ``MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE``.
IOU_LOSS_TYPES = ("siou", "eiou", "focal_siou", "focal_ciou", "focal_eiou")


def iou_box_loss(
    loss_type: str,
    boxes1: torch.Tensor,
    boxes2: torch.Tensor,
    gamma: float = 0.5,
    reduction: str = "none",
    eps: float = 1e-7,
) -> torch.Tensor:
    """The box loss named ``loss_type`` (one of ``IOU_LOSS_TYPES``); ``gamma`` is used by the
    focal ones only."""
    if loss_type not in IOU_LOSS_TYPES:
        raise ValueError(f"unknown IoU box loss {loss_type!r}; expected one of {IOU_LOSS_TYPES}")
    focal = loss_type.startswith("focal_")
    base = {"siou": _siou, "eiou": _eiou, "ciou": _ciou}[loss_type.removeprefix("focal_")]
    loss, iou = base(boxes1, boxes2, eps)
    if focal:
        loss = focal_iou(loss, iou, gamma=gamma)
    return _reduce(loss, reduction)
