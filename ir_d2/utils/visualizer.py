"""Overlays people can look at: instance masks and boxes, or a small-target heat-map."""

from typing import Sequence

import cv2
import numpy as np

__all__ = ["draw_small_targets", "draw_instances", "draw_ground_truth", "contact_sheet"]


def draw_small_targets(
    image_bgr: np.ndarray,
    prob: np.ndarray,
    targets: Sequence[dict] = (),
    alpha: float = 0.45,
    min_prob: float = 0.05,
) -> np.ndarray:
    """
    Blend the foreground probability ``prob`` (HxW in [0, 1]) over ``image_bgr`` (HxWx3 uint8) as a
    JET heat-map (pixels below ``min_prob`` keep the frame), and mark each target (dicts with
    "centroid" (x, y), "area", "score", as IRSTDSegmentor returns) with a circle and its score.
    """
    if image_bgr.ndim == 2:
        image_bgr = cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
    prob = np.clip(np.asarray(prob, dtype=np.float32), 0.0, 1.0)
    if prob.shape != image_bgr.shape[:2]:
        raise ValueError(f"probability map {prob.shape} and image {image_bgr.shape[:2]} differ")
    heat = cv2.applyColorMap((prob * 255).astype(np.uint8), cv2.COLORMAP_JET)
    weight = (alpha * (prob >= min_prob))[..., None]
    out = (image_bgr * (1 - weight) + heat * weight).astype(np.uint8)
    scale = max(1, round(max(out.shape[:2]) / 400))
    for t in targets:
        x, y = (int(round(v)) for v in t["centroid"])
        radius = int(max(6, np.sqrt(t.get("area", 1)) * 1.5)) * scale
        cv2.circle(out, (x, y), radius, (0, 255, 0), scale, cv2.LINE_AA)
        cv2.putText(
            out,
            f"{t.get('score', 0):.2f}",
            (x + radius + 2, max(10, y - radius)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.35 * scale,
            (0, 255, 0),
            1,
            cv2.LINE_AA,
        )
    return out


def draw_instances(image_bgr: np.ndarray, instances, metadata=None) -> np.ndarray:
    """detectron2's ``Visualizer`` overlay of predicted masks and boxes, returned as BGR uint8."""
    from detectron2.utils.visualizer import ColorMode, Visualizer

    if image_bgr.ndim == 2:
        image_bgr = cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
    vis = Visualizer(image_bgr[:, :, ::-1], metadata, instance_mode=ColorMode.IMAGE)
    return vis.draw_instance_predictions(instances.to("cpu")).get_image()[:, :, ::-1].copy()


def draw_ground_truth(
    image_bgr: np.ndarray, gt_mask: np.ndarray, color=(255, 0, 255)
) -> np.ndarray:
    """The ground-truth targets (``gt_mask`` HxW, non-zero = target) drawn over a copy of
    ``image_bgr``: each outline, and a square around it so that a missed target stands out even
    in a thumbnail (magenta by default)."""
    out = image_bgr.copy()
    mask = (np.asarray(gt_mask) > 0).astype(np.uint8)
    if mask.shape != out.shape[:2]:
        raise ValueError(f"mask {mask.shape} and image {out.shape[:2]} differ")
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, color, 1, cv2.LINE_8)
    scale = max(1, round(max(out.shape[:2]) / 400))
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        pad = 6 * scale
        cv2.rectangle(out, (x - pad, y - pad), (x + w + pad, y + h + pad), color, scale)
    return out


def contact_sheet(images: Sequence[np.ndarray], columns: int = 4, tile: int = 256) -> np.ndarray:
    """BGR images side by side on a grid of ``columns``, each scaled to fit a ``tile`` square
    (aspect kept, black border), for looking at many overlays at once."""
    if not images:
        raise ValueError("contact_sheet needs at least one image")
    rows = (len(images) + columns - 1) // columns
    sheet = np.zeros((rows * tile, min(columns, len(images)) * tile, 3), np.uint8)
    for i, image in enumerate(images):
        h, w = image.shape[:2]
        scale = tile / max(h, w)
        small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))))
        y, x = (i // columns) * tile, (i % columns) * tile
        sheet[y : y + small.shape[0], x : x + small.shape[1]] = small
    return sheet
