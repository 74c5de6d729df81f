"""
Several processes on CPU through detectron2's ``launch`` (gloo), as ``train_net.py --num-gpus 2``
runs them: both meta-architectures train to identical weights on every rank, checkpoints are
written once and resumed, naiveSyncBN synchronises the norms, and two-rank evaluation equals
one-rank evaluation for IRSTDEvaluator (masks and instances) and IRCOCOEvaluator.
"""

import json
import logging
import re

import pytest
import torch
from conftest import remove_datasets, write_user_project
from detectron2.engine import launch as d2_launch
from dist_workers import (
    evaluate_fixed_outputs,
    finish_then_abort,
    record_open_group_at_exit,
    train_and_save_rank_state,
)
from torch.multiprocessing import ProcessExitedException

from ir_d2.engine import launch
from ir_d2.tools import train_net


@pytest.fixture
def data(tmp_path):
    """7 synthetic 64x64 frames (an odd number: the two ranks get 4 and 3) as an image/mask
    folder pair and a COCO json; datasets registered from YAML are removed afterwards."""
    write_user_project(tmp_path, n=7, seed=3)
    yield tmp_path
    remove_datasets("dist_")


def _register(root):
    d = root / "data"
    return (
        "  IR_REGISTER:\n"
        f'    dist_masks: {{TYPE: "irstd", IMAGES: "{d}/images", MASKS: "{d}/masks"}}\n'
        f'    dist_coco: {{TYPE: "coco", JSON: "{d}/ann.json", IMAGES: "{d}/images"}}\n'
    )


def _irstd_yaml(root, norm="BN"):
    path = root / f"irstd_{norm}.yaml"
    path.write_text(
        '_BASE_: "ir_d2://quick_schedules/irstd_unet_sirst_instant_test.yaml"\n'
        f'MODEL: {{IRSTD: {{NORM: "{norm}"}}}}\n'
        'DATASETS:\n  TRAIN: ("dist_masks",)\n  TEST: ("dist_masks",)\n'
        + _register(root)
        + "INPUT: {IR: {CROP_SIZE: [48, 48]}}\n"
        "SOLVER: {IMS_PER_BATCH: 4, MAX_ITER: 3, CHECKPOINT_PERIOD: 2}\n"
        f'OUTPUT_DIR: "{root}/out_{norm}"\n'
    )
    return str(path)


def _rcnn_yaml(root):
    path = root / "rcnn.yaml"
    path.write_text(
        '_BASE_: "ir_d2://quick_schedules/'
        'mask_rcnn-focal_siou-bce_dice_lovasz_R_50_BNSA-C3C4_FPN_sirst_instant_test.yaml"\n'
        'MODEL: {BNSA: {NORM: "naiveSyncBN"}, RPN: {POST_NMS_TOPK_TRAIN: 64},'
        " ROI_HEADS: {BATCH_SIZE_PER_IMAGE: 32}}\n"
        'DATASETS:\n  TRAIN: ("dist_coco",)\n  TEST: ("dist_coco",)\n'
        + _register(root)
        + "INPUT: {MIN_SIZE_TRAIN: [64], MAX_SIZE_TRAIN: 64,"
        " MIN_SIZE_TEST: 64, MAX_SIZE_TEST: 64}\n"
        "SOLVER: {IMS_PER_BATCH: 2, MAX_ITER: 2}\n"
        f'OUTPUT_DIR: "{root}/out_rcnn"\n'
    )
    return str(path)


def _rank_states(out, name):
    return [torch.load(out / f"{name}.rank{r}.pth") for r in (0, 1)]


def _norm_buffers(state):
    return {k: v for k, v in state.items() if k.endswith(("running_mean", "running_var"))}


def test_two_cpu_processes_train_the_small_target_net_to_identical_weights(data):
    for norm in ("BN", "naiveSyncBN"):
        launch(
            train_and_save_rank_state,
            2,
            dist_url="auto",
            args=(_irstd_yaml(data, norm), [], "state"),
        )
    for norm in ("BN", "naiveSyncBN"):
        rank0, rank1 = _rank_states(data / f"out_{norm}", "state")
        params = [k for k in rank0 if k not in _norm_buffers(rank0) and "num_batches" not in k]
        assert params and all(torch.equal(rank0[k], rank1[k]) for k in params), norm
        buffers = _norm_buffers(rank0)
        assert buffers
        same = [torch.equal(rank0[k], rank1[k]) for k in buffers]
        if norm == "BN":  # each rank saw its own frames: local statistics differ
            assert not all(same)
        else:  # the statistics are all-reduced over the ranks
            assert all(same)
    # the gradients were averaged: the weights moved from their initialisation
    init = torch.load(data / "out_BN/model_0000001.pth")["model"]
    final = torch.load(data / "out_BN/model_final.pth")["model"]
    assert not torch.equal(init["net.head.weight"], final["net.head.weight"])


