"""
The input and output of the small-target nets, one definition that
:class:`~.irstd_segmentor.IRSTDSegmentor` and the exported-model predictor
(:class:`ir_d2.engine.ExportedPredictor`) share: 8-bit frames normalised and padded into an
``ImageList``; probability maps cropped, resized and split into targets.
"""

from typing import Dict, List, Sequence

import torch
from detectron2.modeling.postprocessing import sem_seg_postprocess
from detectron2.structures import ImageList

from ir_d2.structures.masks import connected_targets

__all__ = ["check_uint8_range", "irstd_input", "irstd_results"]


def check_uint8_range(image: torch.Tensor, unit_range: bool = True) -> torch.Tensor:
    """
    ``image`` if it holds 8-bit values: a uint8 tensor, or a float one within [0, 255] (what
    detectron2's DefaultPredictor makes of a uint8 frame). Anything else (a 16-bit or float
    radiometric frame given to DefaultPredictor as is) would be normalised by ``PIXEL_MEAN/STD``
    into nonsense: a ValueError says to use IRPredictor, which brings such frames to 8 bits.
    With ``unit_range`` a float frame in [0, 1] with fractional values (a float image scaled to
    [0, 1], which would read as black) is refused too; training passes False (augmentation makes
    fractional values, and a dark augmented crop may stay below 1).
    """
    if image.dtype == torch.uint8:
        return image
    if image.is_floating_point() and image.numel():
        lo, hi = torch.aminmax(image.detach())
        unit = unit_range and hi <= 1 and not torch.equal(image, image.round())
        if 0 <= lo and hi <= 255 and not unit:
            return image
        found = f"values in [{float(lo):g}, {float(hi):g}]"
        found += " (a float frame scaled to [0, 1])" if unit else ""
    else:
        found = f"dtype {image.dtype}"
    raise ValueError(
        f"IRSTDSegmentor takes 8-bit images (uint8, or floats in [0, 255]) but got {found}: "
        "gray, 16-bit and float frames go through ir_d2.engine.IRPredictor (or the IR mappers), "
        "which normalise them to 8 bits (INPUT.IR.NORMALIZE)"
    )


def irstd_input(
    images: Sequence[torch.Tensor],
    pixel_mean: torch.Tensor,
    pixel_std: torch.Tensor,
    size_divisibility: int,
    unit_range: bool = True,
) -> ImageList:
    """
    The small-target nets' input, the one definition that
    :class:`~.irstd_segmentor.IRSTDSegmentor` and the exported-model predictor
    (:class:`ir_d2.engine.ExportedPredictor`) share: each 3xHxW 8-bit image
    (:func:`check_uint8_range`) in ``INPUT.FORMAT`` becomes float, takes its channel mean when the
    net has one input channel (``len(pixel_mean) == 1``), is normalised as
    ``(x - pixel_mean) / pixel_std`` and padded with zeros (bottom and right) to a multiple of
    ``size_divisibility``; all on ``pixel_mean``'s device. ``unit_range``: refuse float frames
    scaled to [0, 1] (inference; :func:`check_uint8_range`).

    Returns:
        ImageList: ``tensor`` (N, C, H', W') and the unpadded ``image_sizes``.
    """
    in_channels = pixel_mean.shape[0]
    out = []
    for image in images:
        image = check_uint8_range(image, unit_range).to(pixel_mean.device).float()
        if image.dim() != 3:
            raise ValueError(f"'image' must be CxHxW, got {tuple(image.shape)}.")
        if image.shape[0] != in_channels:
            if in_channels == 1:
                image = image.mean(dim=0, keepdim=True)
            else:
                raise ValueError(
                    f"'image' has {image.shape[0]} channels but the net takes "
                    f"{in_channels} (MODEL.IRSTD.IN_CHANNELS)."
                )
        out.append((image - pixel_mean) / pixel_std)
    return ImageList.from_tensors(out, size_divisibility)


def irstd_results(probs: torch.Tensor, image_sizes, output_sizes, threshold: float) -> List[Dict]:
    """
    The small-target outputs, shared by :class:`~.irstd_segmentor.IRSTDSegmentor` and the
    exported-model predictor: for each (1, H', W') probability map of ``probs`` (N, 1, H', W'),
    the padding is cropped to its ``image_sizes`` entry and the map resized to its
    ``output_sizes`` entry (height, width; detectron2's ``sem_seg_postprocess``), giving
    ``{"sem_seg": 1xHxW, "targets": [...]}``: the 8-connected components of ``sem_seg > threshold``
    (:func:`ir_d2.structures.connected_targets`).
    """
    results = []
    for prob, image_size, (height, width) in zip(probs, image_sizes, output_sizes):
        r = sem_seg_postprocess(prob, image_size, height, width)
        targets = connected_targets(r[0].detach().float().cpu().numpy(), threshold)
        results.append({"sem_seg": r, "targets": targets})
    return results
