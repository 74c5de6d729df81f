"""Built-in IR datasets, instance conversion, IR COCO registration, synthetic set, CLI."""

import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from conftest import SHARED_DATA, shared_data_dir
from detectron2.data import DatasetCatalog, MetadataCatalog, get_detection_dataset_dicts
from detectron2.structures import BoxMode
from PIL import Image

import ir_d2  # noqa: F401  (registration)
from ir_d2.data import IR_COCO_CLASSES, register_ir_coco_instances, register_irstd
from ir_d2.data.ir_datasets import read_split_list
from ir_d2.data.ir_datasets.builtin import IRSTD_SPLITS, register_all_ir
from ir_d2.data.ir_datasets.synthetic import build_synthetic_set, synthetic_set_dir
from ir_d2.tools.masks_to_coco import main as masks_to_coco
from ir_d2.utils.cli import CommandLineError

SEMANTIC = list(IRSTD_SPLITS) + ["ir_synthetic_train", "ir_synthetic_test"]


@pytest.fixture
def real_root(monkeypatch):
    """IR_D2_DATASETS pointing at ../shared/data (skips when absent)."""
    shared_data_dir("sirst")
    monkeypatch.setenv("IR_D2_DATASETS", str(SHARED_DATA))
    return SHARED_DATA


@pytest.fixture(scope="module")
def synthetic_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        cache = tmp_path_factory.mktemp("ir_d2_cache")
        mp.setenv("IR_D2_CACHE", str(cache))
        yield cache


def _count_lines(path):
    """Non-blank lines, counted from the raw bytes (independent of read_split_list)."""
    return sum(1 for line in Path(path).read_bytes().split(b"\n") if line.strip(b"\r\t "))


def _components(mask_file, shape=None):
    """(count, sorted [x, y, w, h, area]) of the 8-connected components of mask > 127 (OpenCV)."""
    m = (cv2.imread(str(mask_file), cv2.IMREAD_GRAYSCALE) > 127).astype(np.uint8)
    if shape is not None and m.shape != shape:
        m = cv2.resize(m, shape[::-1], interpolation=cv2.INTER_NEAREST)
    n, _, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    return n - 1, sorted(stats[1:].tolist())


def _snapshot(folder):
    return sorted((str(p), p.stat().st_mtime_ns) for p in Path(folder).rglob("*"))


# ----------------------------------------------------------------------------- registration
def test_every_builtin_is_registered_without_reading_files(monkeypatch, tmp_path):
    monkeypatch.setenv("IR_D2_DATASETS", str(tmp_path / "nowhere"))
    names = set(DatasetCatalog.list())
    for name in SEMANTIC:
        assert name in names and name + "_instances" in names
        assert MetadataCatalog.get(name).evaluator_type == "irstd"
        assert MetadataCatalog.get(name).stuff_classes == ["background", "target"]
        assert MetadataCatalog.get(name + "_instances").evaluator_type == "coco"
        assert MetadataCatalog.get(name + "_instances").thing_classes == ["target"]
    for name in ("ir_coco_train", "ir_coco_test"):
        assert MetadataCatalog.get(name).thing_classes == ["person", "car", "bicycle", "uav"]
    for v in (1, 2):
        assert MetadataCatalog.get(f"flir_v{v}_train").thing_classes == ["person", "bicycle", "car"]
    register_all_ir()  # idempotent
    # registering a folder that does not exist reads nothing; loading names the dataset and path
    register_irstd("tmp_nowhere_set", str(tmp_path / "i"), str(tmp_path / "m"), str(tmp_path / "s"))
    try:
        with pytest.raises(FileNotFoundError, match="tmp_nowhere_set"):
            DatasetCatalog.get("tmp_nowhere_set")
    finally:
        DatasetCatalog.remove("tmp_nowhere_set")
        MetadataCatalog.remove("tmp_nowhere_set")
    # the root is read at load time, from the environment
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere" / "sirst")):
        DatasetCatalog.get("sirst_test")


# ----------------------------------------------------------------------------- semantic sets
def test_split_lists_crlf_bom_extensions(tmp_path):
    (tmp_path / "list.txt").write_bytes(b"\xef\xbb\xbfa_1\r\nb.2.png\r\n\r\n  c  \nd.PNG")
    assert read_split_list(str(tmp_path / "list.txt")) == ["a_1", "b.2", "c", "d"]