def test_two_cpu_processes_train_the_bnsa_mask_rcnn_to_identical_weights(data):
    launch(train_and_save_rank_state, 2, dist_url="auto", args=(_rcnn_yaml(data), [], "state"))
    rank0, rank1 = _rank_states(data / "out_rcnn", "state")
    assert len(rank0) == len(rank1) > 300
    differ = [k for k in rank0 if not torch.equal(rank0[k], rank1[k])]
    assert differ == []  # parameters, and the BNSA blocks' naiveSyncBN statistics
    assert any("bnsa_res3" in k and k.endswith("running_mean") for k in rank0)


def test_train_net_num_gpus_2_on_cpu_checkpoints_once_and_resumes(data):
    config = _irstd_yaml(data)
    out = data / "out_BN"
    train_net.invoke_main(["--num-gpus", "2", "--config-file", config])
    log0, log1 = (out / "log.txt").read_text(), (out / "log.txt.rank1").read_text()
    assert log0.count("Saving checkpoint to") == 2  # model_0000001 and model_final, by rank 0
    assert "Saving checkpoint to" not in log1
    assert sorted(p.name for p in out.glob("*.pth")) == ["model_0000001.pth", "model_final.pth"]
    assert torch.load(out / "model_final.pth")["iteration"] == 2

    train_net.invoke_main(["--num-gpus", "2", "--config-file", config, "--resume"])
    assert torch.load(out / "model_final.pth")["iteration"] == 2  # finished: nothing to do

    train_net.invoke_main(
        ["--num-gpus", "2", "--config-file", config, "--resume", "SOLVER.MAX_ITER", "5"]
    )
    starts = re.findall(r"Starting training from iteration (\d+)", (out / "log.txt").read_text())
    assert starts[-1] == "3"
    assert torch.load(out / "model_final.pth")["iteration"] == 4
    assert (out / "model_0000003.pth").is_file()


def test_two_rank_evaluation_equals_one_rank_evaluation(data):
    small_targets, detector = _irstd_yaml(data), _rcnn_yaml(data)  # the latter: score thresh 0
    runs = [
        (small_targets, "dist_masks", "sem_seg", "IRSTDDatasetMapper"),
        (detector, "dist_masks", "mask_instances", "IRSTDDatasetMapper"),
        (detector, "dist_coco", "coco", "IRDatasetMapper"),
    ]
    launch(evaluate_fixed_outputs, 1, args=(runs, str(data / "one.json")))
    launch(evaluate_fixed_outputs, 2, dist_url="auto", args=(runs, str(data / "two.json")))
    one = json.loads((data / "one.json").read_text())
    two = json.loads((data / "two.json").read_text())
    assert one.keys() == two.keys() == {f"{r[1]}/{r[2]}" for r in runs}
    for run in one:
        for task, metrics in one[run].items():
            for name, value in metrics.items():
                assert two[run][task][name] == pytest.approx(
                    value, rel=1e-12, abs=1e-12, nan_ok=True
                ), (
                    run,
                    task,
                    name,
                )
    # non-trivial figures, so the equality says something
    masks = one["dist_masks/sem_seg"]["irstd"]
    assert 5 < masks["IoU"] < 95 and 0 < masks["Pd"] <= 100 and masks["Fa"] > 0
    instances = one["dist_masks/mask_instances"]["irstd"]
    assert instances["Pd"] == 100.0 and instances["Fa"] > 0  # every target, plus false squares
    assert 5 < one["dist_coco/coco"]["segm"]["AP"] < 95


def test_each_rank_closes_its_process_group_before_it_exits(tmp_path):
    """detectron2's workers exit with gloo still open, and a peer reading from a closed socket
    aborts (SIGABRT) after a job that succeeded; ir_d2's launch closes the group first."""
    launch(record_open_group_at_exit, 2, dist_url="auto", args=(str(tmp_path / "open"),))
    assert [(tmp_path / f"open.rank{r}").read_text() for r in (0, 1)] == ["False", "False"]
    # detectron2's own launch leaves it open: what the check above tells apart
    d2_launch(record_open_group_at_exit, 2, dist_url="auto", args=(str(tmp_path / "d2"),))
    assert [(tmp_path / f"d2.rank{r}").read_text() for r in (0, 1)] == ["True", "True"]


