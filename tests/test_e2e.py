"""
End-to-end runs of the training entry point on real IR frames (train, evaluate, predict):
train a few iterations, evaluate the checkpoint with --eval-only, resume, and predict on a real
FLIR frame with DefaultPredictor and IRPredictor.
"""

import json
import os

import cv2
import numpy as np
import pytest
import torch
from conftest import CONFIGS, shared_data_dir
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import DefaultPredictor

from ir_d2.engine import IRPredictor
from ir_d2.engine.defaults import WeightsUnavailableError, setup_cfg
from ir_d2.engine.trainer import IRTrainer
from ir_d2.tools import train_net
from ir_d2.utils.cli import CommandLineError

INSTANCE_CFG = str(
    CONFIGS
    / "quick_schedules"
    / "mask_rcnn-focal_siou-bce_dice_lovasz_R_50_BNSA-C3C4_FPN_sirst_instant_test.yaml"
)
IRSTD_CFG = str(CONFIGS / "quick_schedules" / "irstd_unet_sirst_instant_test.yaml")
N_EVAL = 12  # frames of the test split evaluated (CPU time); the first N of the official list


@pytest.fixture(scope="module", autouse=True)
def real_sirst():
    """Point the built-in datasets at ../shared/data and register small test subsets."""
    root = shared_data_dir("sirst").parent
    old = os.environ.get("IR_D2_DATASETS")
    os.environ["IR_D2_DATASETS"] = str(root)
    for name in ("sirst_test_instances", "sirst_test"):
        mini = f"{name}_first{N_EVAL}"
        if mini not in DatasetCatalog:
            DatasetCatalog.register(mini, lambda n=name: DatasetCatalog.get(n)[:N_EVAL])
            meta = MetadataCatalog.get(name).as_dict()
            meta.pop("name")
            MetadataCatalog.get(mini).set(**meta)
    yield root
    if old is None:
        os.environ.pop("IR_D2_DATASETS", None)
    else:
        os.environ["IR_D2_DATASETS"] = old


def _run(config_file, out_dir, *extra, eval_only=False, resume=False):
    argv = ["--config-file", config_file]
    argv += ["--eval-only"] if eval_only else []
    argv += ["--resume"] if resume else []
    argv += ["OUTPUT_DIR", str(out_dir), "SEED", "7", *map(str, extra)]
    return train_net.main(train_net.get_parser().parse_args(argv))


@pytest.fixture(scope="module")
def instance_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mask_rcnn")
    _run(INSTANCE_CFG, out, "DATASETS.TEST", f"('sirst_test_instances_first{N_EVAL}',)")
    return out


@pytest.fixture(scope="module")
def irstd_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("irstd")
    _run(IRSTD_CFG, out, "DATASETS.TEST", f"('sirst_test_first{N_EVAL}',)")
    return out


def _metrics(out_dir):
    with open(out_dir / "metrics.json") as f:
        return [json.loads(line) for line in f]


def test_instance_training_then_eval_only_gives_bbox_and_segm_ap(instance_run):
    # training logged every loss of the paper's heads, finite, up to the last iteration
    records = [r for r in _metrics(instance_run) if "total_loss" in r]
    assert records[-1]["iteration"] == 5
    for key in ("loss_box_reg", "loss_mask", "loss_cls", "mask_rcnn/loss_mask_lovasz"):
        assert np.isfinite(records[-1][key]), key
    ckpt = torch.load(instance_run / "model_final.pth", map_location="cpu", weights_only=False)
    assert ckpt["iteration"] == 5
    assert any("bnsa_res3" in k for k in ckpt["model"])

    results = _run(
        INSTANCE_CFG,
        instance_run,
        "MODEL.WEIGHTS",
        instance_run / "model_final.pth",
        "DATASETS.TEST",
        f"('sirst_test_instances_first{N_EVAL}',)",
        eval_only=True,
    )
    for task in ("bbox", "segm"):
        assert {"AP", "AP50", "AP75", "Recall"} <= set(results[task])
        assert all(0.0 <= results[task][k] <= 100.0 for k in ("AP", "AP50", "AP75"))
        assert 0.0 <= results[task]["Recall"] <= 1.0  # the paper's 0-1 scale
    assert (instance_run / "inference" / f"sirst_test_instances_first{N_EVAL}").is_dir()


