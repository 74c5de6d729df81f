"""ROI heads with the paper's box and mask losses: IRROIHeads, IRFastRCNNOutputLayers,
IRMaskRCNNConvUpsampleHead, and the Table 2-4 configs."""

import hashlib
import inspect
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import CONFIGS, SMALL_RCNN_OPTS, ir_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY, build_model
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.roi_heads import ROI_MASK_HEAD_REGISTRY, FastRCNNOutputLayers
from detectron2.modeling.roi_heads import mask_head as d2_mask_head
from detectron2.modeling.roi_heads.mask_head import MaskRCNNConvUpsampleHead, mask_rcnn_loss
from detectron2.structures import BitMasks, Boxes, Instances, PolygonMasks
from detectron2.utils.events import EventStorage

import ir_d2  # noqa: F401  (registration)
from ir_d2.layers import dice_loss, iou_box_loss, lovasz_softmax_loss
from ir_d2.modeling import IRFastRCNNOutputLayers, IRMaskRCNNConvUpsampleHead, IRROIHeads
from ir_d2.modeling.roi_heads import ir_mask_rcnn_loss
from ir_d2.modeling.roi_heads.mask_head import _mask_rcnn_targets
from ir_d2.utils.testing import random_instance_batch

BASE = "Base-IR-RCNN-FPN.yaml"
FINAL = (
    "IR-InstanceSegmentation/"
    "mask_rcnn-focal_siou-bce_dice_lovasz_R_50_BNSA-C3C4_FPN_100e_ircoco.yaml"
)
IR_TYPES = ["siou", "eiou", "focal_siou", "focal_ciou", "focal_eiou"]


def test_registry_names_and_config_keys():
    assert ROI_HEADS_REGISTRY.get("IRROIHeads") is IRROIHeads
    assert ROI_MASK_HEAD_REGISTRY.get("IRMaskRCNNConvUpsampleHead") is IRMaskRCNNConvUpsampleHead
    cfg = ir_cfg()
    assert cfg.MODEL.ROI_BOX_HEAD.FOCAL_IOU_GAMMA == 0.5
    head = cfg.MODEL.ROI_MASK_HEAD
    assert (head.BCE_WEIGHT, head.DICE_WEIGHT, head.LOVASZ_WEIGHT, head.DICE_SMOOTH) == (
        1.0,
        1.0,
        0.1,
        1.0,
    )


# ----------------------------------------------------------------------------- box predictor
def _predictor(loss_type, opts=(), cls=IRFastRCNNOutputLayers):
    cfg = ir_cfg(BASE, ["MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE", loss_type, *opts])
    return cls(cfg, ShapeSpec(channels=16)), cfg


