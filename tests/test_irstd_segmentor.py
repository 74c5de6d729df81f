"""IRSTDSegmentor and IRSTDEvaluator: training steps, inference, evaluation."""

import json
import uuid

import numpy as np
import pytest
import torch
from conftest import ir_cfg, shared_data_dir
from detectron2.data import DatasetCatalog, build_detection_test_loader
from detectron2.engine import DefaultPredictor
from detectron2.evaluation import inference_on_dataset
from detectron2.modeling import META_ARCH_REGISTRY, build_model
from detectron2.utils.events import EventStorage
from PIL import Image
from torch import nn

import ir_d2  # noqa: F401  (registration)
from ir_d2.evaluation import IRSTDEvaluator, IRSTDMetrics, build_irstd_evaluator
from ir_d2.layers import soft_iou_loss
from ir_d2.modeling import IRSTDSegmentor

CONFIGS = {
    "UNet": "IRSTD/irstd_unet_W32_1500e_sirst.yaml",
    "SGEMUNet": "IRSTD/irstd_sgem_unet_W40_1500e_sirst.yaml",
    "AFFUNet": "IRSTD/irstd_aff_unet_W32_bs256-1500e_sirst.yaml",
}
SMALL = ["MODEL.IRSTD.BASE_CHANNELS", 4, "MODEL.IRSTD.CHANNELS", []]


def _model(net, opts=()):
    torch.manual_seed(0)
    return build_model(ir_cfg(CONFIGS[net], SMALL + list(opts)))


def _batch(sizes, seed=0):
    rng = np.random.default_rng(seed)
    batch = []
    for h, w in sizes:
        sem = np.zeros((h, w), dtype=np.int64)
        y, x = rng.integers(0, h - 3), rng.integers(0, w - 3)
        sem[y : y + 3, x : x + 3] = 1
        image = rng.integers(0, 80, (3, h, w), dtype=np.uint8)
        image[:, sem.astype(bool)] = 250  # a bright small target
        batch.append({"image": torch.from_numpy(image), "sem_seg": torch.from_numpy(sem)})
    return batch


def test_registered():
    assert META_ARCH_REGISTRY.get("IRSTDSegmentor") is IRSTDSegmentor


@pytest.mark.parametrize("net", list(CONFIGS))
def test_training_step_of_each_net(net):
    model = _model(net)
    model.train()
    batch = _batch([(40, 48), (32, 56)])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(4):
        with EventStorage():
            losses = model(batch)
        assert set(losses) == {"loss_soft_iou"}
        loss = losses["loss_soft_iou"]
        assert 0.0 < loss.item() < 1.0
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        assert all(p.grad is not None for p in model.net.encoder[0].parameters())
        optimizer.step()
    with EventStorage():
        assert model(batch)["loss_soft_iou"].item() < first


def test_loss_ignores_padding_and_averages_deep_supervision():
    model = _model("UNet", ["MODEL.IRSTD.DEEP_SUPERVISION", True])
    model.train()
    batch = _batch([(20, 30), (27, 45)], seed=3)  # padded to 32x64
    with EventStorage() as storage:
        got = model(batch)["loss_soft_iou"]
    images = model.preprocess_image(batch)
    assert images.tensor.shape[-2:] == (32, 64)
    # each head's own loss is logged beside the mean (the final head's last)
    logged = {k: v.latest() for k, v in storage.histories().items()}
    heads = [logged[f"irstd/loss_soft_iou_head{k}"] for k in range(3)]
    assert sum(heads) + logged["irstd/loss_soft_iou_final"] == pytest.approx(4 * float(got))
    outputs = model.net(images.tensor)
    expected = []
    for out in outputs:  # crop each image's own region, then one loss over the batch
        logits = torch.cat(
            [out[i, 0, :h, :w].reshape(-1) for i, (h, w) in enumerate([(20, 30), (27, 45)])]
        )
        targets = torch.cat([b["sem_seg"].reshape(-1).float() for b in batch])
        expected.append(soft_iou_loss(logits, targets))
    torch.testing.assert_close(got, sum(expected) / 4)