def test_irstd_training_then_eval_only_gives_iou_niou_pd_fa(irstd_run):
    ckpt = torch.load(irstd_run / "model_final.pth", map_location="cpu", weights_only=False)
    assert ckpt["iteration"] == 5
    results = _run(
        IRSTD_CFG,
        irstd_run,
        "MODEL.WEIGHTS",
        irstd_run / "model_final.pth",
        "DATASETS.TEST",
        f"('sirst_test_first{N_EVAL}',)",
        eval_only=True,
    )
    r = results["irstd"]
    assert {"IoU", "nIoU", "Pd", "Fa", "F1"} <= set(r)
    assert 0.0 <= r["IoU"] <= 100.0 and 0.0 <= r["nIoU"] <= 100.0 and 0.0 <= r["Pd"] <= 100.0
    assert r["Fa"] >= 0.0
    saved = json.loads(
        (
            irstd_run / "inference" / f"sirst_test_first{N_EVAL}" / "irstd_evaluation.json"
        ).read_text()
    )
    assert saved["num_images"] == N_EVAL and saved["IoU"] == pytest.approx(r["IoU"])


def test_resume_continues_from_the_last_checkpoint_and_loses_nothing(irstd_run, tmp_path):
    # copy the finished run, then resume it with a longer schedule
    out = tmp_path / "resumed"
    out.mkdir()
    for name in ("model_final.pth", "last_checkpoint"):
        (out / name).write_bytes((irstd_run / name).read_bytes())
    saved = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)

    cfg = setup_cfg(IRSTD_CFG, ["OUTPUT_DIR", str(out), "SOLVER.MAX_ITER", 8])
    trainer = IRTrainer(cfg)
    trainer.resume_or_load(resume=True)
    assert trainer.start_iter == saved["iteration"] + 1 == 6
    for k, v in saved["model"].items():
        assert torch.equal(trainer.model.state_dict()[k], v), k
    # Adam's moments and step counts, and the schedule, came back too
    saved_opt = saved["trainer"]["_trainer"]["optimizer"]["state"]
    opt_state = trainer.optimizer.state_dict()["state"]
    assert opt_state and len(opt_state) == len(saved_opt)
    for i, s in saved_opt.items():
        torch.testing.assert_close(opt_state[i]["exp_avg"], s["exp_avg"])
        assert float(opt_state[i]["step"]) == float(s["step"]) == 6
    saved_sched = saved["trainer"]["hooks"]["LRScheduler"]
    assert trainer.scheduler.last_epoch == saved_sched["last_epoch"] == 6

    _run(IRSTD_CFG, out, "SOLVER.MAX_ITER", 8, resume=True)
    final = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)
    assert final["iteration"] == 7
    iterations = [r["iteration"] for r in _metrics(out) if "total_loss" in r]
    assert iterations and min(iterations) >= 6  # nothing trained twice


def test_missing_weights_stop_with_one_line(tmp_path):
    with pytest.raises(CommandLineError) as e:
        _run(IRSTD_CFG, tmp_path, "MODEL.WEIGHTS", tmp_path / "nope.pth")
    message = str(e.value)
    assert "\n" not in message and "nope.pth" in message and "MODEL.WEIGHTS" in message
    assert message.startswith("train_net: ") and e.value.code == message
    assert isinstance(e.value.__cause__, WeightsUnavailableError)  # an OSError in the library


def _flir_frame():
    frames = sorted(shared_data_dir("roadscene-thermal").glob("*.png"))
    gray = cv2.imread(str(frames[0]), cv2.IMREAD_UNCHANGED)
    assert gray.ndim == 2 and gray.dtype == np.uint8 and gray.shape == (512, 640)
    return gray


