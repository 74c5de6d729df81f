"""IRDatasetMapper, IRSTDDatasetMapper, build_ir_mapper and bad samples."""

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import SHARED_DATA, ir_cfg, shared_data_dir
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.data import transforms as T
from detectron2.data.common import MapDataset
from PIL import Image

import ir_d2  # noqa: F401  (registration)
from ir_d2.data import IRDataError, IRDatasetMapper, IRSTDDatasetMapper, build_ir_mapper
from ir_d2.data.transforms import IRBrightnessContrast

VANILLA = "IR-InstanceSegmentation/mask_rcnn_R_50_FPN_100e_ircoco.yaml"


@pytest.fixture
def real_root(monkeypatch):
    shared_data_dir("sirst")
    monkeypatch.setenv("IR_D2_DATASETS", str(SHARED_DATA))
    return SHARED_DATA


def _cfg(*opts):
    return ir_cfg(None, ["INPUT.DATASET_MAPPER_NAME", "IRSTDDatasetMapper", *opts])


def _pil_bgr(path):
    """Independent reading: Pillow's RGB conversion, reversed (gray, palette, alpha handled)."""
    return np.asarray(Image.open(path).convert("RGB"))[:, :, ::-1]


def _record(tmp_path, image, mask=None, name="f", dataset="toy_set"):
    Image.fromarray(image).save(tmp_path / f"{name}.png")
    record = {"file_name": str(tmp_path / f"{name}.png"), "image_id": name, "dataset_name": dataset}
    if mask is not None:
        Image.fromarray(mask).save(tmp_path / f"{name}_mask.png")
        record["sem_seg_file_name"] = str(tmp_path / f"{name}_mask.png")
    return record


# ----------------------------------------------------------------------------- every SIRST frame
def test_every_sirst_frame_through_the_semantic_mapper(real_root):
    records = DatasetCatalog.get("sirst_train") + DatasetCatalog.get("sirst_test")
    files = {p.stem for p in (real_root / "sirst" / "images").glob("*.png")}
    assert sorted(r["image_id"] for r in records) == sorted(files) and len(files) == 427
    mapper = IRSTDDatasetMapper(_cfg(), False)
    modes = {}
    for r in records:
        if r["image_id"] == "Misc_111":
            with pytest.raises(IRDataError) as info:
                mapper(r)
            assert "Misc_111_pixels0.png" in str(info.value) and "Misc_111.png" in str(info.value)
            assert "'sirst_test'" in str(info.value)
            continue
        out = mapper(r)
        modes[Image.open(r["file_name"]).mode] = modes.get(Image.open(r["file_name"]).mode, 0) + 1
        image = out["image"]
        assert image.dtype == torch.uint8 and image.shape == (3, r["height"], r["width"])
        np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), _pil_bgr(r["file_name"]))
        gt = cv2.imread(r["sem_seg_file_name"], cv2.IMREAD_GRAYSCALE) > 127
        assert out["sem_seg"].dtype == torch.int64
        np.testing.assert_array_equal(out["sem_seg"].numpy(), gt.astype(np.int64))
        assert (out["height"], out["width"], out["file_name"]) == (
            r["height"],
            r["width"],
            r["file_name"],
        )
    assert set(modes) == {"RGB", "RGBA", "L", "P"}  # every image mode of SIRST was seen
    # resizing the mismatched mask is opt-in
    mapper = IRSTDDatasetMapper(_cfg("INPUT.IR.RESIZE_MISMATCHED_MASKS", True), False)
    out = mapper(next(r for r in records if r["image_id"] == "Misc_111"))
    assert out["sem_seg"].shape == out["image"].shape[1:] == (220, 325)
    assert 0 < out["sem_seg"].sum() < 220 * 325 // 100


def test_sirst_training_crops_are_fixed_size(real_root):
    np.random.seed(0)
    records = DatasetCatalog.get("sirst_427_val")
    mapper = IRSTDDatasetMapper(_cfg("INPUT.IR.SCALE", [0.5, 1.5]), True)
    for r in records[:30]:
        out = mapper(r)
        assert out["image"].shape == (3, 256, 256) and out["sem_seg"].shape == (256, 256)
        assert set(out["sem_seg"].unique().tolist()) <= {0, 1}
        image = out["image"]
        assert torch.equal(image[0], image[1]) or Image.open(r["file_name"]).mode != "L"