def test_the_loss_and_its_reduction_over_outputs_are_config_keys():
    """UIU-Net's recipe: BCE on every output, summed over the outputs (MODEL.IRSTD.LOSS "bce",
    DS_REDUCTION "sum"), against the BCE of each output computed on the real pixels only."""
    from ir_d2.layers import binary_cross_entropy_loss

    opts = ["MODEL.IRSTD.DEEP_SUPERVISION", True, "MODEL.IRSTD.LOSS", "bce"]
    model = _model("UNet", opts + ["MODEL.IRSTD.DS_REDUCTION", "sum"]).train()
    batch = _batch([(20, 30), (27, 45)], seed=3)
    with EventStorage():
        got = model(batch)
    assert set(got) == {"loss_bce"}
    outputs = model.net(model.preprocess_image(batch).tensor)
    targets = torch.cat([b["sem_seg"].reshape(-1).float() for b in batch])
    expected = 0.0
    for out in outputs:
        logits = torch.cat(
            [out[i, 0, :h, :w].reshape(-1) for i, (h, w) in enumerate([(20, 30), (27, 45)])]
        )
        expected = expected + binary_cross_entropy_loss(logits, targets)
    torch.testing.assert_close(got["loss_bce"], expected)
    for key, value in (("LOSS", "dice"), ("DS_REDUCTION", "max")):
        with pytest.raises(ValueError, match=f"MODEL.IRSTD.{key}"):
            _model("UNet", [f"MODEL.IRSTD.{key}", value])


def test_a_net_with_an_edge_map_adds_the_edge_loss():
    """ISNet returns ``{"logits", "edge"}`` in training: the segmentor adds ``loss_edge``, the
    edge loss of that map against the mask's edges with the padding left out, and returns the
    mask probability alone at inference."""
    from ir_d2.layers import isnet_edge_loss

    opts = ["MODEL.IRSTD.NET", "ISNet", "MODEL.IRSTD.CHANNELS", [4, 8, 16, 32]]
    opts += ["MODEL.IRSTD.BLOCKS", [1, 1, 1], "MODEL.IRSTD.ISNET.EDGE_CHANNELS", 8]
    opts += ["MODEL.IRSTD.EDGE_LOSS_WEIGHT", 3.0]
    torch.manual_seed(0)
    model = build_model(ir_cfg("IRSTD/irstd_isnet_W8_bs12-3000e_nudt_sirst.yaml", opts)).train()
    batch = _batch([(20, 30), (27, 45)], seed=3)
    with EventStorage():
        got = model(batch)
    assert set(got) == {"loss_soft_iou", "loss_edge"}
    images = model.preprocess_image(batch)
    targets, valid = model.prepare_targets(batch, images)
    out = model.net(images.tensor)
    expected = isnet_edge_loss(out["edge"], targets, valid, 3.0, double_sigmoid=True)
    torch.testing.assert_close(got["loss_edge"], expected)
    sum(got.values()).backward()
    assert model.net.output_heads()[0].weight.grad is not None
    model.eval()
    with torch.no_grad():
        result, _ = model(batch)
    assert result["sem_seg"].shape == (1, 20, 30)


def test_training_needs_binary_sem_seg():
    model = _model("UNet")
    model.train()
    batch = _batch([(20, 20)])
    batch[0]["sem_seg"] = batch[0]["sem_seg"] * 255
    with pytest.raises(ValueError, match="MASK_THRESHOLD"):
        model(batch)
    with pytest.raises(ValueError, match="IRSTDDatasetMapper"):
        model([{"image": batch[0]["image"]}])


class _FixedLogits(nn.Module):
    """A net whose output does not depend on the image: known logits at the padded size."""

    in_channels = 3

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        out = torch.full((x.shape[0], 1, *x.shape[-2:]), -10.0)
        h, w = self.logits.shape
        out[:, 0, :h, :w] = self.logits
        return out


def test_inference_outputs_probability_and_targets():
    logits = torch.full((24, 40), -10.0)
    logits[5:8, 20:25] = 2.0  # rows 5-7, cols 20-24: centroid x=22, y=6, area 15
    logits[6, 22] = 4.0
    logits[15, 3] = 1.0  # a 1-pixel target
    model = IRSTDSegmentor(
        net=_FixedLogits(logits),
        pixel_mean=[0.0, 0.0, 0.0],
        pixel_std=[1.0, 1.0, 1.0],
        size_divisibility=32,
        threshold=0.5,
    ).eval()
    image = torch.zeros(3, 24, 40, dtype=torch.uint8)
    with torch.no_grad():
        (out,) = model([{"image": image}])
    assert out["sem_seg"].shape == (1, 24, 40)
    torch.testing.assert_close(out["sem_seg"][0], torch.sigmoid(logits))
    assert out["targets"] == [
        {
            "centroid": (22.0, 6.0),
            "area": 15,
            "score": pytest.approx(torch.sigmoid(torch.tensor(4.0)).item()),
        },
        {
            "centroid": (3.0, 15.0),
            "area": 1,
            "score": pytest.approx(torch.sigmoid(torch.tensor(1.0)).item()),
        },
    ]
    # the original size comes from "height"/"width" (sem_seg_postprocess)
    with torch.no_grad():
        (out,) = model([{"image": image, "height": 48, "width": 80}])
    assert out["sem_seg"].shape == (1, 48, 80)
    assert [t["area"] for t in out["targets"]][0] > 15


