"""
Export (ir_d2.tools.export_model): each small-target net and the final Mask R-CNN to ONNX and
TorchScript, equal to eager PyTorch on real frames of three sizes; the ONNX Runtime
predictor equal to the PyTorch predictor; the demo on an exported model; bad input in one line.
"""

import json

import cv2
import numpy as np
import pytest
import torch
from conftest import SHARED_DATA, shared_data_dir
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

import ir_d2  # noqa: F401
from ir_d2.engine import ExportedPredictor, IRPredictor
from ir_d2.engine.defaults import setup_cfg
from ir_d2.engine.predictor import IRFrameInput
from ir_d2.export import ExportedNet, IRSTDExportModule, rcnn_outputs
from ir_d2.export.rcnn import rcnn_schema
from ir_d2.modeling.meta_arch import irstd_input
from ir_d2.tools import demo, export_model
from ir_d2.utils.cli import CommandLineError

SIRST_FRAMES = ["Misc_1", "Misc_138", "Misc_109"]  # 320x240, 256x200, 378x239
NETS = {
    "UNet": "ir_d2://IRSTD/irstd_unet_W32_1500e_sirst.yaml",
    "SGEMUNet": "ir_d2://IRSTD/irstd_sgem_unet_W40_1500e_sirst.yaml",
    "AFFUNet": "ir_d2://IRSTD/irstd_aff_unet_W32_bs256-1500e_sirst.yaml",
    "DNANet": "ir_d2://IRSTD/irstd_dnanet_W16_bs16-1500e_nudt_sirst.yaml",
}
SMALL = ["MODEL.IRSTD.CHANNELS", "[4, 8, 16, 32, 64]", "MODEL.DEVICE", "cpu"]
RCNN = (
    "ir_d2://quick_schedules/"
    "mask_rcnn-focal_siou-bce_dice_lovasz_R_50_BNSA-C3C4_FPN_sirst_instant_test.yaml"
)


def _real_frames():
    root = shared_data_dir("sirst")
    frames = [
        cv2.imread(str(root / "images" / f"{n}.png"), cv2.IMREAD_UNCHANGED) for n in SIRST_FRAMES
    ]
    assert len({f.shape[:2] for f in frames}) == 3
    return frames


def _weights(config, opts, tmp_path):
    """A checkpoint of the config's model with seeded random weights: BN statistics and affine
    parameters moved off their defaults (so the export must carry them) and, for a small-target
    net, its final head rescaled so that its logits on a real frame have median 0 and standard
    deviation 2 (a probability map with structure, neither the output prior everywhere nor
    saturated, so the 1e-4 comparison means something)."""
    torch.manual_seed(0)
    cfg = setup_cfg(config, opts)
    model = build_model(cfg).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 2.0)
            m.bias.data.uniform_(-0.5, 0.5)
    if hasattr(model, "net"):
        _, (x,) = _net_inputs(cfg, _real_frames()[:1], model)
        head = model.net.output_heads()[0]
        with torch.no_grad():
            out = model.net(x)
            logits = out[-1] if isinstance(out, (list, tuple)) else out
            scale = 2.0 / float(logits.std())
            head.weight.mul_(scale)
            head.bias.copy_(scale * (head.bias - logits.median()))
    path = tmp_path / "model.pth"
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("model")
    return str(path)


