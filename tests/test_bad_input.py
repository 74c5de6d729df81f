"""
Bad input that used to go wrong: each gives one line naming the file, key or flag, or is handled
without silently losing or inventing data.
"""

import json
import logging
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from conftest import CONFIGS, REPO_ROOT, write_irstd_folder
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import DefaultPredictor

from ir_d2.data import IRDataError, load_ir_coco_json, register_irstd
from ir_d2.engine import IRPredictor
from ir_d2.engine.defaults import setup_cfg
from ir_d2.engine.predictor import suppress_invalid
from ir_d2.engine.trainer import IRTrainer
from ir_d2.evaluation import IRSTDEvaluator
from ir_d2.tools import train_net
from ir_d2.tools.masks_to_coco import main as masks_to_coco
from ir_d2.utils.cli import CommandLineError

IRSTD_CFG = str(CONFIGS / "quick_schedules" / "irstd_unet_sirst_instant_test.yaml")


@pytest.fixture
def registered():
    """Names registered by a test, removed afterwards."""
    names = []
    yield names
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


# ----------------------------------------------------------------------------- masks
def test_zero_one_masks_follow_one_threshold_everywhere(tmp_path, registered, caplog):
    write_irstd_folder(tmp_path, n=3, mask_values=(0, 1))
    register_irstd("tmp_01_inst", str(tmp_path / "images"), str(tmp_path / "masks"), instances=True)
    registered.append("tmp_01_inst")
    with caplog.at_level(logging.WARNING, logger="ir_d2"):
        setup_cfg(IRSTD_CFG)  # INPUT.IR.MASK_THRESHOLD 127: no instance, and a warning says why
        records = DatasetCatalog.get("tmp_01_inst")
    assert sum(len(r["annotations"]) for r in records) == 0
    assert "INPUT.IR.MASK_THRESHOLD" in caplog.text
    setup_cfg(IRSTD_CFG, ["INPUT.IR.MASK_THRESHOLD", 0])  # the key the warning names
    records = DatasetCatalog.get("tmp_01_inst")
    assert sum(len(r["annotations"]) for r in records) >= 3
    setup_cfg(IRSTD_CFG)  # back to the default for the other tests
    # masks_to_coco: the warning names its own flag, which then works
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ir_d2"):
        masks_to_coco([str(tmp_path / "images"), str(tmp_path / "masks"), str(tmp_path / "a.json")])
    assert "--threshold" in caplog.text
    assert json.loads((tmp_path / "a.json").read_text())["annotations"] == []
    args = [str(tmp_path / "images"), str(tmp_path / "masks"), str(tmp_path / "b.json")]
    masks_to_coco([*args, "--threshold", "0"])
    assert len(json.loads((tmp_path / "b.json").read_text())["annotations"]) >= 3


def test_an_empty_split_list_is_refused_when_loaded_naming_it(tmp_path, registered):
    write_irstd_folder(tmp_path, n=2)
    (tmp_path / "empty.txt").write_text("\r\n")
    register_irstd(
        "tmp_empty_split",
        str(tmp_path / "images"),
        str(tmp_path / "masks"),
        str(tmp_path / "empty.txt"),
    )
    registered.append("tmp_empty_split")
    with pytest.raises(IRDataError, match="empty.txt"):
        DatasetCatalog.get("tmp_empty_split")


def test_masks_to_coco_refuses_a_folder_without_images(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(CommandLineError, match="^masks_to_coco: .*holds no image"):
        masks_to_coco([str(tmp_path / "images"), str(tmp_path / "masks"), str(tmp_path / "o.json")])
    assert not (tmp_path / "o.json").exists()


def test_masks_to_coco_resizes_sirsts_mismatched_mask_when_asked(tmp_path, capsys):
    from conftest import shared_data_dir

    sirst = shared_data_dir("sirst")
    (tmp_path / "split.txt").write_text("Misc_111\n")
    args = [str(sirst / "images"), str(sirst / "masks"), str(tmp_path / "m.json")]
    args += ["--split", str(tmp_path / "split.txt")]
    with pytest.raises(CommandLineError, match="--resize-mismatched"):
        masks_to_coco(args)
    assert len(masks_to_coco([*args, "--resize-mismatched"])["images"]) == 1
    coco = json.loads((tmp_path / "m.json").read_text())
    assert coco["images"][0]["width"] == 325 and coco["annotations"]
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        assert x + w <= 325 and y + h <= 220


# ----------------------------------------------------------------------------- COCO json
@pytest.mark.parametrize("bbox", [[1, 2, 3], "10 10 5 5", [1, 2, "3", 4], [1, 2, float("nan"), 4]])
def test_a_coco_json_with_a_bad_bbox_names_the_file_and_the_annotation(tmp_path, bbox):
    (tmp_path / "a.png").write_bytes(b"")
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "height": 8, "width": 8}],
        "annotations": [
            {
                "id": 41,
                "image_id": 1,
                "category_id": 1,
                "bbox": [0, 0, 2, 2],
                "area": 4,
                "iscrowd": 0,
            },
            {"id": 42, "image_id": 1, "category_id": 1, "bbox": bbox, "area": 4, "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "person"}],
    }
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(coco))
    with pytest.raises(IRDataError) as e:
        load_ir_coco_json(str(path), str(tmp_path), "tmp_bad_bbox")
    message = str(e.value)
    assert "bad.json" in message and "annotation id 42" in message and "\n" not in message