def test_irstd1k_mask_through_the_mapper_and_missing_frames(real_root, caplog):
    records = DatasetCatalog.get("irstd1k_train")
    xdu0 = next(i for i, r in enumerate(records) if r["image_id"] == "XDU0")
    n255 = int((np.asarray(Image.open(records[xdu0]["sem_seg_file_name"])) == 255).sum())
    out = IRSTDDatasetMapper(_cfg(), False)(records[xdu0])
    assert out["sem_seg"].sum() == n255 and out["image"].shape == (3, 512, 512)
    with pytest.raises(IRDataError, match="does not exist") as info:
        IRSTDDatasetMapper(_cfg(), True)(records[(xdu0 + 1) % len(records)])
    assert "'irstd1k_train'" in str(info.value) and "XDU" in str(info.value)
    # skipping: every missing frame is logged and counted; MapDataset draws another index
    mapper = IRSTDDatasetMapper(_cfg("DATALOADER.SKIP_BAD_SAMPLES", True), True)
    dataset = MapDataset(records[xdu0 - 2 : xdu0 + 1], mapper)
    with caplog.at_level(logging.WARNING, logger="ir_d2"):
        out = dataset[0]
    assert out["image_id"] == "XDU0" and out["image"].shape == (3, 256, 256)
    assert 1 <= mapper.num_skipped <= 2 and "skipped bad sample #1" in caplog.text


# ----------------------------------------------------------------------------- augmentations
def _coords_frame(h, w):
    """B = x, G = y, R = 200 (mod 256): a crop's offset is readable from its pixels."""
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.dstack([np.full((h, w), 200), yy % 256, xx % 256]).astype(np.uint8)
    mask = (((xx + 2 * yy) % 7) == 0).astype(np.uint8) * 255
    return rgb, mask


@pytest.mark.parametrize("size", [(300, 280), (96, 135)])
def test_fixed_size_crop_and_padding(tmp_path, size):
    np.random.seed(1)
    rgb, mask = _coords_frame(*size)
    record = _record(tmp_path, rgb, mask)
    opts = ["INPUT.IR.FLIP", "none", "INPUT.IR.BRIGHTNESS", [1.0, 1.0]]
    mapper = IRSTDDatasetMapper(_cfg(*opts, "INPUT.IR.CONTRAST", [1.0, 1.0]), True)
    for _ in range(5):
        out = mapper(record)
        image, sem = out["image"].numpy(), out["sem_seg"].numpy()
        assert image.shape == (3, 256, 256) and sem.shape == (256, 256)
        x0, y0 = int(image[0, 0, 0]), int(image[1, 0, 0])
        h, w = min(256, size[0]), min(256, size[1])
        np.testing.assert_array_equal(
            image[:, :h, :w], rgb[y0 : y0 + h, x0 : x0 + w, ::-1].transpose(2, 0, 1)
        )
        np.testing.assert_array_equal(sem[:h, :w], mask[y0 : y0 + h, x0 : x0 + w] > 127)
        assert (image[:, h:, :] == 0).all() and (image[:, :, w:] == 0).all()  # zero padding
        assert (sem[h:, :] == 0).all() and (sem[:, w:] == 0).all()


def test_flips_move_image_and_mask_together_and_keep_gray(tmp_path):
    np.random.seed(2)
    gray = np.random.randint(0, 256, (40, 60), dtype=np.uint8)
    mask = np.zeros((40, 60), np.uint8)
    mask[3:6, 50:58] = 255
    record = _record(tmp_path, gray, mask)
    mapper = IRSTDDatasetMapper(_cfg("INPUT.IR.FLIP", "both", "INPUT.IR.CROP_SIZE", []), True)
    seen = set()
    for _ in range(40):
        out = mapper(record)
        image = out["image"].numpy()
        assert (image[0] == image[1]).all() and (image[1] == image[2]).all()  # no colour jitter
        sem = out["sem_seg"].numpy()
        flips = [(a, b) for a in (0, 1) for b in (0, 1)]
        match = [
            (a, b)
            for a, b in flips
            if np.array_equal(sem, (np.flip(mask, [ax for ax, f in ((0, a), (1, b)) if f]) > 127))
        ]
        assert len(match) == 1
        seen.add(match[0])
        # brightness/contrast are monotone maps of the gray values: the order of pixels survives
        a, b = match[0]
        ref = np.flip(gray, [ax for ax, f in ((0, a), (1, b)) if f]).astype(int).ravel()
        got = image[0].astype(int).ravel()
        order = np.argsort(ref, kind="stable")
        assert (np.diff(got[order]) >= 0).all()
    assert seen == {(0, 0), (0, 1), (1, 0), (1, 1)}


