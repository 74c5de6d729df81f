"""
ISNet's edge supervision, pure torch (no detectron2 import): the finite-difference gradient
magnitude that gives both ISNet's image-gradient input and its edge ground truth, and the edge
loss of its training.

Paper: Zhang et al., "ISNet: Shape Matters for Infrared Small Target Detection", CVPR 2022,
sec. 3 (the TFD-inspired edge block is supervised by the targets' edges; the loss section adds
the edge term to the Soft-IoU term of the mask). Formulas from the authors' code
(github.com/RuiZhang97/ISNet, ``model/train_ISNet.py``: ``Get_gradient_nopadding``,
``Get_gradientmask_nopadding`` and the training step; ``model/loss.py``: ``SoftLoULoss1``).
"""

from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["gradient_magnitude", "isnet_edge_loss", "mask_edges"]

#: The constant under the square root of the gradient magnitude (the authors' 1e-6): a flat
#: region has magnitude sqrt(1e-6) = 1e-3, not 0.
GRADIENT_EPS = 1e-6

#: torch's ``BCELoss`` clamps each log at -100; :func:`isnet_edge_loss` does the same.
_LOG_FLOOR = -100.0


def gradient_magnitude(x: torch.Tensor, eps: float = GRADIENT_EPS) -> torch.Tensor:
    """
    Per-channel finite-difference gradient magnitude of ``x`` (N, C, H, W), ISNet's "gradient
    image" (Zhang et al. 2022, sec. 3: the edge block reads the input's gradient; the authors'
    ``Get_gradient_nopadding``)::

        g_v(i, j) = x(i + 1, j) - x(i - 1, j)
        g_h(i, j) = x(i, j + 1) - x(i, j - 1)
        |g|(i, j) = sqrt(g_v^2 + g_h^2 + eps)

    with zero padding (pixels outside the frame count as 0), at the input's size. This is the
    code's pair of 3x3 central-difference kernels ``[-1, 0, 1]`` (vertical and horizontal),
    not a Sobel operator; it is written here as shifted differences, which give the same values
    (the kernels' other taps are 0). Returns (N, C, H, W).
    """
    if x.dim() != 4:
        raise ValueError(f"gradient_magnitude expects (N, C, H, W), got {tuple(x.shape)}.")
    p = F.pad(x, (1, 1, 1, 1))
    g_v = p[:, :, 2:, 1:-1] - p[:, :, :-2, 1:-1]
    g_h = p[:, :, 1:-1, 2:] - p[:, :, 1:-1, :-2]
    return torch.sqrt(g_v * g_v + g_h * g_h + eps)


def mask_edges(targets: torch.Tensor) -> torch.Tensor:
    """
    ISNet's edge ground truth: :func:`gradient_magnitude` of the {0, 1} mask (the authors'
    ``Get_gradientmask_nopadding`` on the mask's first channel), (N, 1, H, W).

    Values, as the code computes them: ``1e-3`` (sqrt(1e-6)) where the mask is locally flat,
    ``sqrt(1 + 1e-6)`` where one of the two differences is +-1 (the pixels on either side of a
    target's boundary, two pixels apart), ``sqrt(2 + 1e-6)`` where both are (e.g. a square's
    corner pixels). So the "edge" is two pixels wide around each boundary, and its values exceed 1
    (see :func:`isnet_edge_loss`).

    Args:
        targets: (N, H, W) or (N, 1, H, W) masks, values in [0, 1]. A padded batch gives the same
            values on the real pixels as each unpadded mask (both are zero beyond the frame).
    """
    if targets.dim() == 3:
        targets = targets[:, None]
    if targets.dim() != 4 or targets.shape[1] != 1:
        raise ValueError(
            f"mask_edges expects (N, H, W) or (N, 1, H, W), got {tuple(targets.shape)}."
        )
    return gradient_magnitude(targets.float())