@pytest.mark.parametrize("net", list(CONFIGS))
def test_default_predictor(net):
    cfg = ir_cfg(CONFIGS[net], SMALL)
    predictor = DefaultPredictor(cfg)
    image = np.random.default_rng(0).integers(0, 255, (45, 61, 3), dtype=np.uint8)
    out = predictor(image)
    prob = out["sem_seg"]
    assert prob.shape == (1, 45, 61)
    assert prob.min() >= 0 and prob.max() <= 1
    assert isinstance(out["targets"], list)
    above = (prob[0] > cfg.MODEL.IRSTD.THRESHOLD).sum().item()
    assert sum(t["area"] for t in out["targets"]) == above


def test_ir_predictor_on_a_16_bit_gray_frame():
    cfg = ir_cfg(CONFIGS["SGEMUNet"], SMALL)
    frame = np.random.default_rng(0).integers(0, 2**14, (45, 61), dtype=np.uint16)
    out = ir_d2.engine.IRPredictor(cfg)(frame)
    assert out["sem_seg"].shape == (1, 45, 61)
    above = (out["sem_seg"][0] > cfg.MODEL.IRSTD.THRESHOLD).sum().item()
    assert sum(t["area"] for t in out["targets"]) == above


def test_one_channel_net_takes_the_gray_mean():
    model = _model(
        "UNet",
        ["MODEL.IRSTD.IN_CHANNELS", 1, "MODEL.PIXEL_MEAN", [100.0], "MODEL.PIXEL_STD", [50.0]],
    )
    image = torch.randint(0, 255, (3, 20, 24), dtype=torch.uint8)
    images = model.preprocess_image([{"image": image}])
    expected = (image.float().mean(0) - 100.0) / 50.0
    torch.testing.assert_close(images.tensor[0, 0, :20, :24], expected)
    with pytest.raises(ValueError, match="MODEL.PIXEL_MEAN"):
        _model("UNet", ["MODEL.IRSTD.IN_CHANNELS", 1])


# --------------------------------------------------------------------- evaluation on real SIRST
def _sirst_dicts(n=4):
    root = shared_data_dir("sirst")
    names = (root / "50_50" / "test.txt").read_text().split()[:n]
    dicts = []
    for i, name in enumerate(names):
        w, h = Image.open(root / "images" / f"{name}.png").size
        dicts.append(
            {
                "file_name": str(root / "images" / f"{name}.png"),
                "sem_seg_file_name": str(root / "masks" / f"{name}_pixels0.png"),
                "height": h,
                "width": w,
                "image_id": i,
            }
        )
    return dicts


def _mapper(d):
    """A tiny test mapper: gray replicated to 3-channel BGR uint8; no sem_seg_file_name kept."""
    gray = np.asarray(Image.open(d["file_name"]).convert("L"))
    image = torch.from_numpy(np.ascontiguousarray(np.repeat(gray[None], 3, axis=0)))
    return {k: d[k] for k in ("file_name", "height", "width", "image_id")} | {"image": image}


@pytest.fixture
def sirst_dataset():
    dicts = _sirst_dicts()
    name = f"irstd_test_sirst_{uuid.uuid4().hex[:8]}"
    DatasetCatalog.register(name, lambda: dicts)
    yield name, dicts
    DatasetCatalog.remove(name)


class _Oracle(nn.Module):
    """Returns each frame's own ground-truth mask (optionally shifted) as the probability."""

    def __init__(self, dicts, shift=0):
        super().__init__()
        self.masks = {
            d["file_name"]: np.asarray(Image.open(d["sem_seg_file_name"]).convert("L")) > 127
            for d in dicts
        }
        self.shift = shift

    def forward(self, inputs):
        out = []
        for x in inputs:
            m = np.roll(self.masks[x["file_name"]], self.shift, axis=1)
            out.append({"sem_seg": torch.from_numpy(m.astype(np.float32))[None] * 0.9})
        return out