def test_a_coco_json_without_images_is_refused(tmp_path):
    path = tmp_path / "none.json"
    path.write_text(
        json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "x"}]})
    )
    with pytest.raises(IRDataError, match="none.json.*no image"):
        load_ir_coco_json(str(path), str(tmp_path), "tmp_no_images")


# ----------------------------------------------------------------------------- bad samples
def _bad_frames(tmp_path, registered, n_bad, n=4):
    write_irstd_folder(tmp_path, n=n)
    for name in sorted((tmp_path / "images").iterdir())[:n_bad]:
        name.write_bytes(b"corrupt")
    name = f"tmp_bad_{n_bad}"
    register_irstd(
        name, str(tmp_path / "images"), str(tmp_path / "masks"), str(tmp_path / "train.txt")
    )
    registered.append(name)
    return name


def test_skip_bad_samples_with_every_frame_bad_stops_with_one_line(tmp_path, registered):
    name = _bad_frames(tmp_path, registered, n_bad=4)
    argv = [
        "--config-file",
        IRSTD_CFG,
        "OUTPUT_DIR",
        str(tmp_path / "out"),
        "DATALOADER.SKIP_BAD_SAMPLES",
        "True",
    ]
    argv += ["DATASETS.TRAIN", f"('{name}',)", "INPUT.IR.CROP_SIZE", "[64, 64]"]
    with pytest.raises(CommandLineError) as e:
        train_net.main(train_net.get_parser().parse_args(argv))
    assert "all 4 training samples failed" in str(e.value) and "\n" not in str(e.value)


def test_skipped_test_frames_are_counted_never_replaced(tmp_path, registered, caplog):
    name = _bad_frames(tmp_path, registered, n_bad=1)
    cfg = setup_cfg(IRSTD_CFG, ["DATALOADER.SKIP_BAD_SAMPLES", True, "MODEL.WEIGHTS", ""])
    loader = IRTrainer.build_test_loader(cfg, name)
    seen = [x["file_name"] for batch in loader for x in batch]
    assert len(seen) == 3 and len(set(seen)) == 3  # the bad one left out, no substitute
    model = IRTrainer.build_model(cfg).eval()
    evaluator = IRSTDEvaluator(name, str(tmp_path / "eval"), distributed=False)
    from detectron2.evaluation import inference_on_dataset

    with caplog.at_level(logging.WARNING, logger="ir_d2"):
        inference_on_dataset(model, loader, evaluator)
    report = json.loads((tmp_path / "eval/irstd_evaluation.json").read_text())
    assert report["num_images"] == 3 and report["num_skipped"] == 1
    assert "3 of 4 frames were evaluated" in caplog.text


# ----------------------------------------------------------------------------- options
def test_a_non_positive_batch_is_one_line_naming_the_key(tmp_path):
    for value in ("0", "-2"):
        argv = [
            "--config-file",
            IRSTD_CFG,
            "OUTPUT_DIR",
            str(tmp_path),
            "SOLVER.IMS_PER_BATCH",
            value,
        ]
        with pytest.raises(CommandLineError) as e:
            train_net.main(train_net.get_parser().parse_args(argv))
        assert "SOLVER.IMS_PER_BATCH must be > 0" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("flag", ["--height", "--width", "--runs"])
