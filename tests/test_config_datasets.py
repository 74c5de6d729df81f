"""
One's own data from a YAML file alone (DATASETS.IR_REGISTER): COCO json, image/mask folders and
subsets registered by train_net, trained and evaluated; errors name the key.
"""

import json

import pytest
from conftest import remove_datasets, write_user_project
from detectron2.data import DatasetCatalog, MetadataCatalog

from ir_d2.engine.defaults import setup_cfg
from ir_d2.tools import train_net
from ir_d2.utils.cli import CommandLineError


@pytest.fixture
def user_data(tmp_path, monkeypatch):
    """A user's project folder: frames, masks, a split list and a COCO json, cwd set to it."""
    names = write_user_project(tmp_path, n=6)
    monkeypatch.chdir(tmp_path)
    yield tmp_path, names
    remove_datasets("my_")


def _train(config, out, *extra, eval_only=False):
    argv = ["--config-file", str(config), *(["--eval-only"] if eval_only else [])]
    argv += ["OUTPUT_DIR", str(out), *map(str, extra)]
    return train_net.main(train_net.get_parser().parse_args(argv))


SMALL_TARGET_YAML = """\
_BASE_: "ir_d2://quick_schedules/irstd_unet_sirst_instant_test.yaml"
DATASETS:
  TRAIN: ("my_targets",)
  TEST: ("my_targets_first3",)
  IR_REGISTER:
    my_targets:
      TYPE: "irstd"
      IMAGES: "data/images"
      MASKS: "data/masks"
      SPLIT: "data/train.txt"
    my_targets_first3:
      TYPE: "subset"
      DATASET: "my_targets"
      FIRST: 3
INPUT:
  IR:
    CROP_SIZE: [64, 64]
SOLVER:
  IMS_PER_BATCH: 2
  MAX_ITER: 2
"""


def test_a_yaml_alone_trains_and_evaluates_a_small_target_net_on_ones_own_folders(user_data):
    root, names = user_data
    (root / "mine.yaml").write_text(SMALL_TARGET_YAML)
    _train(root / "mine.yaml", root / "out")
    assert (root / "out/model_final.pth").is_file()
    log = (root / "out/log.txt").read_text()  # ir_d2's own lines reach log.txt, as detectron2's
    assert "[IRSTDDatasetMapper] Augmentations used in training" in log
    saved = (root / "out/config.yaml").read_text()
    assert str(root / "data/images") in saved  # absolute paths: the saved config works anywhere
    results = _train(
        root / "out/config.yaml",
        root / "out",
        "MODEL.WEIGHTS",
        root / "out/model_final.pth",
        eval_only=True,
    )
    assert {"IoU", "nIoU", "Pd", "Fa", "F1"} <= set(results["irstd"])
    report = json.loads(
        (root / "out/inference/my_targets_first3/irstd_evaluation.json").read_text()
    )
    assert report["num_images"] == 3 and report["num_skipped"] == 0
    assert [r["image_id"] for r in DatasetCatalog.get("my_targets")] == names


def test_eval_only_scores_random_weights_on_purpose_and_a_detector(user_data):
    root, _ = user_data
    (root / "mine.yaml").write_text(SMALL_TARGET_YAML)
    base = ["--config-file", str(root / "mine.yaml"), "--eval-only"]
    with pytest.raises(CommandLineError, match="would score an untrained model"):
        train_net.main(train_net.get_parser().parse_args(base + ["OUTPUT_DIR", str(root / "a")]))
    on_purpose = ["--random-weights", *base, "OUTPUT_DIR", str(root / "b")]
    assert "IoU" in train_net.main(train_net.get_parser().parse_args(on_purpose))["irstd"]
    # a classical detector has no parameters: nothing to load, scored without weights
    tophat = [*base, "OUTPUT_DIR", str(root / "c"), "MODEL.IRSTD.NET", "TopHat"]
    assert "IoU" in train_net.main(train_net.get_parser().parse_args(tophat))["irstd"]


def test_a_yaml_alone_trains_the_mask_rcnn_on_a_coco_json_with_its_own_classes(user_data):
    root, _ = user_data
    (root / "mine.yaml").write_text(
        '_BASE_: "ir_d2://quick_schedules/'
        'mask_rcnn-focal_siou-bce_dice_lovasz_R_50_BNSA-C3C4_FPN_sirst_instant_test.yaml"\n'
        "DATASETS:\n"
        '  TRAIN: ("my_coco",)\n'
        '  TEST: ("my_coco",)\n'
        "  IR_REGISTER:\n"
        '    my_coco: {TYPE: "coco", JSON: "data/ann.json", IMAGES: "data/images", CLASSES: []}\n'
        "INPUT: {MIN_SIZE_TRAIN: [64], MAX_SIZE_TRAIN: 64, MIN_SIZE_TEST: 64, MAX_SIZE_TEST: 64}\n"
        "SOLVER: {MAX_ITER: 2}\n"
    )
    _train(root / "mine.yaml", root / "out")
    assert MetadataCatalog.get("my_coco").thing_classes == ["target"]  # the json's own class
    results = _train(
        root / "mine.yaml",
        root / "out",
        "MODEL.WEIGHTS",
        root / "out/model_final.pth",
        eval_only=True,
    )
    assert {"bbox", "segm"} <= set(results) and "AP" in results["segm"]


@pytest.mark.parametrize(
    "entry, key",
    [
        ({"TYPE": "nope"}, "DATASETS.IR_REGISTER.my_x.TYPE"),
        ({"TYPE": "irstd", "IMAGES": "data/images"}, "DATASETS.IR_REGISTER.my_x.MASKS"),
        (
            {"TYPE": "irstd", "IMAGES": "data/images", "MASKS": "data/nowhere"},
            "DATASETS.IR_REGISTER.my_x.MASKS",
        ),
        ({"TYPE": "coco", "JSON": "data/ann.json", "IMAGES": "data", "EXTRA": 1}, "EXTRA"),
        ({"TYPE": "subset", "DATASET": "my_none", "FIRST": 2}, "DATASET"),
        ({"TYPE": "subset", "DATASET": "sirst_test", "FIRST": 0}, "FIRST"),
    ],
)
def test_a_bad_entry_is_one_line_naming_the_key(user_data, entry, key):
    root, _ = user_data
    (root / "bad.yaml").write_text(
        json.dumps({"DATASETS": {"IR_REGISTER": {"my_x": entry}}})  # JSON is YAML
    )
    with pytest.raises(CommandLineError) as e:
        _train(root / "bad.yaml", root / "out")
    assert key in str(e.value) and "\n" not in str(e.value)


def test_a_builtin_name_cannot_be_registered_again(user_data):
    root, _ = user_data
    spec = {"TYPE": "irstd", "IMAGES": "data/images", "MASKS": "data/masks"}
    (root / "clash.yaml").write_text(
        json.dumps({"DATASETS": {"IR_REGISTER": {"sirst_train": spec}}})
    )
    loader = DatasetCatalog["sirst_train"]
    with pytest.raises(ValueError, match="already registered"):
        setup_cfg(str(root / "clash.yaml"))
    assert DatasetCatalog["sirst_train"] is loader  # the built-in is untouched