@pytest.mark.parametrize(
    "name, split_file, expected",
    [
        ("sirst_test", "sirst/50_50/test.txt", 214),
        ("sirst_train", "sirst/50_50/train.txt", 213),
        ("sirst_427_train", "sirst/idx_427/train.txt", 256),
        ("sirst_427_val", "sirst/idx_427/val.txt", 85),
        ("sirst_427_test", "sirst/idx_427/test.txt", 86),
        ("nudt_sirst_test", "nudt-sirst/50_50/test.txt", 664),
        ("nudt_sirst_train", "nudt-sirst/50_50/train.txt", 663),
    ],
)
def test_record_counts(real_root, name, split_file, expected):
    if not (real_root / split_file).is_file():
        pytest.skip(f"{split_file} absent")
    if split_file.startswith("sirst/50_50"):
        assert b"\r\n" in (real_root / split_file).read_bytes()  # CRLF list
    records = DatasetCatalog.get(name)
    assert len(records) == expected == _count_lines(real_root / split_file)
    stems = [Path(r["file_name"]).stem for r in records]
    assert len(set(stems)) == expected
    for r in records:
        assert os.path.isfile(r["file_name"]) and os.path.isfile(r["sem_seg_file_name"])
        assert r["image_id"] == Path(r["file_name"]).stem and r["dataset_name"] == name
        assert {"height", "width"} <= set(r)
    if name == "sirst_test":  # sizes against OpenCV's decoding of every frame
        for r in records:
            assert cv2.imread(r["file_name"]).shape[:2] == (r["height"], r["width"])
        assert records[0]["sem_seg_file_name"].endswith("_pixels0.png")


def test_irstd1k_split_with_one_available_frame(real_root):
    records = DatasetCatalog.get("irstd1k_train")
    assert len(records) == _count_lines(real_root / "irstd-1k" / "train.txt") == 800
    readable = [r for r in records if "height" in r]
    assert [r["image_id"] for r in readable] == ["XDU0"]
    assert (readable[0]["height"], readable[0]["width"]) == (512, 512)


# ----------------------------------------------------------------------------- instances
def test_sirst_instances_equal_connected_components(real_root):
    total = 0
    for split in ("sirst_train", "sirst_test"):
        records = DatasetCatalog.get(split + "_instances")
        semantic = DatasetCatalog.get(split)
        assert len(records) == len(semantic)
        assert MetadataCatalog.get(split + "_instances").evaluator_type == "coco"
        for rec, sem in zip(records, semantic):
            assert rec["file_stem"] == sem["image_id"] and isinstance(rec["image_id"], int)
            shape = (rec["height"], rec["width"])
            n, stats = _components(sem["sem_seg_file_name"], shape)
            if rec["file_stem"] == "Misc_111":  # 592x400 mask of a 325x220 image
                assert rec["ir_error_kind"] == "size"
                assert "Misc_111_pixels0.png" in rec["ir_error"]
                assert "Misc_111.png" in rec["ir_error"] and "sirst_test" in rec["ir_error"]
            else:
                assert "ir_error" not in rec
            assert len(rec["annotations"]) == n
            got = []
            for a in rec["annotations"]:
                assert a["bbox_mode"] == BoxMode.XYWH_ABS and a["category_id"] == 0
                m = mask_util.decode(a["segmentation"])
                assert m.shape == shape and m.sum() == a["area"]
                got.append([int(v) for v in a["bbox"]] + [a["area"]])
            assert sorted(got) == stats
            total += n
    assert total == 533  # docs/datasets.md's count of SIRST's 8-connected targets


def test_nudt_instances_equal_connected_components(real_root):
    records = DatasetCatalog.get("nudt_sirst_test_instances")
    assert len(records) == 664
    counts = [len(r["annotations"]) for r in records]
    independent = [
        _components(real_root / "nudt-sirst" / "masks" / f"{r['file_stem']}.png")[0]
        for r in records
    ]
    assert counts == independent
    assert min(counts) >= 1 and max(counts) <= 4  # none empty, up to 4 per image