def test_evaluator_on_real_frames_with_known_answers(sirst_dataset, tmp_path):
    name, dicts = sirst_dataset
    loader = build_detection_test_loader(dataset=dicts, mapper=_mapper, num_workers=0)
    evaluator = IRSTDEvaluator(name, str(tmp_path), roc_thresholds=(0.5, 0.95))
    results = inference_on_dataset(_Oracle(dicts), loader, evaluator)["irstd"]
    assert results == {
        "IoU": 100.0,
        "nIoU": 100.0,
        "Pd": 100.0,
        "Fa": 0.0,
        "F1": 100.0,
        "Pd@0.5": 100.0,
        "Fa@0.5": 0.0,
        "Pd@0.95": 0.0,
        "Fa@0.95": 0.0,
    }
    saved = json.loads((tmp_path / "irstd_evaluation.json").read_text())
    assert saved["num_images"] == len(dicts) and saved["IoU"] == 100.0
    # a 2-pixel shift: the evaluator equals IRSTDMetrics fed directly
    results = inference_on_dataset(_Oracle(dicts, shift=2), loader, evaluator)["irstd"]
    direct = IRSTDMetrics(roc_thresholds=(0.5, 0.95))
    oracle = _Oracle(dicts, shift=2)
    for d in dicts:
        prob = oracle([d])[0]["sem_seg"].numpy()
        direct.update(prob, oracle.masks[d["file_name"]])
    assert results == pytest.approx(direct.compute())
    assert results["Pd"] == 100.0 and 0 < results["IoU"] < 100


@pytest.mark.parametrize("net", list(CONFIGS))
def test_each_net_evaluates_on_real_frames(net, sirst_dataset):
    name, dicts = sirst_dataset
    cfg = ir_cfg(CONFIGS[net], SMALL + ["TEST.IRSTD.ROC_THRESHOLDS", [0.3, 0.7]])
    model = build_model(cfg)
    loader = build_detection_test_loader(dataset=dicts, mapper=_mapper, num_workers=0)
    evaluator = build_irstd_evaluator(cfg, name, None)
    results = inference_on_dataset(model, loader, evaluator)["irstd"]
    assert set(results) == {"IoU", "nIoU", "Pd", "Fa", "F1", "Pd@0.3", "Fa@0.3", "Pd@0.7", "Fa@0.7"}
    assert all(np.isfinite(v) for v in results.values())
    assert results["Pd@0.3"] >= results["Pd@0.7"] and results["Fa@0.3"] >= results["Fa@0.7"]
    # the same numbers from the model's outputs fed straight to IRSTDMetrics
    model.eval()
    direct = IRSTDMetrics(threshold=0.5, roc_thresholds=(0.3, 0.7))
    with torch.no_grad():
        for d in dicts:
            out = model([_mapper(d)])[0]
            gt = np.asarray(Image.open(d["sem_seg_file_name"]).convert("L")) > 127
            assert out["sem_seg"].shape == (1, d["height"], d["width"])
            direct.update(out["sem_seg"].numpy(), gt)
    assert results == pytest.approx(direct.compute())


def test_evaluator_errors_name_the_file(sirst_dataset):
    name, dicts = sirst_dataset
    evaluator = IRSTDEvaluator(name)
    evaluator.reset()
    with pytest.raises(ValueError, match=dicts[0]["file_name"]):
        evaluator.process([dicts[0]], [{"sem_seg": torch.zeros(1, 5, 5)}])
    with pytest.raises(KeyError, match="nowhere.png"):
        evaluator.process([{"file_name": "nowhere.png"}], [{"sem_seg": torch.zeros(1, 5, 5)}])