def _net_inputs(cfg, frames, model=None):
    if model is None:
        model = build_model(cfg).eval()
        DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    prep = IRFrameInput(cfg)
    xs = []
    for frame in frames:
        image = prep.model_input(prep.prepare(frame)[0])["image"]
        xs.append(irstd_input([image], model.pixel_mean, model.pixel_std, 32).tensor)
    return model, xs


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("net", sorted(NETS))
def test_each_small_target_net_exports_equal_to_eager_on_real_frames_of_three_sizes(
    net, fmt, tmp_path
):
    frames = _real_frames()
    weights = _weights(NETS[net], SMALL, tmp_path)
    out = tmp_path / "export"
    sample = SHARED_DATA / "sirst" / "images" / "Misc_1.png"
    argv = ["--config-file", NETS[net], "--format", fmt, "--output", str(out)]
    meta = export_model.main(
        [*argv, "--sample-image", str(sample), *SMALL, "MODEL.WEIGHTS", weights]
    )
    assert meta["net"] == net and len(meta["checks"]) == 3
    assert all(c["max_abs_diff"] <= 1e-4 for c in meta["checks"])
    saved = json.loads((out / "ir_d2_export.json").read_text())
    assert saved["pixel_mean"] == meta["pixel_mean"] and saved["size_divisibility"] == 32
    model, xs = _net_inputs(setup_cfg(NETS[net], [*SMALL, "MODEL.WEIGHTS", weights]), frames)
    exported = ExportedNet(str(out / meta["file"]))
    module = IRSTDExportModule(model.net).eval()
    for x in xs:
        with torch.no_grad():
            expected = module(x).numpy()
        got = exported(x)
        assert got.shape == expected.shape == (1, 1, *x.shape[-2:])
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
        # a map with structure: probabilities spread over (0, 1), not one value everywhere
        assert np.percentile(expected, 95) - np.percentile(expected, 5) > 0.3


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_the_final_mask_rcnn_exports_with_the_same_detections(fmt, tmp_path):
    frames = _real_frames()
    opts = ["MODEL.DEVICE", "cpu", "TEST.DETECTIONS_PER_IMAGE", "10"]
    weights = _weights(RCNN, opts, tmp_path)
    out = tmp_path / "export"
    meta = export_model.main(
        ["--config-file", RCNN, "--format", fmt, "--output", str(out), "--sample-image",
         str(SHARED_DATA / "sirst" / "images" / "Misc_1.png"), *opts, "MODEL.WEIGHTS", weights]
    )  # fmt: skip
    assert meta["meta_architecture"] == "GeneralizedRCNN" and len(meta["checks"]) == 3
    assert meta["outputs"] == ["pred_boxes", "pred_classes", "pred_masks", "scores", "image_size"]
    assert all(c["instances"] > 0 and c["min_mask_iou"] > 0.99 for c in meta["checks"])
    # independently: the saved file, loaded alone, on three real frames
    cfg = setup_cfg(RCNN, [*opts, "MODEL.WEIGHTS", weights])
    model = build_model(cfg).eval()
    DetectionCheckpointer(model).load(weights)
    if fmt == "torchscript":
        run = torch.jit.load(str(out / "model.ts"))
    else:
        import onnxruntime as ort

        session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])

        def run(image):
            return tuple(torch.from_numpy(o) for o in session.run(None, {"image": image.numpy()}))

    prep = IRFrameInput(cfg)
    for frame in frames:
        inputs = prep.model_input(prep.prepare(frame)[0])
        with torch.no_grad():
            expected = model([inputs])[0]["instances"]
            schema = rcnn_schema(model, inputs["image"])
            got = rcnn_outputs(schema, run(inputs["image"]), inputs["height"], inputs["width"])
        assert len(got) == len(expected) > 0
        assert torch.equal(got.pred_classes, expected.pred_classes)
        assert torch.allclose(got.pred_boxes.tensor, expected.pred_boxes.tensor, atol=1e-3)
        inter = (got.pred_masks & expected.pred_masks).flatten(1).sum(1).float()
        union = (got.pred_masks | expected.pred_masks).flatten(1).sum(1).float().clamp(min=1)
        assert (inter / union).min() > 0.99


