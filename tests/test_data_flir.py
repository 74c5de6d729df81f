"""FLIR ADAS v1 / v2 layouts, written in tmp_path around real FLIR frames."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from conftest import ir_cfg, shared_data_dir
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

import ir_d2  # noqa: F401  (registration)
from ir_d2.data import IRDatasetMapper, register_flir

FASTER = "IR-Detection/faster_rcnn_R_50_FPN_100e_flir.yaml"
FRAMES = ("FLIR_00006", "FLIR_00018", "FLIR_00060")
# category lists as the two versions ship them (v1: COCO ids, 5 classes; v2: 15, "bike")
V1_CATEGORIES = [(1, "person"), (2, "bicycle"), (3, "car"), (18, "dog"), (91, "other vehicle")]
V2_CATEGORIES = [(1, "person"), (2, "bike"), (3, "car"), (4, "motor"), (6, "bus"), (17, "dog")]
# (frame index, json category name, [x, y, w, h]); "dog" and "motor" are not kept, one box is empty
BOXES = [
    (0, "person", [100, 200, 20, 50]),
    (0, "car", [300, 250, 120, 60]),
    (0, "dog", [10, 10, 30, 20]),
    (1, "bicycle", [400, 300, 40, 30]),
    (1, "car", [50, 260, 0, 40]),
    (2, "person", [500, 100, 15, 40]),
]
EXPECTED = {
    0: [(0, [100, 200, 20, 50]), (2, [300, 250, 120, 60])],
    1: [(1, [400, 300, 40, 30])],
    2: [(0, [500, 100, 15, 40])],
}


def _raw16(frame):
    """A 16-bit 'radiometric' frame made from the 8-bit one (offset + gain, like a Tau2)."""
    return (np.asarray(frame, dtype=np.uint16) * 37 + 21000).astype(np.uint16)


def _write_flir(tmp_path, version):
    src = shared_data_dir("roadscene-thermal")
    if version == 1:
        root = tmp_path / "FLIR_ADAS_1_3"
        split = root / "train"
        eight, sixteen, json_name = "thermal_8_bit", "thermal_16_bit", "thermal_annotations.json"
        names = [f"{f}.jpeg" for f in FRAMES]
        categories = V1_CATEGORIES
    else:
        root = tmp_path / "FLIR_ADAS_v2"
        split = root / "images_thermal_val"
        eight, sixteen, json_name = "data", "analyticsData", "coco.json"
        names = [
            f"video-4FRnNpmSmwktFJKjg-frame-{i:06d}-x{f[-3:]}.jpg" for i, f in enumerate(FRAMES)
        ]
        categories = V2_CATEGORIES
    (split / eight).mkdir(parents=True)
    (split / sixteen).mkdir()
    images, annotations = [], []
    for i, (frame, name) in enumerate(zip(FRAMES, names)):
        image = Image.open(src / f"{frame}.png")
        image.save(split / eight / name, quality=95)
        Image.fromarray(_raw16(image)).save(split / sixteen / (Path(name).stem + ".tiff"))
        images.append({"id": i, "file_name": f"{eight}/{name}", "width": 640, "height": 512})
    ids = {n: i for i, n in categories}
    for k, (i, cat, box) in enumerate(BOXES):
        cat = "bike" if (version == 2 and cat == "bicycle") else cat
        if version == 2 and cat == "dog":
            cat = "motor"
        x, y, w, h = box
        annotations.append(
            {
                "id": k + 1,
                "image_id": i,
                "category_id": ids[cat],
                "bbox": box,
                "area": w * h,
                "iscrowd": 0,
                "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
            }
        )
    coco = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": n, "supercategory": "unknown"} for i, n in categories],
    }
    (split / json_name).write_text(json.dumps(coco))
    return root, "train" if version == 1 else "val"


def _snapshot(folder):
    return sorted((str(p), p.stat().st_mtime_ns) for p in Path(folder).rglob("*"))


@pytest.mark.parametrize("version", [1, 2])
def test_flir_layouts(tmp_path, version, caplog):
    root, split = _write_flir(tmp_path, version)
    before = _snapshot(root)
    name = f"tmp_flir_v{version}_test_set"
    register_flir(name, str(root), version, split)
    try:
        meta = MetadataCatalog.get(name)
        assert meta.thing_classes == ["person", "bicycle", "car"] and meta.evaluator_type == "coco"
        with caplog.at_level(logging.WARNING, logger="ir_d2"):
            records = DatasetCatalog.get(name)
        assert "dropped 1 zero-area boxes" in caplog.text and name in caplog.text
        assert len(records) == 3
        for r in records:
            assert Path(r["file_name"]).is_file() and (r["height"], r["width"]) == (512, 640)
            got = [(a["category_id"], a["bbox"]) for a in r["annotations"]]
            assert got == EXPECTED[r["image_id"]]
            assert all("segmentation" not in a for a in r["annotations"])  # boxes only
        # through the instance mapper of the FLIR config (boxes only, 3 classes)
        cfg = ir_cfg(FASTER, ["INPUT.MIN_SIZE_TRAIN", (512,), "INPUT.IR.FLIP", "none"])
        assert cfg.MODEL.MASK_ON is False and cfg.MODEL.ROI_HEADS.NUM_CLASSES == 3
        mapper = IRDatasetMapper(cfg, True)
        for r in records:
            out = mapper(r)
            inst = out["instances"]
            assert out["image"].shape == (3, 512, 640) and not inst.has("gt_masks")
            assert inst.gt_classes.tolist() == [c for c, _ in EXPECTED[r["image_id"]]]
            xyxy = [[x, y, x + w, y + h] for _, (x, y, w, h) in EXPECTED[r["image_id"]]]
            assert inst.gt_boxes.tensor.tolist() == xyxy
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    assert _snapshot(root) == before  # nothing written into the dataset folder


@pytest.mark.parametrize("version", [1, 2])
def test_flir_16bit_frames(tmp_path, version):
    root, split = _write_flir(tmp_path, version)
    name = f"tmp_flir16_v{version}_test_set"
    register_flir(name, str(root), f"v{version}", split, sixteen_bit=True)
    try:
        records = DatasetCatalog.get(name)
        assert all(
            r["file_name"].endswith(".tiff") and Path(r["file_name"]).is_file() for r in records
        )
        cfg = ir_cfg(FASTER, ["INPUT.MIN_SIZE_TEST", 512])
        src = shared_data_dir("roadscene-thermal")
        for normalize in ("minmax", "percentile"):
            cfg.INPUT.IR.NORMALIZE = normalize
            out = IRDatasetMapper(cfg, False)(records[0])
            raw = _raw16(Image.open(src / f"{FRAMES[0]}.png")).astype(np.float64)
            lo, hi = (
                (raw.min(), raw.max()) if normalize == "minmax" else np.percentile(raw, [1, 99])
            )
            expected = np.rint(np.clip((raw - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
            assert out["image"].shape == (3, 512, 640)
            for c in range(3):
                np.testing.assert_array_equal(out["image"][c].numpy(), expected)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_builtin_flir_names_read_the_root_at_load_time(tmp_path, monkeypatch):
    _write_flir(tmp_path, 2)
    monkeypatch.setenv("IR_D2_DATASETS", str(tmp_path))
    records = DatasetCatalog.get("flir_v2_val")
    assert len(records) == 3 and records[0]["dataset_name"] == "flir_v2_val"
    assert records[0]["file_name"].startswith(
        str(tmp_path / "FLIR_ADAS_v2" / "images_thermal_val" / "data")
    )
    with pytest.raises(FileNotFoundError, match="flir_v2_train"):
        DatasetCatalog.get("flir_v2_train")
    with pytest.raises(ValueError, match="version"):
        register_flir("tmp_flir_bad", str(tmp_path), 3)
