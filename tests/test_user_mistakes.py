"""
A user's mistakes, each answered by one line that names the key, file or class, and never by a
wrong result: evaluation without weights, float frames in [0, 1], typo'd keys, unknown devices,
missing weights, class lists that match nothing, subsets of sets whose classes come from their
json, masks of another aspect ratio, options in an unexpected order, a bad frame met in training.
"""

import logging

import cv2
import numpy as np
import pytest
import torch
from conftest import CONFIGS, remove_datasets, write_irstd_folder, write_user_project
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import DefaultPredictor

from ir_d2.data import IRDataError, load_ir_coco_json
from ir_d2.engine import IRPredictor
from ir_d2.engine.defaults import setup_cfg
from ir_d2.engine.exported_predictor import _same
from ir_d2.structures import size_mismatch_message
from ir_d2.tools import demo, train_net
from ir_d2.tools.analyze_model import analyze
from ir_d2.utils.cli import CommandLineError, move_config_pairs_to_end, quiet_training_errors

IRSTD_CFG = str(CONFIGS / "quick_schedules" / "irstd_unet_sirst_instant_test.yaml")


def _one_line(e) -> str:
    text = str(e.value)
    assert "\n" not in text and "Traceback" not in text
    return text


# ------------------------------------------------------------------------------- config
def test_a_typo_in_a_command_line_key_is_one_line_with_the_closest_key(tmp_path):
    with pytest.raises(ValueError) as e:
        setup_cfg(IRSTD_CFG, ["SOLVER.MAX_ITR", 5])
    assert str(e.value) == (
        "config override: unknown config key SOLVER.MAX_ITR (did you mean SOLVER.MAX_ITER?)"
    )
    argv = ["--config-file", IRSTD_CFG, "OUTPUT_DIR", str(tmp_path), "SOLVER.MAX_ITR", "5"]
    with pytest.raises(CommandLineError) as e:
        train_net.main(train_net.get_parser().parse_args(argv))
    assert "unknown config key SOLVER.MAX_ITR" in _one_line(e)