def test_a_worker_killed_after_the_job_is_logged_and_one_killed_in_it_fails_the_run(
    tmp_path, caplog
):
    """A worker that dies of a signal in the interpreter's teardown, after every worker finished
    its job and closed its group, does not fail the run (logged, naming it); one that dies in
    the job does, with torch's exception."""
    with caplog.at_level(logging.WARNING, logger="ir_d2.engine.launch"):
        assert (
            launch(finish_then_abort, 2, dist_url="auto", args=(str(tmp_path / "a"), "at_exit"))
            is None
        )
    assert [(tmp_path / f"a.rank{r}").read_text() for r in (0, 1)] == ["done", "done"]
    warned = [r.getMessage() for r in caplog.records if r.name == "ir_d2.engine.launch"]
    assert len(warned) == 1 and "worker 1" in warned[0] and "SIGABRT" in warned[0], warned
    with pytest.raises(ProcessExitedException, match="SIGABRT") as e:
        launch(finish_then_abort, 2, dist_url="auto", args=(str(tmp_path / "b"), "in_job"))
    assert e.value.error_index == 1 and (tmp_path / "b.rank1").is_file()


def test_what_needs_cuda_is_refused_on_the_cpu_naming_the_key(monkeypatch):
    from detectron2.utils import comm

    from ir_d2.engine.defaults import setup_cfg

    unet = "ir_d2://quick_schedules/irstd_unet_sirst_instant_test.yaml"
    with pytest.raises(ValueError, match="SOLVER.AMP.ENABLED"):
        setup_cfg(unet, ["MODEL.DEVICE", "cpu", "SOLVER.AMP.ENABLED", True])
    # a GPU config on a machine without CUDA: CPU in float32, said in the log line
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = setup_cfg(unet, ["MODEL.DEVICE", "cuda", "SOLVER.AMP.ENABLED", True])
    assert cfg.MODEL.DEVICE == "cpu" and not cfg.SOLVER.AMP.ENABLED
    # torch's SyncBatchNorm refuses CPU tensors once processes synchronise
    assert setup_cfg(unet, ["MODEL.IRSTD.NORM", "SyncBN"]).MODEL.IRSTD.NORM == "SyncBN"
    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    with pytest.raises(ValueError, match="MODEL.IRSTD.NORM is 'SyncBN'.*naiveSyncBN"):
        setup_cfg(unet, ["MODEL.IRSTD.NORM", "SyncBN"])
    with pytest.raises(ValueError, match="MODEL.BNSA.NORM is 'SyncBN'"):
        setup_cfg(unet, ["MODEL.BNSA.NORM", "SyncBN"])


@pytest.mark.parametrize("key", ["MODEL.IRSTD.NORM", "MODEL.BNSA.NORM"])
def test_an_unknown_norm_names_its_key(key):
    from detectron2.modeling import build_model

    from ir_d2.engine.defaults import setup_cfg

    config = {
        "MODEL.IRSTD.NORM": "ir_d2://quick_schedules/irstd_unet_sirst_instant_test.yaml",
        "MODEL.BNSA.NORM": "ir_d2://quick_schedules/"
        "mask_rcnn-focal_siou-bce_dice_lovasz_R_50_BNSA-C3C4_FPN_sirst_instant_test.yaml",
    }[key]
    with pytest.raises(ValueError, match=f"{key} = 'BatchNorm' is not a norm"):
        build_model(setup_cfg(config, [key, "BatchNorm"]))


def test_the_trainer_wraps_a_cpu_model_in_ddp_without_device_ids(data, monkeypatch):
    """IRTrainer runs detectron2's own constructor and only changes the arguments of its one
    ``create_ddp_model`` call: this fails when the pinned detectron2 changes that line."""
    import inspect

    from detectron2.engine import DefaultTrainer
    from detectron2.engine import defaults as d2_defaults
    from detectron2.utils import comm

    from ir_d2.engine import IRTrainer
    from ir_d2.engine.defaults import setup_cfg

    source = inspect.getsource(DefaultTrainer.__init__)
    assert "model = create_ddp_model(model, broadcast_buffers=False)" in source
    cfg = setup_cfg(_irstd_yaml(data), ["MODEL.DEVICE", "cpu"])
    calls = []

    class Recorder(torch.nn.Module):
        def __init__(self, module, **kwargs):
            super().__init__()
            self.module = module
            calls.append(kwargs)

    monkeypatch.setattr(d2_defaults, "DistributedDataParallel", Recorder)
    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    original = d2_defaults.create_ddp_model
    trainer = IRTrainer(cfg)
    assert calls == [{"broadcast_buffers": False, "device_ids": None}]
    assert isinstance(trainer.model, Recorder)
    assert d2_defaults.create_ddp_model is original  # restored after the constructor
    assert trainer.max_iter == 3 and trainer.start_iter == 0