def test_the_onnx_runtime_predictor_equals_the_pytorch_predictor(tmp_path):
    config = NETS["SGEMUNet"]
    weights = _weights(config, SMALL, tmp_path)
    out = tmp_path / "export"
    # RGB order with per-channel constants (the DNANet / SIRST-5K rows' input): the recipe below
    # must follow input_format, a BGR reading would shift every channel's mean
    small = [*SMALL, "INPUT.FORMAT", "RGB", "MODEL.PIXEL_MEAN", "[123.675, 116.28, 103.53]"]
    small += ["MODEL.PIXEL_STD", "[58.395, 57.12, 57.375]", "MODEL.IRSTD.THRESHOLD", "0.3"]
    export_model.main(
        ["--config-file", config, "--format", "onnx", "--output", str(out), *small,
         "MODEL.WEIGHTS", weights]
    )  # fmt: skip
    torch_cfg = setup_cfg(config, [*small, "MODEL.WEIGHTS", weights])
    onnx_cfg = setup_cfg(config, [*small, "MODEL.WEIGHTS", str(out / "model.onnx")])
    pytorch, exported = IRPredictor(torch_cfg), ExportedPredictor(onnx_cfg)
    rng = np.random.default_rng(0)
    gray8 = rng.integers(0, 120, (61, 83), dtype=np.uint8)
    gray8[30:33, 40:43] = 250
    raw16 = (gray8.astype(np.uint16) * 200 + 3000).astype(np.uint16)
    with_nan = raw16.astype(np.float32)
    with_nan[5:8, 5:9] = np.nan
    bgr = np.repeat(gray8[:, :, None], 3, axis=2)
    for frame in (gray8, raw16, with_nan, bgr):
        a, b = pytorch(frame), exported(frame)
        assert a["sem_seg"].shape == b["sem_seg"].shape == (1, 61, 83)
        assert torch.allclose(a["sem_seg"], b["sem_seg"], atol=1e-4)
        assert len(a["targets"]) == len(b["targets"])
        np.testing.assert_allclose(
            np.reshape([t["centroid"] for t in a["targets"]], (-1, 2)),
            np.reshape([t["centroid"] for t in b["targets"]], (-1, 2)),
            atol=1e-6,
        )
    assert float(exported(with_nan)["sem_seg"][0, 5:8, 5:9].max()) == 0.0  # nothing in NaN pixels
    # docs/deployment.md's recipe: ONNX Runtime alone, fed as ir_d2_export.json says, 8-bit frame
    import onnxruntime as ort

    meta = json.loads((out / "ir_d2_export.json").read_text())
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    bgr8 = np.stack([gray8, gray8 // 2, 255 - gray8], axis=2)  # colour: the order matters
    x = bgr8.transpose(2, 0, 1).astype(np.float32)
    x = x[::-1] if meta["input_format"] == "RGB" else x
    x = (x - np.reshape(meta["pixel_mean"], (-1, 1, 1))) / np.reshape(meta["pixel_std"], (-1, 1, 1))
    d, (h, w) = meta["size_divisibility"], bgr8.shape[:2]
    x = np.pad(x, ((0, 0), (0, -h % d), (0, -w % d)))[None].astype(np.float32)
    model_input = pytorch.model.preprocess_image([pytorch.model_input(bgr8)]).tensor.numpy()
    np.testing.assert_allclose(x, model_input, atol=1e-5, rtol=0)  # what the model is fed
    prob = session.run(None, {"image": x})[0][0, 0, :h, :w]
    np.testing.assert_allclose(prob, pytorch(bgr8)["sem_seg"][0].numpy(), atol=1e-4, rtol=0)


def test_the_demo_runs_an_exported_net(tmp_path):
    config = NETS["UNet"]
    weights = _weights(config, SMALL, tmp_path)
    export_model.main(
        ["--config-file", config, "--format", "torchscript", "--output", str(tmp_path / "ex"),
         *SMALL, "MODEL.WEIGHTS", weights]
    )  # fmt: skip
    frame = tmp_path / "frame.png"
    cv2.imwrite(str(frame), np.full((40, 52), 30, np.uint8))
    written = demo.main(
        ["--config-file", config, "--input", str(frame), "--output", str(tmp_path / "out"),
         *SMALL, "MODEL.WEIGHTS", str(tmp_path / "ex" / "model.ts")]
    )  # fmt: skip
    assert cv2.imread(written[0]).shape == (40, 52, 3)


def test_bad_export_requests_are_one_line_naming_the_cause(tmp_path, capsys, monkeypatch):
    config = NETS["UNet"]
    with pytest.raises(SystemExit) as e:  # argparse: an unknown format
        export_model.main(["--config-file", config, "--format", "tflite", "--output", "x"])
    assert e.value.code == 2 and "invalid choice: 'tflite'" in capsys.readouterr().err
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(SystemExit) as e:
        export_model.main(
            ["--config-file", config, "--format", "onnx", "--output", str(tmp_path / "o"),
             "MODEL.WEIGHTS", str(missing)]
        )  # fmt: skip
    assert str(missing) in str(e.value) and "\n" not in str(e.value)
    not_exportable = ["MODEL.META_ARCHITECTURE", "SemanticSegmentor", *SMALL]
    with pytest.raises(CommandLineError, match="cannot be exported") as e:
        export_model.main(
            ["--config-file", config, "--format", "onnx", "--output", str(tmp_path / "o"),
             *not_exportable, "MODEL.WEIGHTS", ""]
        )  # fmt: skip
    assert "\n" not in str(e.value)
    # a folder holding someone else's model.onnx is never written into
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "model.onnx").write_bytes(b"not ours")
    with pytest.raises(CommandLineError, match="not written by this tool"):
        export_model.main(
            ["--config-file", config, "--format", "onnx", "--output", str(mine), *SMALL,
             "MODEL.WEIGHTS", ""]
        )  # fmt: skip
    assert (mine / "model.onnx").read_bytes() == b"not ours"
    assert sorted(p.name for p in mine.iterdir()) == ["model.onnx"]

    # a net torch cannot export: one line naming the net and torch's reason, nothing written
    def fails(*args):
        raise RuntimeError("Unsupported operator aten::foo\n  long exporter report")

    monkeypatch.setattr(export_model, "export_irstd_onnx", fails)
    with pytest.raises(CommandLineError, match="onnx export of UNet failed .*aten::foo") as e:
        export_model.main(
            ["--config-file", config, "--format", "onnx", "--output", str(tmp_path / "f"), *SMALL,
             "MODEL.WEIGHTS", ""]
        )  # fmt: skip
    assert "\n" not in str(e.value)
    assert not any((tmp_path / "f").iterdir())