def test_loading_writes_nothing(real_root):
    before = _snapshot(real_root / "sirst")
    DatasetCatalog.get("sirst_427_val_instances")
    DatasetCatalog.get("sirst_427_val")
    assert _snapshot(real_root / "sirst") == before


# ----------------------------------------------------------------------------- synthetic
def test_synthetic_set_is_deterministic_and_counts_match(synthetic_cache, monkeypatch, tmp_path):
    folder = Path(build_synthetic_set())
    assert str(folder).startswith(str(synthetic_cache))
    records = DatasetCatalog.get("ir_synthetic_train_instances")
    assert len(records) == 160 and len(DatasetCatalog.get("ir_synthetic_test")) == 40
    assert MetadataCatalog.get("ir_synthetic_train").synthetic is True
    targets = json.loads((folder / "targets.json").read_text())["targets"]
    for r in records:
        expected = targets[r["file_stem"]]
        n, _ = _components(folder / "masks" / f"{r['file_stem']}.png")
        assert len(r["annotations"]) == len(expected) == n
        centres = sorted(
            tuple(np.round(np.argwhere(mask_util.decode(a["segmentation"])).mean(0)[::-1], 6))
            for a in r["annotations"]
        )
        assert centres == sorted(tuple(np.round(t["centroid"], 6)) for t in expected)
    assert sum(1 for r in records if not r["annotations"]) > 0  # background-only frames
    # background frames survive FILTER_EMPTY_ANNOTATIONS False; semantic sets are never filtered
    kept = get_detection_dataset_dicts(["ir_synthetic_train_instances"], filter_empty=False)
    assert len(kept) == 160
    assert len(get_detection_dataset_dicts(["ir_synthetic_train"], filter_empty=True)) == 160
    # same seed, another cache folder: byte-identical files; another seed: different frames
    monkeypatch.setenv("IR_D2_CACHE", str(tmp_path))
    again = Path(build_synthetic_set(num_train=4, num_test=2))
    assert again == Path(synthetic_set_dir(num_train=4, num_test=2)) and tmp_path in again.parents
    monkeypatch.setenv("IR_D2_CACHE", str(tmp_path / "b"))
    other = Path(build_synthetic_set(num_train=4, num_test=2))
    for sub in ("images/synth_00000.png", "masks/synth_00005.png", "train.txt", "targets.json"):
        assert (again / sub).read_bytes() == (other / sub).read_bytes()
    seed1 = Path(build_synthetic_set(seed=1, num_train=4, num_test=2))
    a = np.asarray(Image.open(again / "images/synth_00000.png"))
    b = np.asarray(Image.open(seed1 / "images/synth_00000.png"))
    assert a.shape == b.shape == (256, 256) and not np.array_equal(a, b)


# ----------------------------------------------------------------------------- COCO json
def _coco_json(path):
    images = [
        {"id": 7, "file_name": "a.png", "height": 32, "width": 40},
        {"id": 9, "file_name": "b.png", "height": 32, "width": 40},
    ]
    categories = [  # ids and order differ from the thing_classes order
        {"id": 3, "name": "UAV"},
        {"id": 5, "name": "person"},
        {"id": 8, "name": "dog"},
        {"id": 11, "name": "car"},
    ]
    boxes = [
        (7, 3, [1, 2, 5, 6]),
        (7, 5, [10, 2, 4, 9]),
        (7, 8, [3, 3, 3, 3]),  # dog: not a thing class
        (9, 11, [0, 0, 12, 7]),
        (9, 5, [5, 5, 0, 4]),  # zero width
    ]
    annotations = [
        {
            "id": i + 1,
            "image_id": im,
            "category_id": c,
            "bbox": b,
            "area": b[2] * b[3],
            "iscrowd": 0,
        }
        for i, (im, c, b) in enumerate(boxes)
    ]
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )


def test_register_ir_coco_instances_maps_by_name_and_drops_zero_area(tmp_path, caplog):
    _coco_json(tmp_path / "instances.json")
    name = "tmp_ir_coco_test_set"
    register_ir_coco_instances(
        name, str(tmp_path / "instances.json"), str(tmp_path), thing_classes=IR_COCO_CLASSES
    )
    try:
        meta = MetadataCatalog.get(name)
        assert meta.thing_classes == ["person", "car", "bicycle", "uav"]
        assert meta.evaluator_type == "coco" and len(meta.thing_colors) == 4
        with caplog.at_level(logging.WARNING, logger="ir_d2"):
            records = DatasetCatalog.get(name)
        assert "dropped 1 zero-area boxes" in caplog.text and name in caplog.text
        assert "bicycle" in caplog.text  # a thing class the json lacks
        by_image = {r["image_id"]: r for r in records}
        assert set(by_image) == {7, 9}
        assert by_image[7]["file_name"] == str(tmp_path / "a.png")
        got = {
            im: [(a["category_id"], a["bbox"]) for a in r["annotations"]]
            for im, r in by_image.items()
        }
        assert got == {7: [(3, [1, 2, 5, 6]), (0, [10, 2, 4, 9])], 9: [(1, [0, 0, 12, 7])]}
        assert all(r["dataset_name"] == name for r in records)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_masks_to_coco_cli_matches_the_instance_set(real_root, tmp_path, capsys):
    sirst = real_root / "sirst"
    before = _snapshot(sirst)
    out = tmp_path / "out" / "sirst_train.json"
    coco = masks_to_coco(
        [
            str(sirst / "images"),
            str(sirst / "masks"),
            str(out),
            "--split",
            str(sirst / "50_50/train.txt"),
        ]
    )
    assert "213 images, 270 instances" in capsys.readouterr().out
    assert coco == json.loads(out.read_text())
    assert _snapshot(sirst) == before
    coco = json.loads(out.read_text())
    assert [c["name"] for c in coco["categories"]] == ["target"]
    name = "tmp_sirst_train_from_cli"
    register_ir_coco_instances(name, str(out), str(sirst / "images"))  # its class from the json
    try:
        cli = {Path(r["file_name"]).stem: r for r in DatasetCatalog.get(name)}
        for r in DatasetCatalog.get("sirst_train_instances"):
            a = sorted(x["bbox"] for x in r["annotations"])
            b = sorted(x["bbox"] for x in cli[r["file_stem"]]["annotations"])
            assert a == b and cli[r["file_stem"]]["height"] == r["height"]
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    # the mismatched SIRST mask is an error naming both files
    bad_split = tmp_path / "bad.txt"
    bad_split.write_text("Misc_1\r\nMisc_111\r\n")
    with pytest.raises(CommandLineError) as e:
        masks_to_coco(
            [
                str(sirst / "images"),
                str(sirst / "masks"),
                str(tmp_path / "x.json"),
                "--split",
                str(bad_split),
            ]
        )
    err = str(e.value)
    assert "Misc_111_pixels0.png" in err and "Misc_111.png" in err and "\n" not in err
    assert not (tmp_path / "x.json").exists()


def test_coco_evaluator_scores_the_ground_truth_100(real_root, tmp_path):
    """COCOEvaluator reads the instance sets (RLE masks, extra keys) and scores GT as 100 AP."""
    from detectron2.evaluation import COCOEvaluator
    from detectron2.structures import Boxes, Instances

    name = "sirst_427_val_instances"
    records = DatasetCatalog.get(name)
    evaluator = COCOEvaluator(name, output_dir=str(tmp_path), distributed=False)
    evaluator.reset()
    for r in records:
        h, w = r["height"], r["width"]
        inst = Instances((h, w))
        annos = r["annotations"]
        xyxy = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in annos]
        inst.pred_boxes = Boxes(torch.tensor(xyxy, dtype=torch.float32).reshape(-1, 4))
        inst.scores = torch.ones(len(annos))
        inst.pred_classes = torch.zeros(len(annos), dtype=torch.int64)
        masks = [mask_util.decode(a["segmentation"]) for a in annos]
        inst.pred_masks = torch.as_tensor(np.array(masks, dtype=bool).reshape(-1, h, w))
        evaluator.process([{"image_id": r["image_id"]}], [{"instances": inst}])
    results = evaluator.evaluate()
    assert results["bbox"]["AP"] == pytest.approx(100.0)
    assert results["segm"]["AP"] == pytest.approx(100.0)
    assert not any((real_root / "sirst").rglob("*.json"))  # the COCO conversion went to tmp_path