def test_evaluator_prefers_the_inputs_sem_seg_and_reads_the_catalog_once(tmp_path):
    rng = np.random.default_rng(0)
    masks = [rng.random((12, 16)) > 0.9 for _ in range(3)]
    for i, m in enumerate(masks):
        Image.fromarray(m.astype(np.uint8) * 255).save(tmp_path / f"m{i}.png")
    dicts = [
        {"file_name": f"f{i}.png", "sem_seg_file_name": str(tmp_path / f"m{i}.png")}
        for i in range(3)
    ]
    dicts.append({"file_name": "f3.png", "sem_seg_file_name": str(tmp_path / "absent.png")})
    loads = []
    name = f"irstd_test_catalog_{uuid.uuid4().hex[:8]}"
    DatasetCatalog.register(name, lambda: loads.append(1) or dicts)
    try:
        evaluator = IRSTDEvaluator(name, distributed=False)
        evaluator.reset()
        probs = [rng.random((12, 16)) for _ in range(4)]
        direct = IRSTDMetrics()
        # the input's own {0, 1} "sem_seg" at the prediction's size: neither the catalog nor
        # the (absent) mask file is read
        sem_seg = torch.from_numpy(masks[0].astype(np.int64))
        evaluator.process([{"file_name": "f3.png", "sem_seg": sem_seg}], [{"sem_seg": probs[3]}])
        direct.update(probs[3], masks[0])
        assert loads == []
        # no "sem_seg", or one at another size: the mask file found through the catalog, which
        # is loaded once for all inputs
        inputs = [
            {"file_name": "f0.png"},
            {"file_name": "f1.png", "sem_seg": torch.zeros(6, 8, dtype=torch.int64)},
            {"file_name": "f2.png"},
        ]
        outputs = [{"sem_seg": torch.from_numpy(p)[None]} for p in probs[:3]]
        evaluator.process(inputs, outputs)
        for p, m in zip(probs[:3], masks):
            direct.update(p, m)
        assert loads == [1]
        assert evaluator.evaluate()["irstd"] == pytest.approx(direct.compute(), nan_ok=True)
    finally:
        DatasetCatalog.remove(name)


def _instances(size, scores, masks=None, boxes=None):
    from detectron2.structures import Boxes, Instances

    inst = Instances(size)
    inst.scores = torch.tensor(scores, dtype=torch.float32)
    if masks is not None:
        inst.pred_masks = torch.from_numpy(np.stack(masks))
    if boxes is not None:
        inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    return inst


def test_instances_score_map_is_the_highest_covering_score_or_the_box_centres():
    from ir_d2.evaluation import instances_score_map

    a, b = np.zeros((6, 8), bool), np.zeros((6, 8), bool)
    a[1:4, 1:4], b[2:5, 2:6] = True, True
    expected = np.zeros((6, 8), np.float32)
    expected[a], expected[b] = 0.3, 0.8  # b's score wins where they overlap
    got = instances_score_map(_instances((6, 8), [0.3, 0.8], masks=[a, b]))
    np.testing.assert_array_equal(got, expected)
    boxes = [[0.0, 0.0, 4.0, 2.0], [5.0, 3.0, 8.0, 6.0]]  # centres (2, 1) and (6.5, 4.5)
    got = instances_score_map(_instances((6, 8), [0.9, 0.4], boxes=boxes))
    assert got[1, 2] == pytest.approx(0.9) and got[4, 6] == pytest.approx(0.4)
    assert np.count_nonzero(got) == 2
    assert not instances_score_map(_instances((6, 8), [])).any()


def test_a_detector_is_scored_by_the_union_of_its_masks_above_its_score_threshold(tmp_path):
    gt = np.zeros((16, 16), np.uint8)
    gt[2:5, 2:5] = 255
    gt[10:13, 10:13] = 255
    Image.fromarray(gt).save(tmp_path / "m.png")
    hit, weak, false = (np.zeros((16, 16), bool) for _ in range(3))
    hit[2:5, 2:5], weak[10:13, 10:13], false[0:2, 14:16] = True, True, True
    cfg = ir_cfg(
        "IR-InstanceSegmentation/mask_rcnn_R_50_FPN_100e_ircoco.yaml",
        ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.25, "TEST.IRSTD.ROC_THRESHOLDS", [0.5]],
    )
    evaluator = build_irstd_evaluator(cfg, "not_registered")
    evaluator.reset()
    inputs = [{"file_name": "f.png", "sem_seg_file_name": str(tmp_path / "m.png")}]
    outputs = [{"instances": _instances((16, 16), [0.9, 0.3, 0.6], masks=[hit, weak, false])}]
    evaluator._distributed = False
    evaluator.process(inputs, outputs)
    r = evaluator.evaluate()["irstd"]
    # at the score threshold 0.25 all three masks count: both targets found, 4 false pixels
    assert r["Pd"] == 100.0 and r["Fa"] == pytest.approx(4 / 256 * 1e6)
    assert r["IoU"] == pytest.approx(100 * 18 / 22)
    # at 0.5 the weak detection (0.3) is gone: one target of two
    assert r["Pd@0.5"] == 50.0 and r["Fa@0.5"] == pytest.approx(4 / 256 * 1e6)
