"""
Tiled inference, pure torch: a per-pixel net run on overlapping tiles of a large frame, one tile
at a time, so that its peak memory is bounded by the tile instead of the frame (ours; used by
``IRSTDSegmentor`` and ``ExportedPredictor`` with ``TEST.IRSTD.TILE_SIZE > 0``).
"""

from typing import Callable, List

import torch
from torch.nn import functional as F

__all__ = ["check_tiling", "tile_origins", "tiled_probabilities"]


def check_tiling(tile: int, overlap: int, size_divisibility: int = 1) -> None:
    """
    Raise a ValueError naming ``TEST.IRSTD.TILE_SIZE`` / ``TEST.IRSTD.TILE_OVERLAP`` unless
    ``tile > 0``, ``0 <= overlap < tile`` and ``tile - overlap >= size_divisibility`` (tiles start
    at multiples of ``size_divisibility``, so neighbouring tiles must be at least that far apart).
    """
    if int(tile) != tile or tile <= 0:
        raise ValueError(f"TEST.IRSTD.TILE_SIZE must be a positive integer, got {tile!r}.")
    if int(overlap) != overlap or not 0 <= overlap < tile:
        raise ValueError(
            f"TEST.IRSTD.TILE_OVERLAP must be an integer in [0, TEST.IRSTD.TILE_SIZE) = "
            f"[0, {tile}), got {overlap!r}."
        )
    if size_divisibility < 1:
        raise ValueError(f"size_divisibility must be >= 1, got {size_divisibility!r}.")
    if tile - overlap < size_divisibility:
        raise ValueError(
            f"TEST.IRSTD.TILE_SIZE - TEST.IRSTD.TILE_OVERLAP ({tile} - {overlap}) must be at "
            f"least the net's size divisibility ({size_divisibility}, "
            "MODEL.IRSTD.SIZE_DIVISIBILITY): tiles start at multiples of it."
        )


def tile_origins(size: int, tile: int, overlap: int, align: int = 1) -> List[int]:
    """
    Start offsets of the tiles covering ``[0, size)`` along one axis, each tile
    ``[origin, min(origin + tile, size))``.

    - One origin, 0, when ``size <= tile``.
    - Otherwise the last tile ends exactly at ``size``: its origin is the first multiple of
      ``align`` at or after ``size - tile`` (a tile of ``tile`` pixels when ``align`` divides
      ``size - tile``, else up to ``align - 1`` fewer); every other tile is whole.
    - Origins are increasing multiples of ``align`` (the net's size divisibility: a strided net
      then pools each tile on the same grid as the whole frame), as few as keep neighbours at
      most ``tile - overlap`` (rounded down to a multiple of ``align``) apart, so that they
      share at least ``overlap`` pixels, and spread evenly between 0 and the last one.

    Raises:
        ValueError: naming ``TEST.IRSTD.TILE_SIZE`` / ``TILE_OVERLAP``, see :func:`check_tiling`.
    """
    check_tiling(tile, overlap, align)
    if size <= tile:
        return [0]
    step = (tile - overlap) // align  # in units of align, as are the origins below
    last = -(-(size - tile) // align)
    gaps = -(-last // step)
    return [k * last // gaps * align for k in range(gaps + 1)]


def _cuts(origins: List[int], size: int, tile: int) -> List[int]:
    """Where each tile's share of ``[0, size)`` starts, plus ``size``: the middle of each
    overlap, the point farthest from both neighbours' inner borders."""
    ends = [min(o + tile, size) for o in origins]
    return [0] + [(o + e) // 2 for o, e in zip(origins[1:], ends[:-1])] + [size]


def tiled_probabilities(
    fn: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    tile: int,
    overlap: int,
    size_divisibility: int = 1,
) -> torch.Tensor:
    """
    ``fn`` (a per-pixel net: (1, C, h, w) -> (1, K, h, w) probabilities or logits) run on the
    overlapping tiles of ``image`` (1, C, H, W), one at a time, merged into one (1, K, H, W) map.

    Tiles are ``tile`` x ``tile`` (fewer at the frame's end), placed by :func:`tile_origins` along
    each axis (origins multiples of ``size_divisibility``; neighbours share at least ``overlap``
    pixels). Each tile is padded with zeros at the bottom and right to a multiple of
    ``size_divisibility`` before ``fn`` (as ``ImageList`` pads a whole frame; a tile that ends at
    the frame's end is padded exactly as the frame is) and its output cropped back. Each output
    pixel is taken from the tile in which it lies farthest from a tile border that is not a frame
    border: neighbours split their overlap in the middle, so every pixel comes from a tile that
    holds at least ``overlap // 2`` of the frame's pixels beyond it on every side.

    Equality with whole-frame inference: a pixel equals ``fn(image)`` wherever the net's
    receptive field around it lies inside the tile that supplies it, i.e. everywhere when the
    field's radius is at most ``overlap // 2``, and otherwise away from tile borders: at pixels
    more than that radius from every inner border of their tile. This holds for nets made of
    local operations (convolutions, eval-mode normalisation, pooling and up-sampling on grids
    aligned by ``size_divisibility``); operations over the whole input (global average pooling,
    channel attention over all pixels, thresholds from frame statistics) see the tile instead
    of the frame and change every pixel a little.

    Memory: ``fn`` only ever sees one padded tile (at most ``ceil(tile / size_divisibility) *
    size_divisibility`` pixels a side), and it runs under ``torch.no_grad`` (a graph through every
    tile would keep every tile's activations alive); besides, only the input and the (1, K, H, W)
    output are whole-frame.

    Args:
        fn: the net; its output must have the tile's (padded) height and width.
        image: (1, C, H, W) normalised frame.
        tile: tile side in pixels (``TEST.IRSTD.TILE_SIZE``).
        overlap: pixels shared by neighbouring tiles at least (``TEST.IRSTD.TILE_OVERLAP``).
        size_divisibility: the net's input size divisibility (tile origins and padding).

    Returns:
        (1, K, H, W) tensor of ``fn``'s dtype and device.
    """
    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"tiled_probabilities takes a (1, C, H, W) image: {tuple(image.shape)}")
    height, width = image.shape[-2:]
    ys, xs = (tile_origins(s, tile, overlap, size_divisibility) for s in (height, width))
    cut_y, cut_x = _cuts(ys, height, tile), _cuts(xs, width, tile)
    out = None
    with torch.no_grad():
        for i, y in enumerate(ys):
            for j, x in enumerate(xs):
                crop = image[..., y : min(y + tile, height), x : min(x + tile, width)]
                h, w = crop.shape[-2:]
                pad_h, pad_w = -h % size_divisibility, -w % size_divisibility
                if pad_h or pad_w:
                    crop = F.pad(crop, (0, pad_w, 0, pad_h))
                prob = fn(crop)
                if prob.dim() != 4 or prob.shape[0] != 1 or prob.shape[-2:] != crop.shape[-2:]:
                    raise ValueError(
                        f"the tiled net must map a (1, C, h, w) tile {tuple(crop.shape)} to a "
                        f"(1, K, h, w) map, got {tuple(prob.shape)}"
                    )
                if out is None:
                    out = prob.new_empty((1, prob.shape[1], height, width))
                y0, y1, x0, x1 = cut_y[i], cut_y[i + 1], cut_x[j], cut_x[j + 1]
                out[..., y0:y1, x0:x1] = prob[..., y0 - y : y1 - y, x0 - x : x1 - x]
    return out
