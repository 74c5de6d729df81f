"""
IRSTDSegmentor: the detectron2 meta-architecture of binary infrared small-target segmentation
(SGEM, Deng & Yang 2025; SIRST-5K, Lu et al. 2024), owning one net of IRSTD_NET_REGISTRY.
"""

from typing import Dict, List, Optional, Sequence

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import ImageList
from detectron2.utils.events import get_event_storage
from torch import nn

from ir_d2.layers import (
    NEG_LOSS_MODES,
    binary_cross_entropy_loss,
    check_tiling,
    isnet_edge_loss,
    negative_sample_loss,
    soft_iou_loss,
    tiled_probabilities,
)

from ..irstd import build_irstd_net
from .irstd_io import irstd_input, irstd_results

__all__ = ["IRSTDSegmentor", "IRSTD_LOSSES", "DS_REDUCTIONS", "split_net_outputs"]

#: MODEL.IRSTD.LOSS: the segmentation loss of every output of the net
IRSTD_LOSSES = ("soft_iou", "bce")
#: MODEL.IRSTD.DS_REDUCTION: how the losses of a deeply supervised net's outputs combine
DS_REDUCTIONS = ("mean", "sum")


def split_net_outputs(outputs):
    """
    A small-target net's output as ``(logit maps, edge logits or None)``: a net returns one
    (N, 1, H, W) logit map, a list of them (deep supervision, the final one last), or, in
    training, a dict ``{"logits": map or list, "edge": (N, 1, H, W) edge logits}`` (ISNet).
    """
    edge = None
    if isinstance(outputs, dict):
        edge = outputs.get("edge")
        outputs = outputs["logits"]
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    return outputs, edge