def isnet_edge_loss(
    edge_logits: torch.Tensor,
    targets: torch.Tensor,
    valid: Optional[torch.Tensor] = None,
    bce_weight: float = 10.0,
    *,
    double_sigmoid: bool = True,
) -> torch.Tensor:
    """
    ISNet's edge loss (Zhang et al. 2022, sec. 3, loss function), as the authors' official
    training code computes it (``train_ISNet.py``)::

        e    = mask_edges(targets)                    # values 1e-3 .. sqrt(2)
        p    = sigmoid(z)                             # the net's edge map (z: edge logits)
        L    = w * BCE(p, e) + (1 - mean_n IoU_n(q, e))
        IoU_n(q, e) = sum(q * e) / (sum(q) + sum(e) - sum(q * e))     (sums over image n)

    - ``w`` = ``bce_weight`` (the code's 10; ``MODEL.IRSTD.EDGE_LOSS_WEIGHT``); BCE is the mean
      over the pixels (torch's ``BCELoss``, logs clamped at -100);
    - the Soft-IoU term is the code's ``SoftLoULoss1``: per image, no smoothing, averaged over
      the batch;
    - ``q = sigmoid(p) = sigmoid(sigmoid(z))`` with ``double_sigmoid`` (the default): the code's
      ``SoftLoULoss1`` applies a sigmoid to its input, and the input is the edge map the net has
      already passed through a sigmoid, so the IoU term sees ``sigmoid(sigmoid(z))``, squeezed
      into (0.5, 0.73). BasicIRSTD's ``ISNetLoss`` does the same (``softiou(preds[1].sigmoid(),
      edge_gt)`` on the sigmoid output). ``double_sigmoid=False`` uses ``q = sigmoid(z)``, the
      evident intent (``MODEL.IRSTD.ISNET.EDGE_IOU_DOUBLE_SIGMOID``).

    Official repository rather than BasicIRSTD: BasicIRSTD's ``ISNetLoss`` has the same two terms
    and weight, but its Soft-IoU sums over the whole batch with smoothing 1; the edge target is
    the same operator in both.

    Oddity kept: the edge target exceeds 1 (``sqrt(1 + 1e-6)`` on edges, ``sqrt(2 + 1e-6)`` on
    corners), which the code feeds to ``BCELoss`` (accepted by the CUDA kernel of its time; the
    CPU kernel of current torch refuses targets outside [0, 1]). The cross-entropy is computed
    here from the logits with the same formula and the same -100 floor on each log, so it is
    finite for any target and equals ``BCELoss(sigmoid(z), e)`` wherever ``sigmoid(z)`` does not
    round to 0 or 1 in float32. Where ``e > 1`` it keeps rewarding larger ``z`` until
    ``log(1 - sigmoid(z))`` reaches the floor (z = 100; the code's float32 sigmoid saturates and
    stops at about z = 17): the edge map's gate ``sigmoid(z)`` is 1 either way.

    Padding: with ``valid`` (N, H, W) (1 on real pixels, 0 on ImageList's padding) the mean and
    every sum run over the real pixels only, so a padded batch gives the loss of the unpadded
    frames.

    Args:
        edge_logits: (N, 1, H, W) edge logits (before any sigmoid).
        targets: (N, H, W) or (N, 1, H, W) {0, 1} masks.
        valid: optional (N, H, W) or (N, 1, H, W) mask of the pixels that count.
        bce_weight: weight of the cross-entropy term.
        double_sigmoid: the code's ``sigmoid(sigmoid(z))`` in the Soft-IoU term (see above).

    Returns:
        a scalar float32 tensor.
    """
    if edge_logits.dim() != 4 or edge_logits.shape[1] != 1:
        raise ValueError(
            f"isnet_edge_loss: edge_logits must be (N, 1, H, W), got {tuple(edge_logits.shape)}."
        )
    z = edge_logits.float()
    edges = mask_edges(targets)
    if edges.shape != z.shape:
        raise ValueError(
            f"isnet_edge_loss: targets {tuple(targets.shape)} do not match edge logits "
            f"{tuple(z.shape)}."
        )
    if valid is None:
        valid = torch.ones_like(z)
    else:
        if valid.numel() != z.numel():
            raise ValueError(
                f"isnet_edge_loss: valid {tuple(valid.shape)} does not match edge logits "
                f"{tuple(z.shape)}."
            )
        valid = valid.reshape(z.shape).to(z.dtype)
    # BCE(sigmoid(z), e) from the logits: log(sigmoid(z)) = -softplus(-z),
    # log(1 - sigmoid(z)) = -softplus(z), each floored at -100 as torch's BCELoss does
    log_p = (-F.softplus(-z)).clamp(min=_LOG_FLOOR)
    log_not_p = (-F.softplus(z)).clamp(min=_LOG_FLOOR)
    bce = -(edges * log_p + (1.0 - edges) * log_not_p)
    bce = (bce * valid).sum() / valid.sum().clamp(min=1.0)
    q = torch.sigmoid(z)
    if double_sigmoid:
        q = torch.sigmoid(q)
    q = q * valid
    e = edges * valid
    dims = (1, 2, 3)
    inter = (q * e).sum(dim=dims)
    union = q.sum(dim=dims) + e.sum(dim=dims) - inter
    iou_loss = 1.0 - (inter / union).mean()
    return bce_weight * bce + iou_loss