def test_brightness_and_contrast_values(tmp_path):
    gray = np.arange(0, 250, 5, dtype=np.uint8).reshape(5, 10)
    record = _record(tmp_path, gray)
    base = ["INPUT.IR.FLIP", "none", "INPUT.IR.CROP_SIZE", []]
    out = IRSTDDatasetMapper(
        _cfg(*base, "INPUT.IR.BRIGHTNESS", [0.5, 0.5], "INPUT.IR.CONTRAST", [1.0, 1.0]), True
    )(record)
    np.testing.assert_array_equal(out["image"][0].numpy(), (gray * 0.5).astype(np.uint8))
    out = IRSTDDatasetMapper(
        _cfg(*base, "INPUT.IR.BRIGHTNESS", [1.0, 1.0], "INPUT.IR.CONTRAST", [2.0, 2.0]), True
    )(record)
    expected = np.clip(2.0 * gray - gray.mean(), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(out["image"][2].numpy(), expected)
    with pytest.raises(ValueError, match="INPUT.IR.FLIP"):
        IRSTDDatasetMapper(_cfg("INPUT.IR.FLIP", "diagonal"), True)
    with pytest.raises(ValueError, match="INPUT.IR.CONTRAST"):
        IRSTDDatasetMapper(_cfg("INPUT.IR.CONTRAST", [1.2, 0.8]), True)


def test_brightness_contrast_table_equals_detectron2_blends():
    """The one-table photometric augmentation against detectron2's two float blends."""
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (60, 70, 3), dtype=np.uint8)
    for b, c in [(0.7, 1.3), (1.4, 0.6), (1.0, 2.0), (0.5, 1.0)]:
        ours = IRBrightnessContrast((b, b), (c, c)).get_transform(image).apply_image(image)
        y = T.BlendTransform(src_image=0, src_weight=1 - b, dst_weight=b).apply_image(image)
        z = T.BlendTransform(src_image=y.mean(), src_weight=1 - c, dst_weight=c).apply_image(y)
        np.testing.assert_array_equal(ours, z)


def test_augment_train_hook_runs_before_the_crop(tmp_path):
    class Hooked(IRSTDDatasetMapper):
        def _augment_train(self, image, mask):
            assert image.shape == (20, 30, 3) and mask.shape == (20, 30) and mask.max() == 1
            return np.full((300, 300, 3), 7, np.uint8), np.ones((300, 300), np.uint8)

    mask = np.zeros((20, 30), np.uint8)
    mask[5, 5] = 255
    record = _record(tmp_path, np.zeros((20, 30), np.uint8), mask)
    opts = ["INPUT.IR.BRIGHTNESS", [1.0, 1.0], "INPUT.IR.CONTRAST", [1.0, 1.0]]
    out = Hooked(_cfg(*opts), True)(record)
    assert (out["image"] == 7).all() and (out["sem_seg"] == 1).all()
    assert out["image"].shape == (3, 256, 256)
    out = Hooked(_cfg(*opts), False)(record)  # not at test time
    assert out["image"].shape == (3, 20, 30) and out["sem_seg"].sum() == 1


def test_test_size_resizes_image_but_keeps_gt_at_original_size(tmp_path):
    rgb, mask = _coords_frame(50, 70)
    record = _record(tmp_path, rgb, mask)
    out = IRSTDDatasetMapper(_cfg("INPUT.IR.TEST_SIZE", 64, "INPUT.FORMAT", "RGB"), False)(record)
    assert out["image"].shape == (3, 64, 64) and out["sem_seg"].shape == (50, 70)
    assert (out["image"][0] == 200).all()  # RGB order: R first
    assert "sem_seg_file_name" in out and (out["height"], out["width"]) == (50, 70)


# ----------------------------------------------------------------------------- bad samples
def test_bad_samples_raise_or_are_skipped_and_counted(tmp_path, caplog):
    good = _record(tmp_path, np.full((30, 30), 9, np.uint8), np.zeros((30, 30), np.uint8), "good")
    (tmp_path / "corrupt.png").write_bytes(Path(good["file_name"]).read_bytes()[:40])
    (tmp_path / "empty.png").write_bytes(b"")
    bad = [
        dict(good, file_name=str(tmp_path / "corrupt.png"), image_id="corrupt"),
        dict(good, file_name=str(tmp_path / "empty.png"), image_id="empty"),
        dict(good, file_name=str(tmp_path / "missing.png"), image_id="missing"),
        dict(good, sem_seg_file_name=str(tmp_path / "missing_mask.png"), image_id="nomask"),
    ]
    small = _record(tmp_path, np.zeros((30, 30), np.uint8), np.zeros((20, 30), np.uint8), "sz")
    bad.append(small)
    mapper = IRSTDDatasetMapper(_cfg(), True)
    for record, text in zip(
        bad, ["corrupt", "empty", "does not exist", "does not exist", "sz_mask"]
    ):
        with pytest.raises(IRDataError) as info:
            mapper(record)
        assert text in str(info.value) and "'toy_set'" in str(info.value)
    assert "sz.png" in str(info.value)  # the size error names both files
    # records without dataset_name: the error names the config's datasets
    nameless = {k: v for k, v in bad[2].items() if k != "dataset_name"}
    with pytest.raises(IRDataError, match="sirst_train"):
        IRSTDDatasetMapper(_cfg("DATASETS.TRAIN", ("sirst_train",)), True)(nameless)

    skipping = IRSTDDatasetMapper(_cfg("DATALOADER.SKIP_BAD_SAMPLES", True), True)
    with caplog.at_level(logging.WARNING, logger="ir_d2"):
        assert all(skipping(r) is None for r in bad)
    assert skipping.num_skipped == len(bad)
    assert f"skipped bad sample #{len(bad)}" in caplog.text and "corrupt.png" in caplog.text
    dataset = MapDataset(bad + [good], skipping)
    assert dataset[0]["image_id"] == "good" and skipping.num_skipped > len(bad)
    # the instance mapper skips the same way
    inst = IRDatasetMapper(ir_cfg(VANILLA, ["DATALOADER.SKIP_BAD_SAMPLES", True]), True)
    assert inst(dict(bad[0], annotations=[])) is None and inst.num_skipped == 1