@META_ARCH_REGISTRY.register()
class IRSTDSegmentor(nn.Module):
    """
    Binary small-target segmentation with a one-logit-per-pixel net (``MODEL.IRSTD.NET``).

    Inputs follow detectron2's SemanticSegmentor convention: a list of dicts with ``"image"``
    (3xHxW, uint8 or float in [0, 255], in ``INPUT.FORMAT``; anything else is refused, see
    :func:`~.irstd_io.check_uint8_range`) and, for training, ``"sem_seg"`` (HxW, values
    {0, 1}); optional ``"height"``/``"width"``, the output size at inference.

    - Images are normalised by ``MODEL.PIXEL_MEAN``/``PIXEL_STD`` and padded (ImageList) to a
      multiple of ``MODEL.IRSTD.SIZE_DIVISIBILITY``. A 1-channel net
      (``MODEL.IRSTD.IN_CHANNELS: 1``) gets the channel mean of a 3-channel image.
    - Training returns the losses of :meth:`losses`: ``loss_soft_iou`` (``MODEL.IRSTD.LOSS``
      "soft_iou", ``ir_d2.layers.soft_iou_loss``) or ``loss_bce`` ("bce"), over the batch, the
      padded pixels left out, combined over the net's outputs when it has several (deep
      supervision; ``MODEL.IRSTD.DS_REDUCTION``); ``loss_edge`` for a net that also returns an
      edge map (ISNet).
    - Inference returns, per image, ``{"sem_seg": 1xHxW foreground probability at the original
      size (detectron2's sem_seg_postprocess), "targets": [{"centroid": (x, y), "area": int,
      "score": float}, ...]}``, the 8-connected components of ``sem_seg > MODEL.IRSTD.THRESHOLD``
      (score: the highest probability inside). It works under plain ``DefaultPredictor``.
    - Tiled inference (``TEST.IRSTD.TILE_SIZE`` > 0): an image larger than the tile in either
      side runs tile by tile (:meth:`tiled_logits`, :func:`ir_d2.layers.tiled_probabilities`),
      so peak memory follows the tile, not the frame; the outputs are then made as above.
    """

    @configurable
    def __init__(
        self,
        *,
        net: nn.Module,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        size_divisibility: int = 32,
        soft_iou_smooth: float = 1.0,
        threshold: float = 0.5,
        neg_loss: str = "none",
        loss: str = "soft_iou",
        ds_reduction: str = "mean",
        edge_loss_weight: float = 10.0,
        edge_double_sigmoid: bool = True,
        tile_size: int = 0,
        tile_overlap: int = 32,
    ):
        """
        Args:
            net: maps (N, C, H, W) normalised images to (N, 1, H, W) logits, or to a list of
                them (deep supervision; the last one is the final output).
            pixel_mean, pixel_std: per-channel normalisation, one value per net input channel.
            size_divisibility: inputs are padded to a multiple of this.
            soft_iou_smooth: s of the Soft-IoU loss.
            threshold: probability above which a pixel belongs to a target in ``"targets"``.
            neg_loss: the SIRST-5K negative-sample loss over the rotated variants of a frame
                ("none", "sum" or "min"; see :meth:`losses`).
            loss: the segmentation loss of each output, one of :data:`IRSTD_LOSSES`.
            ds_reduction: how the losses of several outputs combine, one of
                :data:`DS_REDUCTIONS`.
            edge_loss_weight: weight of the edge map's cross-entropy, for nets that return one
                (ISNet; :func:`ir_d2.layers.isnet_edge_loss`).
            edge_double_sigmoid: the edge loss's Soft-IoU term on ``sigmoid(sigmoid(z))``, as
                ISNet's code (``MODEL.IRSTD.ISNET.EDGE_IOU_DOUBLE_SIGMOID``).
            tile_size: at inference, images larger than this in either side run tile by tile
                (``TEST.IRSTD.TILE_SIZE``); 0 runs whole images.
            tile_overlap: pixels shared by neighbouring tiles (``TEST.IRSTD.TILE_OVERLAP``).
        """
        super().__init__()
        if len(pixel_mean) != len(pixel_std):
            raise ValueError(
                f"MODEL.PIXEL_MEAN {list(pixel_mean)} and MODEL.PIXEL_STD {list(pixel_std)} "
                "must have the same length."
            )
        in_channels = getattr(net, "in_channels", len(pixel_mean))
        if len(pixel_mean) != in_channels:
            raise ValueError(
                f"MODEL.PIXEL_MEAN has {len(pixel_mean)} values but the net takes {in_channels} "
                "channels (MODEL.IRSTD.IN_CHANNELS)."
            )
        self.net = net
        self.in_channels = in_channels
        self.size_divisibility = size_divisibility
        self.soft_iou_smooth = soft_iou_smooth
        self.threshold = threshold
        if neg_loss not in NEG_LOSS_MODES:
            raise ValueError(
                f"MODEL.IRSTD.NEG_LOSS must be one of {NEG_LOSS_MODES}, got {neg_loss!r}"
            )
        self.neg_loss = neg_loss
        if loss not in IRSTD_LOSSES:
            raise ValueError(f"MODEL.IRSTD.LOSS must be one of {IRSTD_LOSSES}, got {loss!r}")
        if ds_reduction not in DS_REDUCTIONS:
            raise ValueError(
                f"MODEL.IRSTD.DS_REDUCTION must be one of {DS_REDUCTIONS}, got {ds_reduction!r}"
            )
        self.loss = loss
        self.ds_reduction = ds_reduction
        self.edge_loss_weight = edge_loss_weight
        self.edge_double_sigmoid = edge_double_sigmoid
        if tile_size:
            check_tiling(tile_size, tile_overlap, max(size_divisibility, 1))
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg):
        return {
            "net": build_irstd_net(cfg),
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "size_divisibility": cfg.MODEL.IRSTD.SIZE_DIVISIBILITY,
            "soft_iou_smooth": cfg.MODEL.IRSTD.SOFT_IOU_SMOOTH,
            "threshold": cfg.MODEL.IRSTD.THRESHOLD,
            "neg_loss": cfg.MODEL.IRSTD.NEG_LOSS,
            "loss": cfg.MODEL.IRSTD.LOSS,
            "ds_reduction": cfg.MODEL.IRSTD.DS_REDUCTION,
            "edge_loss_weight": cfg.MODEL.IRSTD.EDGE_LOSS_WEIGHT,
            "edge_double_sigmoid": cfg.MODEL.IRSTD.ISNET.EDGE_IOU_DOUBLE_SIGMOID,
            "tile_size": cfg.TEST.IRSTD.TILE_SIZE,
            "tile_overlap": cfg.TEST.IRSTD.TILE_OVERLAP,
        }

    @property
    def device(self):
        return self.pixel_mean.device

    # ------------------------------------------------------------------------------- inputs
    def preprocess_image(self, batched_inputs: List[Dict]) -> ImageList:
        """Normalise, match the net's channels and pad the images to one batch tensor
        (:func:`irstd_input`)."""
        images = [x["image"] for x in batched_inputs]
        return irstd_input(
            images, self.pixel_mean, self.pixel_std, self.size_divisibility, not self.training
        )

    def prepare_targets(self, batched_inputs: List[Dict], images: ImageList):
        """
        The padded {0, 1} targets (N, H, W) and the mask of real (non-padded) pixels, both float.
        """
        if "sem_seg" not in batched_inputs[0]:
            raise ValueError(
                "IRSTDSegmentor needs 'sem_seg' (HxW, {0, 1}) in each training input: use "
                "INPUT.DATASET_MAPPER_NAME 'IRSTDDatasetMapper'."
            )
        sem_seg = [x["sem_seg"].to(self.device) for x in batched_inputs]
        for t, size in zip(sem_seg, images.image_sizes):
            if tuple(t.shape[-2:]) != tuple(size):
                raise ValueError(f"'sem_seg' {tuple(t.shape)} does not match its image {size}.")
        targets = ImageList.from_tensors([t.float() for t in sem_seg], self.size_divisibility)
        targets = targets.tensor  # the padding is 0, so the range check below ignores it
        if targets.numel() and (targets.min() < 0 or targets.max() > 1):
            raise ValueError(
                "'sem_seg' must hold values in {0, 1} (binarise {0, 255} masks with "
                "INPUT.IR.MASK_THRESHOLD, as IRSTDDatasetMapper does)."
            )
        valid = ImageList.from_tensors(
            [torch.ones_like(t, dtype=torch.float32) for t in sem_seg], self.size_divisibility
        )
        return targets, valid.tensor

    @staticmethod
    def expand_groups(batched_inputs: List[Dict]) -> List[Dict]:
        """
        Flatten the SIRST-5K negative groups: an input whose ``"group"`` holds the rotated variants
        of its frame (``IRSTDDatasetMapper`` with ``INPUT.SIRST5K.NEGATIVE``) becomes those
        variants, each tagged ``"group_id"`` with the frame's index in the batch. Inputs without a
        group pass through, each its own group.
        """
        out = []
        for i, x in enumerate(batched_inputs):
            for variant in x.get("group", [x]):
                out.append({**variant, "group_id": i})
        return out

    # ------------------------------------------------------------------------------ forward
    def forward(self, batched_inputs: List[Dict]):
        if self.training:
            batched_inputs = self.expand_groups(batched_inputs)
        images = self.preprocess_image(batched_inputs)
        if not self.training and self.tile_size > 0:
            sizes = [s for size in images.image_sizes for s in size]
            if max(sizes, default=0) > self.tile_size:
                return self.postprocess(self.tiled_logits(images), images, batched_inputs)
        outputs, edge = split_net_outputs(self.net(images.tensor))
        if self.training:
            targets, valid = self.prepare_targets(batched_inputs, images)
            return self.losses(outputs, targets, valid, batched_inputs, edge)
        return self.postprocess(outputs[-1], images, batched_inputs)

    def losses(
        self,
        outputs: List[torch.Tensor],
        targets: torch.Tensor,
        valid: torch.Tensor,
        batched_inputs: List[Dict],
        edge: Optional[torch.Tensor] = None,
    ) -> Dict[str, torch.Tensor]:
        """
        The training losses, the one place where they are computed.

        Args:
            outputs: the net's (N, 1, H, W) logit maps (one, or several with deep supervision).
            targets: (N, H, W) padded {0, 1} targets.
            valid: (N, H, W), 1 on real pixels and 0 on the padding.
            batched_inputs: the inputs, for losses that need more than the masks (e.g. the
                SIRST-5K negative-sample loss, which groups the rotated variants of a frame).
            edge: (N, 1, H, W) edge logits of a net that predicts the targets' edges (ISNet).

        Returns:
            ``{"loss_soft_iou"}``: Soft-IoU over the batch (SGEM eq. 4, SIRST-5K eq. 8), or
            ``{"loss_bce"}`` (``loss`` "bce", UIU-Net), combined over the outputs by
            ``ds_reduction``; or, with ``neg_loss`` "sum" / "min", ``{"loss_neg"}``: the
            per-image losses combined over each frame's group of rotated variants (SIRST-5K eq. 9
            / Algorithm 2, :func:`ir_d2.layers.negative_sample_loss`). Plus ``{"loss_edge"}`` when
            the net returned an edge map (:func:`ir_d2.layers.isnet_edge_loss`).
        """
        grouped = self.neg_loss != "none"
        group_ids = [x.get("group_id", i) for i, x in enumerate(batched_inputs)]

        def loss_of(logits):
            if self.loss == "bce":
                loss = binary_cross_entropy_loss(logits, targets, valid=valid, per_image=grouped)
            else:
                loss = soft_iou_loss(
                    logits, targets, self.soft_iou_smooth, valid=valid, per_image=grouped
                )
            return negative_sample_loss(loss, group_ids, self.neg_loss) if grouped else loss

        per_output = [loss_of(o) for o in outputs]
        loss = sum(per_output)
        if self.ds_reduction == "mean":
            loss = loss / len(outputs)
        name = "loss_neg" if grouped else f"loss_{self.loss}"
        if len(outputs) > 1:
            # each head's own loss, logged beside the combined one (the final head's is the
            # output's): a mean over heads alone hides which head is stuck
            try:
                storage = get_event_storage()
            except AssertionError:  # called outside a trainer (no EventStorage): nothing to log
                storage = None
            if storage is not None:
                for k, value in enumerate(per_output[:-1]):
                    storage.put_scalar(f"irstd/{name}_head{k}", float(value.detach()))
                storage.put_scalar(f"irstd/{name}_final", float(per_output[-1].detach()))
        losses = {name: loss}
        if edge is not None:
            losses["loss_edge"] = isnet_edge_loss(
                edge,
                targets,
                valid,
                self.edge_loss_weight,
                double_sigmoid=self.edge_double_sigmoid,
            )
        return losses

    def tiled_logits(self, images: ImageList) -> torch.Tensor:
        """
        The final output's logits (N, 1, H', W') of the padded batch ``images``, each image run
        tile by tile by :func:`ir_d2.layers.tiled_probabilities` (``tile_size``,
        ``tile_overlap``) over its own padded extent (its size rounded up to a multiple of
        ``size_divisibility``, as when it is run alone), without gradients; the rest of the
        batch's padding is 0.
        """
        div = max(self.size_divisibility, 1)

        def final_logits(x):
            return split_net_outputs(self.net(x))[0][-1]

        logits = None
        for i, (h, w) in enumerate(images.image_sizes):
            h, w = -(-h // div) * div, -(-w // div) * div
            image = images.tensor[i : i + 1, :, :h, :w]
            out = tiled_probabilities(final_logits, image, self.tile_size, self.tile_overlap, div)
            if logits is None:
                n, _, height, width = images.tensor.shape
                logits = out.new_zeros((n, out.shape[1], height, width))
            logits[i, :, :h, :w] = out[0]
        return logits

    def postprocess(
        self, logits: torch.Tensor, images: ImageList, batched_inputs: List[Dict]
    ) -> List[Dict]:
        """Per image: the probability at the original size and its connected targets
        (:func:`irstd_results`)."""
        sizes = [
            (x.get("height", size[0]), x.get("width", size[1]))
            for x, size in zip(batched_inputs, images.image_sizes)
        ]
        return irstd_results(torch.sigmoid(logits), images.image_sizes, sizes, self.threshold)
