"""IRPredictor on gray, 16-bit and BGR frames; DefaultPredictor unchanged."""

import numpy as np
import pytest
import torch
from conftest import ir_cfg
from detectron2.engine import DefaultPredictor

from ir_d2.engine import IRPredictor

VANILLA = "IR-InstanceSegmentation/mask_rcnn_R_50_FPN_100e_ircoco.yaml"
# a small Faster R-CNN (R-18, narrow FPN and box head) so the test is quick; random weights, every
# detection kept
SMALL = [
    "MODEL.MASK_ON",
    False,
    "MODEL.FPN.OUT_CHANNELS",
    64,
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    128,
    "MODEL.RESNETS.DEPTH",
    18,
    "MODEL.RESNETS.RES2_OUT_CHANNELS",
    64,
    "INPUT.MIN_SIZE_TEST",
    96,
    "INPUT.MAX_SIZE_TEST",
    200,
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
    0.0,
    "MODEL.RPN.POST_NMS_TOPK_TEST",
    50,
    "TEST.DETECTIONS_PER_IMAGE",
    10,
]


@pytest.fixture(scope="module")
def predictors():
    torch.manual_seed(0)
    cfg = ir_cfg(VANILLA, SMALL)
    ir, plain = IRPredictor(cfg), DefaultPredictor(cfg)
    plain.model.load_state_dict(ir.model.state_dict())
    return ir, plain


def _same(a, b):
    a, b = a["instances"], b["instances"]
    assert len(a) == len(b) > 0
    torch.testing.assert_close(a.scores, b.scores)
    torch.testing.assert_close(a.pred_boxes.tensor, b.pred_boxes.tensor)
    assert a.image_size == b.image_size


def test_gray_and_16bit_frames_equal_the_bgr_frame(predictors):
    ir, plain = predictors
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (120, 150), dtype=np.uint8)
    bgr = np.repeat(gray[:, :, None], 3, axis=2)
    reference = plain(bgr)  # DefaultPredictor still works on 3-channel BGR after import ir_d2
    assert reference["instances"].image_size == (120, 150)
    _same(ir(gray), reference)
    _same(ir(gray[:, :, None]), reference)
    _same(ir(bgr), reference)
    colour = rng.integers(0, 256, (120, 150, 3), dtype=np.uint8)
    _same(ir(colour), plain(colour))

    raw = rng.integers(20000, 24000, (120, 150)).astype(np.uint16)
    minmax = np.rint((raw - raw.min()) * 255.0 / (raw.max() - raw.min())).astype(np.uint8)
    _same(ir(raw), plain(np.repeat(minmax[:, :, None], 3, axis=2)))
    for bad in (np.zeros((5, 5, 2), np.uint8), np.zeros(5, np.uint8)):
        with pytest.raises(ValueError, match="HxW"):
            ir(bad)


def test_semantic_mapper_name_uses_test_size():
    torch.manual_seed(0)
    cfg = ir_cfg(
        VANILLA,
        SMALL + ["INPUT.DATASET_MAPPER_NAME", "IRSTDDatasetMapper", "INPUT.IR.TEST_SIZE", 64],
    )
    predictor = IRPredictor(cfg)
    seen = []
    predictor.model.backbone.register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    out = predictor(np.zeros((100, 130), np.uint16))
    assert seen[0][-2:] == (64, 64)  # the square test-time resize of the semantic mapper
    assert out["instances"].image_size == (100, 130)  # outputs at the original size