def test_analyze_model_refuses_a_non_positive_size_or_count(flag):
    run = subprocess.run(
        [sys.executable, "-m", "ir_d2.tools.analyze_model", "--config-file", IRSTD_CFG, flag, "0"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2 and f"{flag} must be > 0" in run.stderr
    assert "Traceback" not in run.stderr


# ----------------------------------------------------------------------------- predictors
def test_irpredictor_reports_nothing_in_or_beside_nan_pixels(caplog):
    cfg = setup_cfg(IRSTD_CFG, ["MODEL.WEIGHTS", "", "MODEL.IRSTD.THRESHOLD", 0.0])
    predictor = IRPredictor(cfg)
    rng = np.random.default_rng(0)
    frame = rng.normal(300.0, 5.0, (64, 80))
    frame[20:30, 30:45] = np.nan
    frame[0, 0] = np.inf
    with caplog.at_level(logging.WARNING, logger="ir_d2"):
        out = predictor(frame)
        predictor(frame)
    warnings = [r.getMessage() for r in caplog.records if "NaN/inf" in r.getMessage()]
    assert len(warnings) == 1 and "151 NaN/inf pixels" in warnings[0]  # 150 NaN + 1 inf
    # threshold 0: everything is a target but what touches the invalid pixels' 3-pixel rim
    prob = out["sem_seg"][0].numpy()
    assert (prob[17:33, 27:48] == 0).all() and (prob[:4, :4] == 0).all()
    for t in out["targets"]:
        x, y = t["centroid"]
        assert not (17 <= y < 33 and 27 <= x < 48)
    # the filled pixels carry the median of the valid ones: no artificial edge in the input
    shown, invalid = predictor.prepare(frame)
    valid = frame[np.isfinite(frame)]
    assert invalid.sum() == 151
    assert abs(int(shown[25, 35, 0]) - int(np.median(shown[..., 0][~invalid]))) <= 1
    assert np.isfinite(valid).all()


def test_suppress_invalid_drops_whole_components_touching_the_rim():
    prob = np.zeros((20, 20), np.float32)
    prob[2:5, 2:5] = 0.9  # pixel (4, 3) is 3 pixels from the invalid (7, 3): touches the rim
    prob[14:17, 14:17] = 0.8  # far away: kept whole
    prob[2:5, 10:13] = 0.7  # nearest pixel (4, 10): sqrt(9 + 49) > 3 from (7, 3): kept
    invalid = np.zeros((20, 20), bool)
    invalid[7, 3] = True
    out = suppress_invalid({"sem_seg": torch.from_numpy(prob)[None]}, invalid, 3, 0.5)
    kept = out["sem_seg"][0].numpy()
    assert (kept[2:5, 2:5] == 0).all()  # the whole component, not only its touching pixel
    assert (kept[14:17, 14:17] == 0.8).all() and (kept[2:5, 10:13] == 0.7).all()
    assert sorted(t["centroid"] for t in out["targets"]) == [(11.0, 3.0), (15.0, 15.0)]
    assert (kept[7, :] == 0).all()  # the rim itself holds no probability


def test_defaultpredictor_with_a_16bit_frame_is_refused_by_the_segmentor():
    cfg = setup_cfg(IRSTD_CFG, ["MODEL.WEIGHTS", ""])
    frame16 = np.full((48, 48, 3), 12000, np.uint16)
    with pytest.raises(ValueError, match="IRPredictor"):
        DefaultPredictor(cfg)(frame16)
    # the 8-bit frame and IRPredictor both work
    assert DefaultPredictor(cfg)(cv2.convertScaleAbs(frame16, alpha=1 / 256))["sem_seg"].shape == (
        1,
        48,
        48,
    )
    assert IRPredictor(cfg)(frame16[..., 0])["sem_seg"].shape == (1, 48, 48)


def test_map_dataset_substitutes_until_no_sample_is_left():
    """IRMapDataset changes only the random source of detectron2's MapDataset: this fails when
    the pinned detectron2's line that draws a substitute changes."""
    import inspect

    from detectron2.data.common import DatasetFromList, MapDataset

    from ir_d2.data.build import IRMapDataset

    line = "cur_idx = self._rng.sample(list(self._fallback_candidates), k=1)[0]"
    assert line in inspect.getsource(MapDataset.__getitem__)
    bad = {1, 3}
    dataset = IRMapDataset(
        DatasetFromList(list(range(5)), copy=False), lambda x: None if x in bad else x
    )
    assert [dataset[i] for i in (0, 2, 4)] == [0, 2, 4]
    assert dataset[1] in {0, 2, 4} and dataset[3] in {0, 2, 4}  # substitutes, never a bad one
    never = IRMapDataset(DatasetFromList(list(range(4)), copy=False), lambda x: None)
    with pytest.raises(IRDataError, match="all 4 training samples failed"):
        never[0]