def _proposals(seed=0, n=24, num_classes=4):
    """Proposals near GT boxes, a quarter of them background (class == num_classes)."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 80
    gt = torch.cat([xy, xy + 8 + torch.rand(n, 2, generator=g) * 40], dim=1)
    proposals = gt + torch.randn(n, 4, generator=g) * 3
    proposals = torch.cat([proposals[:, :2], torch.max(proposals[:, 2:], proposals[:, :2] + 1)], 1)
    classes = torch.randint(0, num_classes, (n,), generator=g)
    classes[torch.rand(n, generator=g) < 0.25] = num_classes
    return proposals, gt, classes


@pytest.mark.parametrize("loss_type", IR_TYPES)
@pytest.mark.parametrize("agnostic", [False, True])
def test_ir_box_loss_on_decoded_foreground_boxes(loss_type, agnostic):
    torch.manual_seed(0)
    pred, cfg = _predictor(loss_type, ["MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG", agnostic])
    proposals, gt, classes = _proposals()
    k = 1 if agnostic else 4
    deltas = (torch.randn(len(proposals), 4 * k) * 0.2).requires_grad_()
    loss = pred.box_reg_loss(proposals, gt, deltas, classes)
    # independent: loop over proposals, pick the GT class' deltas, decode, sum, divide by all R
    transform = Box2BoxTransform(weights=cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS)
    expected = deltas.sum() * 0
    for i, c in enumerate(classes.tolist()):
        if c == 4:
            continue
        d = deltas[i, :4] if agnostic else deltas[i, 4 * c : 4 * c + 4]
        box = transform.apply_deltas(d[None], proposals[i : i + 1])
        expected = expected + iou_box_loss(loss_type, box, gt[i : i + 1], gamma=0.5).sum()
    expected = expected / len(proposals)
    torch.testing.assert_close(loss, expected)
    (grad,) = torch.autograd.grad(loss, deltas)
    assert torch.isfinite(grad).all()
    assert grad[classes == 4].abs().sum() == 0 and grad.abs().sum() > 0


@pytest.mark.parametrize("loss_type", IR_TYPES)
def test_ir_box_loss_zero_when_proposals_are_the_gt(loss_type):
    pred, _ = _predictor(loss_type)
    _, gt, classes = _proposals(seed=1)
    loss = pred.box_reg_loss(gt, gt, torch.zeros(len(gt), 16), classes)
    assert abs(loss.item()) < 1e-5
    # background only: zero, and it still back-propagates
    deltas = torch.zeros(len(gt), 16, requires_grad=True)
    loss = pred.box_reg_loss(gt, gt, deltas, torch.full_like(classes, 4))
    assert loss.item() == 0.0
    loss.backward()


def test_gamma_from_config_is_used():
    proposals, gt, classes = _proposals(seed=2)
    deltas = torch.randn(len(gt), 16, generator=torch.Generator().manual_seed(0)) * 0.3
    values = []
    for gamma in (0.0, 0.5, 2.0):
        pred, _ = _predictor("focal_siou", ["MODEL.ROI_BOX_HEAD.FOCAL_IOU_GAMMA", gamma])
        assert pred.focal_iou_gamma == gamma
        values.append(pred.box_reg_loss(proposals, gt, deltas, classes).item())
    plain, _ = _predictor("siou")
    assert values[0] == pytest.approx(plain.box_reg_loss(proposals, gt, deltas, classes).item())
    assert values[0] > values[1] > values[2] > 0  # IoU < 1, so a larger gamma weighs less


@pytest.mark.parametrize("loss_type", ["smooth_l1", "giou", "diou", "ciou"])
def test_detectron2_types_unchanged(loss_type):
    torch.manual_seed(0)
    ours, _ = _predictor(loss_type)
    theirs, _ = _predictor(loss_type, cls=FastRCNNOutputLayers)
    theirs.load_state_dict(ours.state_dict())
    proposals, gt, classes = _proposals(seed=3)
    x = torch.randn(len(gt), 16)
    inst = Instances((128, 128))
    inst.proposal_boxes, inst.gt_boxes, inst.gt_classes = Boxes(proposals), Boxes(gt), classes
    with EventStorage():
        a, b = ours.losses(ours(x), [inst]), theirs.losses(theirs(x), [inst])
    assert set(a) == {"loss_cls", "loss_box_reg"}
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_bad_box_config_names_the_key():
    with pytest.raises(ValueError, match="MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE"):
        _predictor("wiou")
    with pytest.raises(ValueError, match="MODEL.ROI_BOX_HEAD.FOCAL_IOU_GAMMA"):
        _predictor("focal_siou", ["MODEL.ROI_BOX_HEAD.FOCAL_IOU_GAMMA", -0.5])


# ----------------------------------------------------------------------------- mask head
def _mask_instances(seed=0, sizes=(5, 0, 7), h=40, w=48, num_classes=4, polygons=False):
    """Per image: proposals and full-image GT masks (random rectangles and blobs)."""
    rng = np.random.default_rng(seed)
    out = []
    for n in sizes:
        inst = Instances((h, w))
        x0, y0 = rng.integers(0, w // 2, n), rng.integers(0, h // 2, n)
        x1, y1 = x0 + rng.integers(4, w // 2, n), y0 + rng.integers(4, h // 2, n)
        boxes = np.stack([x0, y0, x1, y1], 1).astype(np.float32)
        inst.proposal_boxes = Boxes(torch.from_numpy(boxes + rng.normal(0, 1.5, boxes.shape)))
        inst.gt_classes = torch.from_numpy(rng.integers(0, num_classes, n))
        if polygons:
            polys = [[np.array([a, b, c, b, c, d, a, d], dtype=np.float64)] for a, b, c, d in boxes]
            inst.gt_masks = PolygonMasks(polys)
        else:
            masks = torch.from_numpy(rng.random((n, h, w)) > 0.4)
            for i, (a, b, c, d) in enumerate(boxes.astype(int)):
                masks[i, b:d, a:c] |= True
            inst.gt_masks = BitMasks(masks)
        out.append(inst)
    return out


def _mask_head(opts=()):
    cfg = ir_cfg(
        BASE,
        [
            "MODEL.ROI_MASK_HEAD.NAME",
            "IRMaskRCNNConvUpsampleHead",
            "MODEL.ROI_MASK_HEAD.CONV_DIM",
            8,
            "MODEL.ROI_MASK_HEAD.NUM_CONV",
            1,
            *opts,
        ],
    )
    return IRMaskRCNNConvUpsampleHead(cfg, ShapeSpec(channels=8, height=14, width=14))


@pytest.mark.parametrize("num_classes,polygons", [(4, False), (1, False), (4, True)])
def test_bce_only_equals_detectron2_mask_rcnn_loss(num_classes, polygons):
    g = torch.Generator().manual_seed(1)
    instances = _mask_instances(seed=1, polygons=polygons)
    logits = torch.randn(12, num_classes, 28, 28, generator=g, requires_grad=True)
    with EventStorage() as storage:
        ours = ir_mask_rcnn_loss(logits, instances, bce_weight=1, dice_weight=0, lovasz_weight=0)
        ours_acc = storage.latest()["mask_rcnn/accuracy"][0]
        theirs = mask_rcnn_loss(logits, instances)
        theirs_acc = storage.latest()["mask_rcnn/accuracy"][0]
    # the fused eq. 18 pass computes BCE in another float32 form than torch's
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=0)
    assert ours_acc == theirs_acc
    (ga,) = torch.autograd.grad(ours, logits)
    (gb,) = torch.autograd.grad(theirs, logits)
    torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-10)


#: sha256 of ``inspect.getsource(detectron2...mask_head.mask_rcnn_loss)`` at the pinned commit
#: (scripts/bootstrap.py DETECTRON2_COMMIT), the function ``_mask_rcnn_targets`` stands in for
MASK_RCNN_LOSS_SHA256 = "37a732140756ef0c3f9aa4804140b9f0404bad98f768dc21192b62409b19e79a"


@pytest.mark.parametrize("num_classes,polygons", [(4, False), (1, False), (4, True)])
def test_mask_targets_are_detectron2s(monkeypatch, num_classes, polygons):
    """``_mask_rcnn_targets`` runs detectron2's ``mask_rcnn_loss`` with its BCE captured: the
    logits and targets that the pinned function hands to its BCE, its scalars and its images are
    ours, bit for bit (class-specific and agnostic logits, bitmap and polygon masks, an image
    without ROIs, no ROI at all); and its source is the one ours was written against."""
    source = inspect.getsource(d2_mask_head.mask_rcnn_loss)
    line = "mask_loss = F.binary_cross_entropy_with_logits(pred_mask_logits, gt_masks, "
    assert line in source and source.count("F.") == 1  # the one call _mask_rcnn_targets swaps
    assert hashlib.sha256(source.encode()).hexdigest() == MASK_RCNN_LOSS_SHA256, (
        "detectron2's mask_rcnn_loss changed: check that ir_d2.modeling.roi_heads.mask_head."
        "_mask_rcnn_targets still captures what it hands its BCE, then update MASK_RCNN_LOSS_SHA256"
    )
    handed = []

    def bce(logits, targets, reduction):
        handed.append((logits, targets))
        return F.binary_cross_entropy_with_logits(logits, targets, reduction=reduction)

    monkeypatch.setattr(d2_mask_head, "F", SimpleNamespace(binary_cross_entropy_with_logits=bce))
    g = torch.Generator().manual_seed(4)
    instances = _mask_instances(seed=4, sizes=(5, 0, 7), polygons=polygons)
    logits = torch.randn(12, num_classes, 28, 28, generator=g)
    outs, logged = [], []
    for fn in (_mask_rcnn_targets, d2_mask_head.mask_rcnn_loss):
        with EventStorage(start_iter=6) as storage:  # 6 % vis_period 3 == 0: images too
            outs.append(fn(logits, instances, vis_period=3))
            logged.append((storage.latest(), storage._vis_data))
    ours = outs[0]
    assert len(handed) == 1
    for a, b in zip(ours, handed[0]):
        assert a.dtype == b.dtype and torch.equal(a, b)
    assert ours[0].shape == (12, 28, 28)
    (ours_scalars, ours_images), (their_scalars, their_images) = logged
    assert ours_scalars == their_scalars and len(ours_scalars) == 3
    assert len(ours_images) == len(their_images) == 12
    for (name_a, img_a, it_a), (name_b, img_b, it_b) in zip(ours_images, their_images):
        assert (name_a, it_a) == (name_b, it_b) and torch.equal(img_a, img_b)
    # no ROI: detectron2 returns before its BCE, ours returns None
    with EventStorage():
        assert _mask_rcnn_targets(logits[:0], _mask_instances(sizes=(0, 0)), 0) is None
        assert d2_mask_head.mask_rcnn_loss(logits[:0], _mask_instances(sizes=(0, 0))) == 0
    assert len(handed) == 1


def test_compound_mask_loss_and_event_storage():
    g = torch.Generator().manual_seed(2)
    instances = _mask_instances(seed=2)
    logits = torch.randn(12, 4, 28, 28, generator=g, requires_grad=True)
    with EventStorage() as storage:
        loss = ir_mask_rcnn_loss(
            logits, instances, bce_weight=1.0, dice_weight=1.0, lovasz_weight=0.1, dice_smooth=1.0
        )
        logged = {k: v[0] for k, v in storage.latest().items()}
    # independent GT: crop each image's masks by its proposals, class by class
    selected, gts = [], []
    start = 0
    for inst in instances:
        for j in range(len(inst)):
            selected.append(logits[start + j, int(inst.gt_classes[j])])
        if len(inst):
            gts.append(inst.gt_masks.crop_and_resize(inst.proposal_boxes.tensor, 28))
        start += len(inst)
    sel, gt = torch.stack(selected), torch.cat(gts).float()
    bce = F.binary_cross_entropy_with_logits(sel, gt)
    dice, lov = dice_loss(sel, gt), lovasz_softmax_loss(sel, gt)  # the paper's default
    torch.testing.assert_close(loss, bce + dice + 0.1 * lov)
    for name, value in (("bce", bce), ("dice", dice), ("lovasz", lov)):
        assert logged[f"mask_rcnn/loss_mask_{name}"] == pytest.approx(value.item(), rel=1e-6)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_empty_roi_batch_gives_zero_that_back_propagates():
    head = _mask_head().train()
    x = torch.randn(0, 8, 14, 14)
    with EventStorage():
        losses = head(x, _mask_instances(sizes=(0, 0)))
    assert losses["loss_mask"].item() == 0.0
    losses["loss_mask"].backward()
    grads = [p.grad for p in head.parameters()]
    assert all(gr is not None and gr.abs().sum() == 0 for gr in grads)


def test_mask_head_matches_detectron2_layout_and_inference():
    torch.manual_seed(0)
    ours = _mask_head(["MODEL.ROI_MASK_HEAD.LOVASZ_WEIGHT", 0.3])
    assert ours.mask_loss == {
        "bce_weight": 1.0,
        "dice_weight": 1.0,
        "lovasz_weight": 0.3,
        "dice_smooth": 1.0,
        "lovasz": "softmax",
        "lovasz_classes": "present",
    }
    hinge = _mask_head(["MODEL.ROI_MASK_HEAD.LOVASZ", "hinge"])
    assert hinge.mask_loss["lovasz"] == "hinge"
    with pytest.raises(ValueError, match="MODEL.ROI_MASK_HEAD.LOVASZ_CLASSES"):
        _mask_head(["MODEL.ROI_MASK_HEAD.LOVASZ_CLASSES", "some"])
    cfg = ir_cfg(BASE, ["MODEL.ROI_MASK_HEAD.CONV_DIM", 8, "MODEL.ROI_MASK_HEAD.NUM_CONV", 1])
    theirs = MaskRCNNConvUpsampleHead(cfg, ShapeSpec(channels=8, height=14, width=14))
    assert list(ours.state_dict()) == list(theirs.state_dict())  # checkpoints load by name
    assert list(dict(ours.named_children())) == list(dict(theirs.named_children()))
    theirs.load_state_dict(ours.state_dict())
    ours.eval(), theirs.eval()
    x = torch.randn(3, 8, 14, 14)
    a, b = Instances((40, 40)), Instances((40, 40))
    a.pred_classes = b.pred_classes = torch.tensor([0, 3, 1])
    with torch.no_grad():
        ours(x, [a]), theirs(x, [b])
    assert a.pred_masks.shape == (3, 1, 28, 28)
    assert torch.equal(a.pred_masks, b.pred_masks)


def test_bad_mask_weight_names_the_key():
    with pytest.raises(ValueError, match="MODEL.ROI_MASK_HEAD.DICE_WEIGHT"):
        _mask_head(["MODEL.ROI_MASK_HEAD.DICE_WEIGHT", -1.0])


# ----------------------------------------------------------------------------- configs
TABLE_CONFIGS = sorted(
    p.name
    for p in (CONFIGS / "IR-InstanceSegmentation").glob("mask_rcnn-*_R_50_FPN_100e_ircoco.yaml")
)


def test_table_configs_exist():
    rows = {re.match(r"mask_rcnn-(.+)_R_50_FPN", n).group(1) for n in TABLE_CONFIGS}
    assert rows == {
        "smooth_l1",
        "ciou",
        "eiou",
        "siou",
        "focal_ciou",
        "focal_eiou",
        "focal_siou",
        "bce",
        "bce_dice",
        "bce_dice_lovasz",
    }
    assert (CONFIGS / FINAL).is_file()


@pytest.mark.parametrize("name", TABLE_CONFIGS)
def test_table_config_values(name):
    """Each Table 2 / 3 config changes exactly what its name says."""
    cfg = ir_cfg(f"IR-InstanceSegmentation/{name}")
    row = re.match(r"mask_rcnn-(.+)_R_50_FPN", name).group(1)
    weights = (
        cfg.MODEL.ROI_MASK_HEAD.BCE_WEIGHT,
        cfg.MODEL.ROI_MASK_HEAD.DICE_WEIGHT,
        cfg.MODEL.ROI_MASK_HEAD.LOVASZ_WEIGHT,
    )
    assert cfg.MODEL.BACKBONE.NAME == "build_resnet_fpn_backbone"
    if row.startswith("bce"):
        assert cfg.MODEL.ROI_MASK_HEAD.NAME == "IRMaskRCNNConvUpsampleHead"
        assert cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE == "smooth_l1"
        expected = {"bce": (1, 0, 0), "bce_dice": (1, 1, 0), "bce_dice_lovasz": (1, 1, 0.1)}
        assert weights == expected[row]
    else:
        assert cfg.MODEL.ROI_HEADS.NAME == "IRROIHeads"
        assert cfg.MODEL.ROI_MASK_HEAD.NAME == "MaskRCNNConvUpsampleHead"
        assert cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE == row


# ----------------------------------------------------------------------------- full model
def _fake_batch(n=2, seed=0):
    return random_instance_batch(n, 96, 128, seed=seed)


def test_final_model_trains_and_predicts():
    torch.manual_seed(0)
    cfg = ir_cfg(FINAL, SMALL_RCNN_OPTS)
    model = build_model(cfg)
    assert isinstance(model.roi_heads, IRROIHeads)
    assert isinstance(model.roi_heads.box_predictor, IRFastRCNNOutputLayers)
    assert model.roi_heads.box_predictor.box_reg_loss_type == "focal_siou"
    assert isinstance(model.roi_heads.mask_head, IRMaskRCNNConvUpsampleHead)
    model.train()
    with EventStorage() as storage:
        losses = model(_fake_batch())
        logged = set(storage.latest())
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_mask", "loss_rpn_cls", "loss_rpn_loc"}
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_box_reg"].item() > 0 and losses["loss_mask"].item() > 0
    assert {f"mask_rcnn/loss_mask_{k}" for k in ("bce", "dice", "lovasz")} <= logged
    sum(losses.values()).backward()
    for name in ("box_predictor.bbox_pred.weight", "mask_head.predictor.weight"):
        grad = dict(model.roi_heads.named_parameters())[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0

    model.eval()
    inputs = [{k: v for k, v in d.items() if k != "instances"} for d in _fake_batch(seed=1)]
    with torch.no_grad():
        outputs = model(inputs)
    for out in outputs:
        assert {"pred_boxes", "scores", "pred_classes", "pred_masks"} <= set(
            out["instances"].get_fields()
        )