def test_saved_instance_model_predicts_on_a_real_flir_frame(instance_run):
    gray = _flir_frame()
    cfg = setup_cfg(INSTANCE_CFG, ["MODEL.WEIGHTS", str(instance_run / "model_final.pth")])
    plain = DefaultPredictor(cfg)(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))["instances"]
    ir = IRPredictor(cfg)(gray)["instances"]
    assert plain.image_size == ir.image_size == (512, 640)
    assert len(plain) == len(ir) > 0
    torch.testing.assert_close(ir.scores, plain.scores)
    torch.testing.assert_close(ir.pred_boxes.tensor, plain.pred_boxes.tensor)
    assert ir.pred_masks.shape == (len(ir), 512, 640)
    # a 16-bit radiometric version of the same frame goes through IRPredictor as well
    hot = IRPredictor(cfg)(gray.astype(np.uint16) * 64 + 1000)["instances"]
    assert hot.image_size == (512, 640)


def test_saved_irstd_model_predicts_on_a_real_flir_frame(irstd_run):
    gray = _flir_frame()
    cfg = setup_cfg(IRSTD_CFG, ["MODEL.WEIGHTS", str(irstd_run / "model_final.pth")])
    plain = DefaultPredictor(cfg)(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    ir = IRPredictor(cfg)(gray)
    assert plain["sem_seg"].shape == ir["sem_seg"].shape == (1, 512, 640)
    torch.testing.assert_close(ir["sem_seg"], plain["sem_seg"])
    prob = ir["sem_seg"][0].numpy()
    assert prob.min() >= 0.0 and prob.max() <= 1.0
    for t in ir["targets"]:
        x, y = t["centroid"]
        assert 0 <= x < 640 and 0 <= y < 512 and t["area"] >= 1 and t["score"] > 0.5


def test_demo_writes_overlays_for_both_model_kinds(instance_run, irstd_run, tmp_path):
    from ir_d2.tools import demo
    from ir_d2.utils.visualizer import draw_small_targets

    frame = sorted(shared_data_dir("roadscene-thermal").glob("*.png"))[0]
    gray = cv2.imread(str(frame), cv2.IMREAD_UNCHANGED)
    written = {}
    for cfg_file, run in ((INSTANCE_CFG, instance_run), (IRSTD_CFG, irstd_run)):
        out = tmp_path / run.name
        written[cfg_file] = demo.main(
            [
                "--config-file",
                cfg_file,
                "--input",
                str(frame),
                "--output",
                str(out),
                "--confidence-threshold",
                "0.0",
                "--opts",
                "MODEL.WEIGHTS",
                str(run / "model_final.pth"),
            ]
        )
        assert written[cfg_file] == [str(out / f"{frame.stem}.png")]
    # instances at score threshold 0: masks and boxes are drawn over the frame
    overlay = cv2.imread(written[INSTANCE_CFG][0])
    assert overlay.shape == (512, 640, 3)
    assert np.abs(overlay.astype(int) - gray[..., None].astype(int)).mean() > 1.0
    # small targets: exactly the heat-map and markers of the model's own output
    cfg = setup_cfg(
        IRSTD_CFG,
        ["MODEL.WEIGHTS", str(irstd_run / "model_final.pth"), "MODEL.IRSTD.THRESHOLD", 0.0],
    )
    pred = IRPredictor(cfg)(gray)
    expected = draw_small_targets(
        cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), pred["sem_seg"][0].numpy(), pred["targets"]
    )
    np.testing.assert_array_equal(cv2.imread(written[IRSTD_CFG][0]), expected)


def test_demo_names_a_missing_input(tmp_path):
    from ir_d2.tools import demo

    with pytest.raises(SystemExit, match="nothing_here"):
        demo.main(
            [
                "--config-file",
                IRSTD_CFG,
                "--input",
                str(tmp_path / "nothing_here"),
                "--output",
                str(tmp_path / "out"),
            ]
        )


def test_analysis_tool_reports_params_flops_fps():
    from ir_d2.tools import analyze_model

    r = analyze_model.main(
        ["--config-file", IRSTD_CFG, "--height", "64", "--width", "64", "--runs", "1"]
    )
    cfg = setup_cfg(IRSTD_CFG, ["MODEL.WEIGHTS", ""])
    model = IRTrainer.build_model(cfg)
    assert r["params_M"] == pytest.approx(sum(p.numel() for p in model.parameters()) / 1e6)
    assert r["gflops"] > 0 and r["fps"] > 0