def test_a_typo_in_a_yaml_key_names_the_file_and_the_key(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text(f'_BASE_: "{IRSTD_CFG}"\nSOLVER:\n  MAX_ITR: 5\n')
    with pytest.raises(ValueError) as e:
        setup_cfg(str(mine))
    assert str(e.value) == (
        f"{mine}: unknown config key SOLVER.MAX_ITR (did you mean SOLVER.MAX_ITER?)"
    )
    assert "Non-existent" not in str(e.value)


def test_an_unknown_device_is_refused_naming_the_key():
    with pytest.raises(ValueError, match="MODEL.DEVICE 'gpu' is not a device torch knows"):
        setup_cfg(IRSTD_CFG, ["MODEL.DEVICE", "gpu"])


def test_a_run_saves_its_config_with_an_absolute_output_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = train_net.get_parser().parse_args(["--config-file", IRSTD_CFG, "OUTPUT_DIR", "out"])
    cfg = setup_cfg(args.config_file, ["OUTPUT_DIR", "out"], args=args)
    assert cfg.OUTPUT_DIR == str(tmp_path / "out")
    saved = setup_cfg(str(tmp_path / "out/config.yaml"))
    assert saved.OUTPUT_DIR == str(tmp_path / "out")
    assert "\x1b[" not in (tmp_path / "out/log.txt").read_text()  # no colour codes in the log


def test_eval_only_without_weights_refuses_to_score_an_untrained_model(tmp_path):
    argv = ["--config-file", IRSTD_CFG, "--eval-only", "OUTPUT_DIR", str(tmp_path)]
    with pytest.raises(CommandLineError) as e:
        train_net.main(train_net.get_parser().parse_args(argv))
    text = _one_line(e)
    assert "would score an untrained model" in text and "MODEL.WEIGHTS" in text
    assert "--random-weights" in text and str(tmp_path / "model_final.pth") in text
    # --random-weights and the classical detectors (nothing to load) are scored: see
    # test_config_datasets.py::test_eval_only_scores_random_weights_on_purpose_and_a_detector


# ----------------------------------------------------------------------------- predictors
def test_defaultpredictor_refuses_a_float_frame_scaled_to_one():
    cfg = setup_cfg(IRSTD_CFG, ["MODEL.WEIGHTS", ""])
    frame = np.random.default_rng(0).random((40, 48, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="scaled to \\[0, 1\\].*IRPredictor"):
        DefaultPredictor(cfg)(frame)
    # the same frame in 8 bits, and a dark 8-bit frame given as floats, pass
    assert DefaultPredictor(cfg)((frame * 255).round())["sem_seg"].shape == (1, 40, 48)
    assert DefaultPredictor(cfg)(np.ones((40, 48, 3), np.float32))["sem_seg"].shape == (1, 40, 48)


def test_irpredictor_names_a_missing_weights_file(tmp_path):
    missing = str(tmp_path / "model_final.pth")
    cfg = setup_cfg(IRSTD_CFG, ["MODEL.WEIGHTS", missing])
    with pytest.raises(FileNotFoundError) as e:
        IRPredictor(cfg)
    assert f"MODEL.WEIGHTS {missing!r} (no such file)" in str(e.value)


def test_export_constants_are_compared_up_to_float32_rounding():
    std = [57.375, 57.12, 58.395]
    assert _same([float(np.float32(v)) for v in std], std)
    assert not _same([57.4, 57.12, 58.395], std) and not _same([1.0], [1.0, 1.0])


# ----------------------------------------------------------------------------- datasets
@pytest.fixture
def coco_folder(tmp_path):
    write_user_project(tmp_path, n=4)
    yield tmp_path
    remove_datasets("mistake_")


def test_classes_that_match_no_category_name_both_lists(coco_folder):
    json_file = str(coco_folder / "data/ann.json")
    with pytest.raises(IRDataError) as e:
        load_ir_coco_json(
            json_file, str(coco_folder / "data/images"), "mistake_x", ["person", "car"]
        )
    assert "['person', 'car'] asked for" in str(e.value) and "['target']" in str(e.value)
    assert json_file in str(e.value)


def test_a_subset_of_a_coco_set_with_the_jsons_classes_inherits_them(coco_folder):
    register = {
        "mistake_coco": {
            "TYPE": "coco",
            "JSON": str(coco_folder / "data/ann.json"),
            "IMAGES": str(coco_folder / "data/images"),
            "CLASSES": [],
        },
        "mistake_coco_first2": {"TYPE": "subset", "DATASET": "mistake_coco", "FIRST": 2},
    }
    setup_cfg(IRSTD_CFG, ["DATASETS.IR_REGISTER", register])
    assert len(DatasetCatalog.get("mistake_coco_first2")) == 2
    meta = MetadataCatalog.get("mistake_coco_first2")
    assert meta.thing_classes == ["target"] and meta.evaluator_type == "coco"


def test_a_mask_of_another_aspect_ratio_says_that_no_resizing_helps():
    text = size_mismatch_message("a.png", (256, 256), "a_mask.png", (240, 320), "mine")
    assert "aspect ratios differ (1.000 and 1.333)" in text
    assert "RESIZE_MISMATCHED_MASKS" not in text and "SKIP_BAD_SAMPLES True" in text
    same = size_mismatch_message("a.png", (256, 256), "a_mask.png", (128, 128), "mine")
    assert "RESIZE_MISMATCHED_MASKS True" in same


# ----------------------------------------------------------------------------- tools
def test_config_pairs_before_the_options_move_to_the_end():
    parser = demo.get_parser()
    argv = ["--config-file", "c.yaml", "MODEL.WEIGHTS", "w.pth", "--overwrite", "MODEL.DEVICE"]
    argv += ["cpu", "--input", "a.png", "--output", "out"]
    args = parser.parse_args(move_config_pairs_to_end(argv, parser))
    assert args.input == ["a.png"] and args.output == "out" and args.overwrite
    assert args.opts == ["MODEL.WEIGHTS", "w.pth", "MODEL.DEVICE", "cpu"]


def test_demo_output_naming_a_file_is_one_line(tmp_path):
    write_irstd_folder(tmp_path / "data", n=1)
    frame = next((tmp_path / "data/images").iterdir())
    argv = ["--config-file", IRSTD_CFG, "--input", str(frame), "--output", str(frame)]
    before = frame.read_bytes()
    with pytest.raises(CommandLineError) as e:
        demo.main(argv)
    assert f"--output {frame} is a file" in _one_line(e)
    assert frame.read_bytes() == before


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def test_a_bad_frame_in_training_logs_no_traceback(monkeypatch):
    monkeypatch.delenv("IR_D2_DEBUG", raising=False)
    train_loop = logging.getLogger("detectron2.engine.train_loop")
    seen = _Records()  # detectron2's loggers do not propagate to pytest's caplog
    train_loop.addHandler(seen)

    def fail(error):
        try:
            raise error
        except Exception:
            train_loop.exception("Exception during training:")

    try:
        with quiet_training_errors((IRDataError,)):
            fail(IRDataError("frame 'x.png' cannot be read"))
            fail(RuntimeError("a bug"))
        fail(IRDataError("after the block"))
        monkeypatch.setenv("IR_D2_DEBUG", "1")  # the traceback on demand
        with quiet_training_errors((IRDataError,)):
            fail(IRDataError("debugging"))
    finally:
        train_loop.removeHandler(seen)
    logged = [str(r.exc_info[1]) for r in seen.records]
    assert logged == ["a bug", "after the block", "debugging"]


def test_analyze_model_reports_its_threads_and_spread():
    cfg = setup_cfg(IRSTD_CFG, ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu"])
    r = analyze(cfg, 32, 32, runs=4, warmup=1)
    assert r["threads"] == torch.get_num_threads()
    assert r["ms_q1"] <= r["ms"] <= r["ms_q3"]


def test_a_set_removed_from_the_catalog_is_registered_again_by_the_same_config():
    register = {
        "mistake_syn_first2": {"TYPE": "subset", "DATASET": "ir_synthetic_test", "FIRST": 2}
    }
    setup_cfg(IRSTD_CFG, ["DATASETS.IR_REGISTER", register])
    DatasetCatalog.remove("mistake_syn_first2")  # as a test's clean-up or a user's script does
    setup_cfg(IRSTD_CFG, ["DATASETS.IR_REGISTER", register])
    assert len(DatasetCatalog.get("mistake_syn_first2")) == 2
    remove_datasets("mistake_")


def test_instance_sets_keep_a_resizable_mask_and_flag_one_that_is_not(tmp_path):
    """A mask of another size than its image: resized for its instances when the aspect ratios
    agree ("size": the mappers decide), an error when they differ; both messages name the files."""
    from ir_d2.data.ir_datasets.irstd import load_irstd_instances

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for name, mask_shape in (("half", (32, 32)), ("wide", (40, 80))):
        cv2.imwrite(str(tmp_path / "images" / f"{name}.png"), np.zeros((64, 64), np.uint8))
        mask = np.zeros(mask_shape, np.uint8)
        mask[8:12, 8:12] = 255
        cv2.imwrite(str(tmp_path / "masks" / f"{name}.png"), mask)
    records = load_irstd_instances(
        str(tmp_path / "images"), str(tmp_path / "masks"), None, dataset_name="mine", threshold=127
    )
    by_stem = {r["file_stem"]: r for r in records}
    half, wide = by_stem["half"], by_stem["wide"]
    assert half["ir_error_kind"] == "size" and "half.png" in half["ir_error"]
    assert [a["bbox"] for a in half["annotations"]] == [[16.0, 16.0, 8.0, 8.0]]  # resized x2
    assert wide["ir_error_kind"] == "error" and "aspect ratios differ" in wide["ir_error"]
    assert wide["annotations"] == []
