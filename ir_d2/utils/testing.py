"""Random inputs for tests and benchmarks (as ``detectron2.utils.testing``)."""

import numpy as np
import torch
from detectron2.structures import BitMasks, Boxes, Instances

__all__ = ["random_instance_batch"]


def random_instance_batch(
    n=2,
    height=96,
    width=128,
    *,
    boxes_per_image=2,
    min_side=8,
    max_side=48,
    num_classes=4,
    seed=0,
    device="cpu",
):
    """
    ``n`` training inputs for a GeneralizedRCNN: random uint8 images (3 x height x width) with
    ``boxes_per_image`` random axis-aligned boxes (sides in [min_side, max_side)), their box-shaped
    bit masks and random classes. Drop ``"instances"`` for inference inputs.
    """
    rng = np.random.default_rng(seed)
    batch = []
    for _ in range(n):
        image = torch.from_numpy(rng.integers(0, 255, (3, height, width), dtype=np.uint8))
        boxes, masks = [], []
        for _ in range(boxes_per_image):
            x0, y0 = rng.integers(0, width - max_side), rng.integers(0, height - max_side)
            x1, y1 = x0 + rng.integers(min_side, max_side), y0 + rng.integers(min_side, max_side)
            boxes.append([x0, y0, x1, y1])
            m = torch.zeros(height, width, dtype=torch.bool)
            m[y0:y1, x0:x1] = True
            masks.append(m)
        inst = Instances((height, width))
        inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        inst.gt_classes = torch.tensor(rng.integers(0, num_classes, len(boxes)))
        inst.gt_masks = BitMasks(torch.stack(masks))
        batch.append(
            {"image": image, "instances": inst.to(device), "height": height, "width": width}
        )
    return batch