# ----------------------------------------------------------------------------- instance mapper
def test_instance_mapper_on_sirst_instances(real_root):
    np.random.seed(3)
    records = [r for r in DatasetCatalog.get("sirst_427_val_instances") if r["annotations"]][:10]
    for r in records:
        short = min(r["height"], r["width"])
        for size, exact in ((short, True), (240, short == 240)):
            opts = ["INPUT.MIN_SIZE_TRAIN", (size,), "INPUT.MAX_SIZE_TRAIN", 4000]
            out = IRDatasetMapper(ir_cfg(VANILLA, [*opts, "INPUT.IR.FLIP", "both"]), True)(r)
            inst = out["instances"]
            assert out["image"].shape[0] == 3 and min(out["image"].shape[1:]) == size
            assert len(inst) == len(r["annotations"]) and (inst.gt_classes == 0).all()
            if exact:  # no resize: masks and boxes keep their pixel counts, whatever the flips
                areas = sorted(a["area"] for a in r["annotations"])
                assert sorted(inst.gt_masks.tensor.sum((1, 2)).tolist()) == areas
                box_areas = sorted(a["bbox"][2] * a["bbox"][3] for a in r["annotations"])
                assert sorted(inst.gt_boxes.area().round().tolist()) == box_areas
    poly = IRDatasetMapper(ir_cfg(VANILLA, ["INPUT.MASK_FORMAT", "polygon"]), True)
    with pytest.raises(ValueError, match="INPUT.MASK_FORMAT"):
        poly(records[0])
    # at test time the annotations are dropped, the image is resized to MIN_SIZE_TEST
    out = IRDatasetMapper(ir_cfg(VANILLA, ["INPUT.MIN_SIZE_TEST", 120]), False)(records[0])
    assert "instances" not in out and "annotations" not in out
    assert min(out["image"].shape[1:]) == 120


def test_build_ir_mapper_chooses_by_name():
    assert type(build_ir_mapper(_cfg(), True)) is IRSTDDatasetMapper
    cfg = ir_cfg(VANILLA)
    assert type(build_ir_mapper(cfg, True)) is IRDatasetMapper
    cfg.INPUT.DATASET_MAPPER_NAME = "DatasetMapper"
    assert type(build_ir_mapper(cfg, False)) is DatasetMapper
    cfg.INPUT.DATASET_MAPPER_NAME = "FancyMapper"
    with pytest.raises(ValueError, match="INPUT.DATASET_MAPPER_NAME"):
        build_ir_mapper(cfg, True)
    with pytest.raises(ValueError, match="INPUT.FORMAT"):
        IRSTDDatasetMapper(_cfg("INPUT.FORMAT", "L"), True)
    with pytest.raises(ValueError, match="INPUT.IR.NORMALIZE"):
        IRDatasetMapper(ir_cfg(VANILLA, ["INPUT.IR.NORMALIZE", "log"]), True)


def test_detectron2_train_loader_with_the_semantic_mapper(real_root):
    from detectron2.data import build_detection_train_loader

    cfg = _cfg(
        "DATASETS.TRAIN",
        ("sirst_427_val",),
        "SOLVER.IMS_PER_BATCH",
        4,
        "DATALOADER.NUM_WORKERS",
        0,
    )
    assert cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS  # detectron2's default: semantic sets unaffected
    batch = next(iter(build_detection_train_loader(cfg, mapper=build_ir_mapper(cfg, True))))
    assert len(batch) == 4
    for d in batch:
        assert d["image"].shape == (3, 256, 256) and d["sem_seg"].shape == (256, 256)
        assert d["dataset_name"] == "sirst_427_val"
