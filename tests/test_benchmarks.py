"""
The benchmark scripts run here before a GPU is at hand: the one-call GPU check in its CPU smoke
mode, and the learning study on a few frames. They print figures; the tests check the reports'
shape and the values that must hold on any device.
"""

import argparse
import itertools
import json
import shutil
import sys

import pytest
import torch
from conftest import REPO_ROOT, SHARED_DATA

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import gpu_check  # noqa: E402
from _common import COMPARISON_NETS  # noqa: E402

from ir_d2.modeling.irstd.dnanet import DNANet  # noqa: E402


def test_gpu_check_smoke_runs_on_the_cpu(tmp_path, capsys):
    out = tmp_path / "gc"
    argv = ["--device", "cpu", "--minutes", "0.05", "--eval-frames", "4", "--workers", "0"]
    argv += ["--repeat", "1"]  # one timed call per figure: a smoke run
    gpu_check.main([*argv, "--output", str(out), "--datasets", str(SHARED_DATA)])
    saved = json.loads((out / "gpu_check.json").read_text())
    assert saved["tool"] == "benchmarks/gpu_check.py" and saved["device"] == "cpu"
    nets = [r["net"] for r in saved["fps"] if r["precision"] == "fp32"]
    assert nets == [name for name, _, _ in COMPARISON_NETS]  # every net of the papers' tables
    assert {"DNANet", "ACM", "ALCNet", "ISNet", "UIU-Net", "SIRST-5K net"} <= set(nets)
    fp32 = [r for r in saved["fps"] if r["precision"] == "fp32"]
    assert all(r["fps"] > 0 and r["ms"] == pytest.approx(1e3 / r["fps"], rel=0.02) for r in fp32)
    params = {r["net"]: r["params_M"] for r in fp32}
    assert params["SGEM U-Net"] == pytest.approx(8.63, abs=0.01)  # the paper row's widths
    assert params["DNANet"] == pytest.approx(4.697, abs=0.001)
    assert params["UIU-Net"] == pytest.approx(50.54, abs=0.01)
    fps = {r["net"]: r["fps"] for r in fp32}
    for baseline in ("DNANet", "ACM"):  # derived from the measured FPS
        ratio = saved[f"fps_ratio_sgem_to_{baseline.lower()}"]
        assert ratio["fp32"] == round(fps["SGEM U-Net"] / fps[baseline], 2)
        assert ratio["fp16"] is None  # no fp16 figure on a CPU
    assert saved["fps_ratio_sgem_to_dnanet"]["paper"] == round(342 / 27, 2)
    rcnn = {r["model"]: r for r in saved["rcnn"]}
    assert rcnn["BNSA final model"]["params_M"] > rcnn["Mask R-CNN R50-FPN"]["params_M"]
    assert all(r["losses"] == "finite" and not r["amp"] for r in saved["rcnn"])  # no AMP on CPU
    sgem = saved["sgem_nudt_sirst"]
    if (SHARED_DATA / "nudt-sirst").is_dir():
        assert sgem["iterations"] >= 1 and sgem["test_frames"] == 4
        assert 0 <= sgem["IoU"] <= 100
    else:
        assert "NUDT-SIRST not found" in sgem["skipped"]
    text = (out / "gpu_check.md").read_text()
    assert f"{fps['SGEM U-Net']}" in text  # the table shows the measured figures
    assert text in capsys.readouterr().out
    # a report of the same name written by something else is never replaced
    (out / "gpu_check.json").write_text("{}")
    with pytest.raises(ValueError, match="not written by benchmarks/gpu_check.py"):
        gpu_check.write_report(out, "gpu_check", gpu_check.TOOL, {}, "")
    assert (out / "gpu_check.json").read_text() == "{}"
    # a figure that fails leaves no report behind that looks complete

    def broken(path):
        raise RuntimeError("no figure")

    with pytest.raises(RuntimeError, match="no figure"):
        gpu_check.write_report(tmp_path / "fresh", "r", gpu_check.TOOL, {}, "", figure=broken)
    assert not list((tmp_path / "fresh").glob("r.*"))


def test_bench_learning_runs_every_row_with_one_recipe_and_seeds_beside_tophat(tmp_path, capsys):
    import bench_learning

    argv = ["--iterations", "2", "--seeds", "0", "1", "--eval-frames", "4"]
    argv += [
        "--output",
        str(tmp_path),
        "--config-file",
        "IRSTD/irstd_sgem_unet_W40_1500e_nudt_sirst.yaml",
    ]
    argv += ["DATASETS.TRAIN", "('ir_synthetic_train',)", "DATASETS.TEST", "('ir_synthetic_test',)"]
    report = bench_learning.main(argv)
    (row,) = report["rows"]
    assert row["iterations"] == 2 and row["batch"] == 8  # the controlled recipe's batch
    assert row["seeds"] == [0, 1] and [r["seed"] for r in row["runs"]] == [0, 1]
    # one head (the recipe turns deep supervision off): its final-head loss is its total loss
    assert all(r["heads"] == {} and r["last_loss_final"] == r["last_loss"] for r in row["runs"])
    assert row["test"] == "ir_synthetic_test_first4"
    ious = [r["IoU"] for r in row["runs"]]
    assert row["IoU"] == pytest.approx(sum(ious) / 2)
    assert row["IoU_std"] == pytest.approx(abs(ious[0] - ious[1]) / 2**0.5)
    (tophat,) = report["tophat"]
    assert tophat["name"].startswith("top-hat") and tophat["IoU"] > 0  # tuned: it finds targets
    saved = json.loads((tmp_path / "bench_learning.json").read_text())
    assert saved["tool"] == "benchmarks/bench_learning.py" and saved["rows"] == report["rows"]
    table = (tmp_path / "bench_learning.md").read_text()
    assert "| IRSTD/irstd_sgem_unet_W40_1500e_nudt_sirst.yaml | 2 | 2 (8) |" in table
    assert (tmp_path / "bench_learning.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # --resume keeps each finished run (saved as it ended); a changed budget runs again
    run = tmp_path / "irstd_irstd_sgem_unet_w40_1500e_nudt_sirst_yaml" / "seed1" / "run.json"
    assert json.loads(run.read_text())["result"] == row["runs"][1]
    stamp = run.stat().st_mtime_ns
    bench_learning.main(argv[:2] + ["--seeds", "1", "--resume", "--no-tophat"] + argv[5:])
    assert run.stat().st_mtime_ns == stamp
    # --saved-only trains nothing: the saved seeds 0 and 1 of seeds 0-2, none of another budget
    shutil.rmtree(run.parent.parent / "seed0")
    saved_only = ["--seeds", "0", "1", "2", "--saved-only", "--no-tophat"]
    report = bench_learning.main(argv[:2] + saved_only + argv[5:])
    assert [r["seed"] for r in report["rows"][0]["runs"]] == [1]
    (row,) = report["rows"]
    one = f"| {row['name']} | 1 | 2 (8) | {row['train_minutes']:.1f} | {row['last_loss']:.3f} |"
    assert one in capsys.readouterr().out  # one seed: its values, no spread
    with pytest.raises(SystemExit):
        bench_learning.main(["--iterations", "3"] + saved_only + argv[5:])
    assert "--saved-only: no run in" in capsys.readouterr().err


def test_bench_parity_changes_the_official_code_only_where_it_says_and_scores_alike():
    """The parity harness refuses an official train.py it does not recognise (one line naming
    the text it looks for), and scores saved probability maps through IRSTDEvaluator: the ground
    truth itself scores 100."""
    import bench_parity
    import numpy as np
    from _common import first_frames, use_datasets
    from detectron2.data import DatasetCatalog
    from PIL import Image

    from ir_d2.utils.cli import CommandLineError

    with pytest.raises(CommandLineError, match="train.py no longer contains"):
        bench_parity.patched_train_py("print('not the authors' code')\n", "dnanet")
    # the official layer names onto ir_d2's DNANet (the lockstep's weight copy)
    names = {
        "conv1_0.0.ca.fc1.weight": "nodes.1_0.0.channel_attention.mlp.0.weight",
        "conv0_4_final.0.bn2.bias": "fuse.0.body.4.bias",
        "conv0_3_1x1.weight": "project.1.weight",
        "final3.bias": "heads.2.bias",
        "final.weight": "heads.0.weight",
    }
    mapped = bench_parity.official_to_ir_d2({k: torch.zeros(1) for k in names})
    assert sorted(mapped) == sorted(names.values())
    net = DNANet(3, channels=[4, 8, 16, 32, 64], blocks=[1, 1, 1, 1], deep_supervision=True)
    assert set(mapped) <= set(net.state_dict())  # names of ir_d2's net
    with pytest.raises(KeyError, match="up.weight"):
        bench_parity.official_to_ir_d2({"up.weight": torch.zeros(1)})
    # ir_d2's train loss at a test is the mean of the last epoch, as the official AverageMeter's
    from detectron2.utils.events import EventStorage

    with EventStorage() as storage:
        for i, value in enumerate([0.9, 0.9, 0.9, 0.5, 0.3]):
            storage.iter = i
            storage.put_scalar("total_loss", value)
        assert bench_parity.epoch_loss(storage, 2) == pytest.approx(0.4)
        assert bench_parity.epoch_loss(storage, 5) == pytest.approx(0.7)
        assert bench_parity.final_head_loss(storage, 2) is None  # no per-output losses logged
        for i, value in enumerate([0.99, 0.97, 0.98, 0.96, 0.95]):  # stuck while the mean falls
            storage.iter = i
            storage.put_scalar("irstd/loss_soft_iou_final", value)
            storage.put_scalar("irstd/loss_soft_iou_head0", 0.1)
        assert bench_parity.final_head_loss(storage, 2) == pytest.approx(0.955)
    if not (SHARED_DATA / "nudt-sirst").is_dir():
        pytest.skip(f"real IR data {SHARED_DATA / 'nudt-sirst'} is absent")
    use_datasets(str(SHARED_DATA))
    frames = first_frames("nudt_sirst_test", 3)
    masks = [
        (np.asarray(Image.open(r["sem_seg_file_name"])) > 127).astype(np.float32)
        for r in DatasetCatalog.get(frames)
    ]
    scores = bench_parity.score_probs(np.stack(masks), frames)
    assert scores["IoU"] == 100.0 and scores["Pd"] == 100.0 and scores["Fa"] == 0.0
    assert bench_parity.score_probs(np.zeros((3, 256, 256), np.float32), frames)["IoU"] == 0.0
    with pytest.raises(ValueError, match="2 official predictions for 3 test frames"):
        bench_parity.score_probs(np.stack(masks[:2]), frames)


def test_bench_parity_checks_report_prints_the_lockstep_step_times():
    """The checks' markdown gives the lockstep's median step of each side and ir_d2's ratio when
    the report has them (reports of older runs do not, and print no such line)."""
    import bench_parity

    diff = {"loss": 1e-6, "weights": 2e-3, "worst_tensor_relative": 0.4, "worst_tensor": "w"}
    diff["running_statistics"] = 0.2
    step = {"steps": 2, "optimizer": "Adam", "ir_d2": diff, "control": diff}
    step["losses"] = [{"step": i, "official": 0.9, "ir_d2": 0.9, "control": 0.9} for i in (0, 1)]
    older = bench_parity.checks_markdown({"lockstep": step})
    assert "Median step" not in older and "| 1 | 0.9 | 0.9 | 0.9 |" in older
    step["step_seconds"] = {"official": 1.8475, "ir_d2": 1.9208, "ratio": 1.04}
    text = bench_parity.checks_markdown({"lockstep": step})
    assert "official 1.8475 s, ir_d2 1.9208 s (1.04x)" in text.split("Median step")[1]
    skipped = bench_parity.checks_markdown({"lockstep": {"skipped": "no DNANet"}})
    assert "Lockstep check skipped: no DNANet" in skipped


def _parity_report(seed, official, ours, epochs=6, eval_every=6, lr=0.001):
    """A parity report as ``bench_parity`` writes it: ``official`` and ``ours`` map an iteration
    to the test IoU."""

    def side(curve, s_per_iter):
        points = [{"iteration": i, "IoU": iou} for i, iou in sorted(curve.items())]
        return {"flavour": "dnanet", "s_per_iter": s_per_iter, "curve": points}

    conditions = {"epochs": epochs, "eval_every": eval_every, "batch": 4, "crop": 128}
    conditions |= {"seed": seed, "optimizer": "Adam", "lr": lr, "threads": 2}
    return (
        {"tool": "benchmarks/bench_parity.py", "conditions": conditions},
        side(official, 1.0),
        side(ours, 0.9),
    )


def test_the_welch_interval_in_closed_form():
    """Independent seeds: the difference of means +- t(0.975, df) se with Welch's df. Equal
    variances and counts make df 2(n - 1), the pooled two-sample t interval; one side constant
    makes it the other side's one-sample t interval; both constant, the difference itself."""
    import bench_parity
    from scipy.stats import t as student_t

    from ir_d2.utils.cli import CommandLineError

    low, high = bench_parity.welch_interval([0.0, 2.0], [1.0, 3.0])  # se sqrt(2), df 2
    half = 4.302652729911275 * 2**0.5  # t(0.975, 2), from tables
    assert (low, high) == pytest.approx((1 - half, 1 + half))
    ours = [3.0, 5.0, 10.0]  # mean 6, s^2 13: against a constant, t(0.975, 2) sqrt(13 / 3)
    low, high = bench_parity.welch_interval([4.0, 4.0, 4.0], ours)
    half = student_t.ppf(0.975, 2) * (13 / 3) ** 0.5
    assert (low, high) == pytest.approx((2 - half, 2 + half))
    assert bench_parity.welch_interval([1.0, 1.0], [2.5, 2.5]) == (1.5, 1.5)
    with pytest.raises(CommandLineError, match="at least two seeds a side"):
        bench_parity.mean_difference([1.0], [2.0, 3.0])


def test_bench_parity_sets_seeds_side_by_side_as_distributions(tmp_path, capsys):
    """Parity over seeds: each side's test IoU as a distribution at the iterations every run
    scored, ir_d2's mean minus the official one with a Welch t interval and an exact
    permutation p-value, and a verdict against the 2-point goal; runs of another recipe, a seed
    twice or no shared iteration are refused by name."""
    import bench_parity
    import numpy as np

    from ir_d2.utils.cli import CommandLineError

    d = bench_parity.distribution([0.0, 0.0, 10.0, 30.0])
    assert d == {"n": 4, "mean": 10.0, "std": 14.14, "median": 5.0, "min": 0.0, "max": 30.0} | {
        "at_empty_minimum": 2
    }
    assert bench_parity.distribution([0.0, 0.5, 1.0])["at_empty_minimum"] == 2  # IoU below 1
    # separated sides: only the two extreme relabellings of C(10, 5) = 252 reach the difference
    far = bench_parity.mean_difference([50.0, 51, 52, 53, 54], [0.0, 1, 2, 3, 4])
    assert far["mean"] == -50.0 and far["permutation_p"] == round(2 / 252, 3)
    assert far["verdict"].startswith("the codes differ")
    assert far["interval_95"] == [-52.31, -47.69]  # -50 +- t(0.975, 8) sqrt(2.5/5 + 2.5/5)
    close = bench_parity.mean_difference([20.0, 20.5, 21, 20.2], [20.1, 20.4, 20.9, 20.6])
    assert close["verdict"].startswith("parity shown")
    assert -2 <= close["interval_95"][0] <= close["mean"] <= close["interval_95"][1] <= 2
    # one code against itself at the empty minimum or not: nothing can be said within 2 points
    wide = bench_parity.mean_difference([0.0, 27.6, 25.0], [4.6, 0.0, 26.0])
    assert wide["verdict"].startswith("not resolved") and wide["permutation_p"] > 0.5
    # the p-value counts relabellings independently of the function's own loop
    a, b = np.array([0.0, 27.6, 25.0]), np.array([4.6, 0.0, 26.0])
    pooled, observed = np.concatenate([a, b]), abs(b.mean() - a.mean())
    count = [
        abs(pooled[list(c)].mean() - np.delete(pooled, list(c)).mean()) >= observed - 1e-9
        for c in itertools.combinations(range(6), 3)
    ]
    assert wide["permutation_p"] == round(float(np.mean(count)), 3)

    folders = []
    runs = [  # seed 0 scored at 495 and 990, seeds 1-2 at 330, 660, 990: shared only 990
        _parity_report(0, {495: 10.45, 990: 0.0}, {495: 20.75, 990: 4.6}, 9, 3),
        _parity_report(1, {330: 10.6, 660: 24.2, 990: 27.6}, {330: 26.4, 660: 0, 990: 0}, 6, 2),
        _parity_report(2, {990: 25.0}, {990: 26.0}),
    ]
    for seed, (head, official, ours) in enumerate(runs):
        folder = tmp_path / f"seed{seed}"
        folder.mkdir()
        (folder / "bench_parity.json").write_text(
            json.dumps(head | {"official": official, "ir_d2": ours})
        )
        folders.append(str(folder))
    out = tmp_path / "summary"
    report = bench_parity.main(["--summarise", *folders, "--output", str(out)])
    assert report["seeds"] == [0, 1, 2] and [p["iteration"] for p in report["points"]] == [990]
    point = report["points"][0]
    assert point["official"]["IoU"] == [0.0, 27.6, 25.0] and point["ir_d2"]["IoU"] == [4.6, 0, 26]
    assert point["official"]["mean"] == 17.53 and point["ir_d2"]["at_empty_minimum"] == 1
    assert point["difference"] == wide
    assert report["time_ratio"] == 0.9
    saved = json.loads((out / "bench_parity_seeds.json").read_text())
    assert saved["tool"] == "benchmarks/bench_parity.py" and saved["points"] == report["points"]
    assert (out / "bench_parity_seeds.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "bench_parity_seeds.md").read_text()
    assert "| 2 | 25.0 / 26.0 |" in text and text in capsys.readouterr().out
    # a figure of that name that the tool did not write is refused and left as it was
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "bench_parity_seeds.png").write_bytes(b"a user's figure")
    with pytest.raises(ValueError, match="bench_parity_seeds.png"):
        bench_parity.main(["--summarise", *folders, "--output", str(theirs)])
    assert (theirs / "bench_parity_seeds.png").read_bytes() == b"a user's figure"

    head, official, ours = _parity_report(3, {990: 1.0}, {990: 2.0}, lr=0.05)
    other = tmp_path / "other_lr.json"
    other.write_text(json.dumps(head | {"official": official, "ir_d2": ours}))
    with pytest.raises(CommandLineError, match=r"other_lr.json: another recipe than .*\(lr\)"):
        bench_parity.main(["--summarise", folders[0], str(other), "--output", str(out)])
    # a report from before --device trained on the CPU: the same recipe as "cpu", not as "cuda"
    for device in ("cpu", "cuda"):
        head, official, ours = _parity_report(3, {990: 1.0}, {990: 2.0})
        head["conditions"]["device"] = device
        named = tmp_path / f"on_{device}.json"
        named.write_text(json.dumps(head | {"official": official, "ir_d2": ours}))
        argv = ["--summarise", folders[2], str(named), "--output", str(tmp_path / device)]
        if device == "cpu":
            assert bench_parity.main(argv)["seeds"] == [2, 3]
        else:
            with pytest.raises(CommandLineError, match=r"on_cuda.json: another .*\(device\)"):
                bench_parity.main(argv)
    with pytest.raises(CommandLineError, match="a seed appears twice"):
        bench_parity.main(["--summarise", folders[0], folders[0], "--output", str(out)])
    head, official, ours = _parity_report(4, {500: 1.0}, {500: 2.0})
    elsewhere = tmp_path / "at_500.json"
    elsewhere.write_text(json.dumps(head | {"official": official, "ir_d2": ours}))
    with pytest.raises(CommandLineError, match="no iteration was scored by every run"):
        bench_parity.summarise([folders[1], str(elsewhere)], out)
    with pytest.raises(CommandLineError, match="absent.json: cannot read a parity report"):
        bench_parity.summarise([folders[1], str(tmp_path / "absent.json")], out)
    with pytest.raises(CommandLineError, match="at least two seeds"):
        bench_parity.main(["--summarise", folders[0], "--output", str(out)])
    with pytest.raises(SystemExit):  # training needs the authors' clone
        bench_parity.main(["--output", str(out)])


def test_bench_parity_seeds_runs_each_seed_in_its_folder_then_sets_them_side_by_side(
    tmp_path, monkeypatch
):
    """``--seeds``: each seed's run in ``<output>/seed<N>`` with its own seed, the model and data
    checks with the first seed only, then the summary of exactly those runs in ``<output>``."""
    import bench_parity

    (tmp_path / "data" / "nudt-sirst" / "50_50").mkdir(parents=True)
    (tmp_path / "data" / "nudt-sirst" / "50_50" / "test.txt").write_text("000001\n")
    calls = []

    def fake_run(args, out, nudt, flavour):  # what run_seed writes, without training
        calls.append((args.seed, out, args.lockstep, args.augmentation_samples, flavour))
        iou = {990: 10.0 + args.seed}
        head, official, ours = _parity_report(args.seed, iou, iou)
        out.mkdir(parents=True)
        (out / "bench_parity.json").write_text(
            json.dumps(head | {"official": official, "ir_d2": ours})
        )

    monkeypatch.setattr(bench_parity, "run_seed", fake_run)
    monkeypatch.setattr(bench_parity, "official_flavour", lambda clone: "dnanet")
    out = tmp_path / "parity"
    argv = ["--official", str(tmp_path), "--datasets", str(tmp_path / "data")]
    argv += ["--seeds", "3", "5", "--lockstep", "20", "--output", str(out)]
    report = bench_parity.main(argv)
    assert calls == [(3, out / "seed3", 20, 800, "dnanet"), (5, out / "seed5", 0, 0, "dnanet")]
    assert report["seeds"] == [3, 5] and report["points"][0]["ir_d2"]["IoU"] == [13.0, 15.0]
    assert report["points"][0]["difference"]["mean"] == 0.0
    assert json.loads((out / "bench_parity_seeds.json").read_text())["seeds"] == [3, 5]
    with pytest.raises(SystemExit):  # --checks-only trains no seed
        bench_parity.main([*argv, "--checks-only"])


def test_bench_overfit_reports_the_iterations_to_the_bar(tmp_path):
    import bench_overfit

    if not (SHARED_DATA / "nudt-sirst").is_dir():
        pytest.skip(f"real IR data {SHARED_DATA / 'nudt-sirst'} is absent")
    argv = ["--family", "unet", "--minutes", "0.02", "--frames", "2", "--every", "2"]
    argv += ["--output", str(tmp_path), "--datasets", str(SHARED_DATA)]
    (row,) = bench_overfit.main(argv)
    assert row["frames"] == "nudt_sirst_train_first2" and row["metric"] == "IoU"
    assert row["curve"] and all(
        p["iteration"] % 2 == 0 or p is row["curve"][-1] for p in row["curve"]
    )
    assert row["reached"] == (row["best"] > 90) and 0 <= row["best"] <= 100
    saved = json.loads((tmp_path / "bench_overfit.json").read_text())
    assert saved["tool"] == "benchmarks/bench_overfit.py" and saved["rows"] == [row]
    assert "| U-Net | width 16 | 4 | IoU |" in (tmp_path / "bench_overfit.md").read_text()
    assert row["batch"] == 4
    # beside each point, the same weights scored with the BatchNorm statistics of the frames
    frame_stats = [p[bench_overfit.FRAME_STATS] for p in row["curve"]]
    assert len(frame_stats) == len(row["curve"]) and all(0 <= v <= 100 for v in frame_stats)
    assert row["best_frame_stats"] == max(frame_stats)
    # --resume keeps the row while the family's definition is the same, not after it changes
    stamp = (tmp_path / "unet" / "row.json").stat().st_mtime_ns
    assert bench_overfit.main(argv + ["--resume"]) == [row]
    assert (tmp_path / "unet" / "row.json").stat().st_mtime_ns == stamp
    label, config, scaled, extra, crop = bench_overfit.FAMILIES["unet"]
    changed = (label, config, "width 12", ["MODEL.IRSTD.BASE_CHANNELS", 12], crop)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(bench_overfit.FAMILIES, "unet", changed)
        (rerun,) = bench_overfit.main(argv + ["--resume"])
    assert rerun["scaled"] == "width 12"
    # the SIRST-5K net with its synthesis: its 64x64 crops, its paper row's negative
    # augmentation and L_Neg kept
    args = argparse.Namespace(frames=2, seed=0)
    *_, frames, cfg = bench_overfit.build("sirst5k_neg", args, tmp_path)
    assert frames == "nudt_sirst_train_first2_crop64" and cfg.DATASETS.TRAIN == (frames,)
    assert cfg.SOLVER.IMS_PER_BATCH == 4 and cfg.INPUT.IR.CROP_SIZE == []
    assert cfg.INPUT.SIRST5K.NEGATIVE and cfg.MODEL.IRSTD.NEG_LOSS == "sum"
    assert cfg.MODEL.IRSTD.BASE_CHANNELS == 8 and cfg.MODEL.IRSTD.DEEP_SUPERVISION


def test_bench_overfit_frame_statistics_are_those_of_one_batch_of_every_frame(tmp_path):
    """with_frame_statistics: each BatchNorm's statistics are the mean and (biased) variance of
    its input in one forward over all the frames with batch statistics, recomputed here from
    hooks on the original model; the original keeps its own."""
    import bench_overfit
    from detectron2.modeling import build_model
    from torch import nn

    if not (SHARED_DATA / "nudt-sirst").is_dir():
        pytest.skip(f"real IR data {SHARED_DATA / 'nudt-sirst'} is absent")
    bench_overfit.use_datasets(str(SHARED_DATA))
    *_, frames, cfg = bench_overfit.build("unet", argparse.Namespace(frames=3, seed=0), tmp_path)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loader = bench_overfit.IRTrainer.build_test_loader(cfg, frames)
    inputs = [x for batch in loader for x in batch]
    copy = bench_overfit.with_frame_statistics(model, inputs)
    assert not copy.training and all(
        torch.equal(v, model.state_dict()[k]) for k, v in before.items()
    )
    norms = {n: m for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    seen = {}

    def record(name):
        def hook(module, inputs, output):  # returns None: the output stays the module's
            seen[name] = inputs[0].detach()

        return hook

    for name, m in norms.items():
        m.train()
        m.register_forward_hook(record(name))
    with torch.no_grad():
        model(inputs)
    assert len(seen) == len(norms) > 10 and next(iter(seen.values())).shape[0] == 3
    copies = dict(copy.named_modules())
    for name, x in seen.items():
        x = x.transpose(0, 1).flatten(1).double()
        torch.testing.assert_close(
            copies[name].running_mean.double(), x.mean(1), rtol=1e-4, atol=1e-5
        )
        # fvcore's population variance is the biased one (what training normalises by), formed
        # as E[x^2] - E[x]^2 in float32: 1e-3 covers its cancellation; a moving average with
        # momentum 0.1 would be off by 90 %
        torch.testing.assert_close(
            copies[name].running_var.double(), x.var(1, unbiased=False), rtol=1e-3, atol=1e-4
        )


def test_cropped_frames_keep_the_window_with_the_most_target_pixels(tmp_path):
    """bench_overfit's smaller input: each frame cut to the window holding the most target
    pixels (two targets too far apart for one window: the larger kept), the image cut alike, a
    frame smaller than the window kept whole, registered as a semantic set of the crops."""
    import cv2
    import numpy as np
    from _common import cropped_frames
    from detectron2.data import DatasetCatalog

    from ir_d2.data.ir_datasets.irstd import register_irstd

    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    image = np.arange(40 * 60, dtype=np.uint16).reshape(40, 60) % 251
    mask = np.zeros((40, 60), np.uint8)
    mask[30:33, 50:53] = 255  # 9 pixels, bottom right
    mask[2:4, 3:5] = 255  # 4 pixels, top left: no 16x16 window holds both
    small = np.zeros((10, 12), np.uint8)
    small[4, 5] = 255
    for stem, img, msk in (("a", image, mask), ("b", image[:10, :12], small)):
        cv2.imwrite(str(tmp_path / "images" / f"{stem}.png"), img.astype(np.uint8))
        cv2.imwrite(str(tmp_path / "masks" / f"{stem}.png"), msk)
    register_irstd("test_crop_base", str(tmp_path / "images"), str(tmp_path / "masks"))
    name = cropped_frames("test_crop_base", 2, 16, tmp_path / "out")
    assert name == "test_crop_base_first2_crop16"
    assert cropped_frames("test_crop_base", 2, 16, tmp_path / "elsewhere") == name  # registered
    a, b = DatasetCatalog.get(name)
    crop_a = cv2.imread(a["sem_seg_file_name"], cv2.IMREAD_UNCHANGED)
    assert crop_a.shape == (16, 16) and (crop_a > 127).sum() == 9
    y, x = 17, 37  # the first window (row-major) holding the 9 pixels: rows 17-32, cols 37-52
    np.testing.assert_array_equal(crop_a, mask[y : y + 16, x : x + 16])
    cut = cv2.imread(a["file_name"], cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(cut, image.astype(np.uint8)[y : y + 16, x : x + 16])
    assert (b["height"], b["width"]) == (10, 12)  # smaller than the window: whole
    # a stale crop in the folder is not part of a set registered there later
    cv2.imwrite(str(tmp_path / "out" / "images" / "zz.png"), small)
    cv2.imwrite(str(tmp_path / "out" / "masks" / "zz.png"), small)
    one = cropped_frames("test_crop_base", 1, 16, tmp_path / "out")
    assert [r["image_id"] for r in DatasetCatalog.get(one)] == ["a"]
    np.testing.assert_array_equal(cv2.imread(b["sem_seg_file_name"], cv2.IMREAD_UNCHANGED), small)


def test_a_saved_result_is_resumed_only_by_the_code_that_made_it(tmp_path):
    from _common import code_version, save_result, saved_result

    path = tmp_path / "run.json"
    save_result(path, "benchmarks/x.py", {"iterations": 2}, {"IoU": 1.5})
    assert saved_result(path, {"iterations": 2}, resume=True) == {"IoU": 1.5}
    assert saved_result(path, {"iterations": 3}, resume=True) is None  # other conditions
    assert saved_result(path, {"iterations": 2}, resume=False) is None
    record = json.loads(path.read_text())
    assert record["code"] == code_version() and len(code_version()) == 12
    path.write_text(json.dumps({**record, "code": "older"}))
    assert saved_result(path, {"iterations": 2}, resume=True) is None  # made by other code
    save_result(path, "benchmarks/x.py", {"iterations": 2}, {"IoU": 2.0})  # its own: replaced
    assert saved_result(path, {"iterations": 2}, resume=True) == {"IoU": 2.0}
    # a file there that the benchmark did not save is never replaced
    path.write_text("the user's notes")
    with pytest.raises(ValueError, match="run.json exists and was not written by benchmarks/x.py"):
        save_result(path, "benchmarks/x.py", {"iterations": 2}, {"IoU": 1.5})
    assert path.read_text() == "the user's notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_bench_parity_trains_both_sides_on_the_device_it_is_given(tmp_path, monkeypatch, capsys):
    """``--device`` reaches ir_d2's config, the official copy's environment (its ``.cuda()`` calls
    read it) and the conditions a saved side is resumed under; without CUDA, ``--device cuda`` is
    refused before anything runs."""
    import bench_parity

    with monkeypatch.context() as m:
        m.setattr(torch.cuda, "is_available", lambda: False)
        with pytest.raises(SystemExit):
            bench_parity.main(["--official", str(tmp_path), "--device", "cuda"])
    assert "--device cuda: torch finds no CUDA device" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # ir_d2's config keeps "cuda"

    recipe = dict(batch=16, crop=256, base=256, optimizer="Adagrad", lr=0.05, channel_size="three")
    args = argparse.Namespace(**recipe, seed=3, epochs=2, eval_every=1, workers=0, backbone=None)
    args.output, args.device = str(tmp_path), "cuda"
    cfg = bench_parity.ir_d2_cfg(args, "dnanet", 10)
    assert cfg.MODEL.DEVICE == "cuda" and cfg.SOLVER.IMS_PER_BATCH == 16
    assert tuple(cfg.INPUT.IR.CROP_SIZE) == (256, 256) and cfg.SOLVER.OPTIMIZER == "Adagrad"
    assert bench_parity.conditions(args)["device"] == "cuda"
    parity = bench_parity.official_parity_env(args, tmp_path / "official")
    assert parity == {
        "device": "cuda",
        "seed": 3,
        "epochs": 2,
        "eval_every": 1,
        "out": str(tmp_path / "official"),
    }


def test_bench_parity_coupled_trains_the_official_side_on_ir_d2s_batches_from_its_weights(
    tmp_path, monkeypatch, capsys
):
    """``--coupled``: ir_d2's trainer starts from the official initial weights and, after each of
    its steps, the official net and its control step on the batch it just took. With an
    "official" code that computes what ir_d2 computes (ir_d2's DNANet and Soft-IoU), the three
    sides' test IoUs and false alarms agree, which they do only when the initial weights and
    every batch are shared (a stale batch, or no weight copy, moves IoU by 0.5-0.7); the report
    is rewritten after each test and marked finished last, and kept by ``--resume`` only with
    the same conditions and code."""
    if not (SHARED_DATA / "nudt-sirst").is_dir():
        pytest.skip(f"real IR data {SHARED_DATA / 'nudt-sirst'} is absent")
    import types

    import bench_parity
    from _common import code_version, first_frames, use_datasets

    from ir_d2.layers import soft_iou_loss

    use_datasets(str(SHARED_DATA))
    monkeypatch.setattr(bench_parity, "TRAIN", first_frames("nudt_sirst_train", 8))
    monkeypatch.setattr(bench_parity, "TEST", first_frames("nudt_sirst_test", 3))

    def fake_dnanet(num_classes, input_channels, block, num_blocks, nb_filter, deep_supervision):
        return DNANet(input_channels, channels=nb_filter, blocks=num_blocks, deep_supervision=True)

    fake = {
        "model_DNANet": types.SimpleNamespace(DNANet=fake_dnanet, Res_CBAM_block=None),
        "loss": types.SimpleNamespace(SoftIoULoss=soft_iou_loss),
    }
    monkeypatch.setattr(bench_parity, "_official_module", lambda clone, name: fake[name])
    monkeypatch.setattr(bench_parity, "official_to_ir_d2", lambda state: state)  # one net's names
    seen = []
    recording = bench_parity._Recording

    class Seen(recording):  # what the trainer takes, in order
        def __next__(self):
            seen.append(super().__next__())
            return seen[-1]

    monkeypatch.setattr(bench_parity, "_Recording", Seen)
    args = argparse.Namespace(
        official=str(tmp_path), batch=2, crop=64, base=256, optimizer="Adam", lr=1e-3, seed=1,
        channel_size="one", backbone="resnet_10", epochs=2, eval_every=1, workers=0,
        device="cpu", output=str(tmp_path / "out"), resume=False,
    )  # fmt: skip
    rewritten = []
    write = bench_parity.write_report

    def spy(folder, stem, tool, record, text, figure=None):
        rewritten.append((stem, record["finished"], len(record["curve"])))
        write(folder, stem, tool, record, text, figure)

    monkeypatch.setattr(bench_parity, "write_report", spy)
    report = bench_parity.run_coupled(args, tmp_path / "out", "dnanet", {})
    assert len(seen) == 8  # 2 epochs of 8 // 2 iterations, each batch taken once
    assert report["finished"] and [p["iteration"] for p in report["curve"]] == [4, 8]
    for point in report["curve"]:
        official, control, ours = (point[s] for s in ("official", "control", "ir_d2"))
        assert ours["train_loss"] == pytest.approx(official["train_loss"], abs=2e-4)
        assert control["train_loss"] == pytest.approx(official["train_loss"], abs=2e-4)
        # the false alarms count every pixel of the 3 frames: within rounding's drift (0.05%)
        for side in (ours, control):
            assert abs(side["IoU"] - official["IoU"]) <= 0.05
            assert side["Fa"] == pytest.approx(official["Fa"], rel=2e-3)
    assert 0.5 < report["curve"][0]["official"]["train_loss"] < 1.0
    # after each test a report that says it is unfinished, then the finished one with its figure
    assert rewritten == [
        ("bench_parity_coupled", False, 1),
        ("bench_parity_coupled", False, 2),
        ("bench_parity_coupled", True, 2),
    ]
    out = tmp_path / "out"
    saved = json.loads((out / "bench_parity_coupled.json").read_text())
    assert saved["finished"] and saved["conditions"]["coupled"] is True
    assert saved["code"] == code_version()
    assert (out / "bench_parity_coupled.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| 8 |" in (out / "bench_parity_coupled.md").read_text()
    # --resume keeps a finished run of the same conditions without training
    args.resume = True
    seen.clear()
    assert bench_parity.run_coupled(args, out, "dnanet", {})["curve"] == report["curve"]
    assert seen == [] and "kept" in capsys.readouterr().out
    from ir_d2.utils.cli import CommandLineError

    with pytest.raises(CommandLineError, match="DNANet code's layer names only"):
        bench_parity.coupled(args, "sirst5k", out)
    older = json.loads((out / "bench_parity_coupled.json").read_text()) | {"code": "another"}
    (out / "bench_parity_coupled.json").write_text(json.dumps(older))
    monkeypatch.setattr(
        bench_parity, "coupled", lambda args, flavour, out: seen.append(1) or report
    )
    bench_parity.run_coupled(args, out, "dnanet", {})  # another code's report is run again
    assert seen == [1]


def _coupled_report(seed, curve, finished=True):
    """A coupled report as ``bench_parity --coupled`` writes it: ``curve`` maps an iteration to
    the (official, control, ir_d2) test IoUs."""
    conditions = {"epochs": 5, "eval_every": 5, "batch": 4, "crop": 256, "seed": seed}
    conditions |= {"optimizer": "Adam", "lr": 0.001, "threads": 2, "coupled": True}
    points = [
        {"iteration": i} | {s: {"IoU": v} for s, v in zip(("official", "control", "ir_d2"), ious)}
        for i, ious in sorted(curve.items())
    ]
    return {"tool": "benchmarks/bench_parity.py", "conditions": conditions, "flavour": "dnanet"} | {
        "finished": finished,
        "curve": points,
    }


def test_bench_parity_sets_coupled_seeds_side_by_side_as_paired_differences(tmp_path, capsys):
    """Coupled runs over seeds: each seed's ir_d2 minus its official code, and the control minus
    the official code, as a mean with a Student t interval over the seeds and a verdict against
    the 2-point goal; an unfinished run, or coupled runs beside independent ones, are refused."""
    import bench_parity

    from ir_d2.utils.cli import CommandLineError

    same = bench_parity.paired_difference([0.5, 0.5, 0.5])
    assert same["interval_95"] == [0.5, 0.5] and same["verdict"].startswith("parity shown")
    # [5, 6, 7]: mean 6, s = 1, t(0.975, 2) = 4.3027: 6 -+ 4.3027 / sqrt(3) = 6 -+ 2.4841
    apart = bench_parity.paired_difference([5.0, 6.0, 7.0])
    assert apart["mean"] == 6.0 and apart["interval_95"] == [3.52, 8.48]
    assert (
        apart["verdict"].startswith("the codes differ") and apart["seeds_within_goal"] == "0 of 3"
    )
    # every seed within 2 points, but three seeds this far apart do not bound the mean:
    # mean 0.5, s = 1.3229, half width 4.3027 * 1.3229 / sqrt(3) = 3.2863
    spread = bench_parity.paired_difference([-1.0, 1.5, 1.0])
    assert spread["interval_95"] == [-2.79, 3.79] and spread["seeds_within_goal"] == "3 of 3"
    assert spread["verdict"].startswith("not resolved")
    twice = bench_parity.paired_difference([-1.19, -1.19])  # zero width, yet only two seeds
    assert twice["interval_95"] == [-1.19, -1.19] and twice["verdict"].startswith("not resolved")
    wide = bench_parity.paired_difference([-6.0, 5.0, 1.0])
    assert wide["mean"] == 0.0 and wide["mean_absolute"] == 4.0
    assert wide["verdict"].startswith("not resolved")
    # |ir_d2 - official| - |control - official| per seed: [-2, -3, -4], mean -3, s = 1,
    # -3 -+ 4.3027 / sqrt(3); the signs of the differences do not count, their sizes do
    closer = bench_parity.distance_excess([1.0, -1.0, 0.5], [3.0, 4.0, -4.5])
    assert closer["mean"] == -3.0 and closer["interval_95"] == [-5.48, -0.52]
    assert closer["seeds_closer"] == "3 of 3" and "closer to the official" in closer["verdict"]
    further = bench_parity.distance_excess([3.0, 4.0, -4.5], [1.0, -1.0, 0.5])
    assert further["interval_95"] == [0.52, 5.48] and further["seeds_closer"] == "0 of 3"
    assert "further from the official" in further["verdict"]
    # [0, 0, 1]: mean 1/3, s = 0.5774, half width 4.3027 * 0.5774 / sqrt(3) = 1.4342: the upper
    # end 1.77 within the 2-point margin, the lower end below 0
    alike = bench_parity.distance_excess([0.5, -1.0, 1.0], [-0.5, 1.0, 0.0])
    assert alike["interval_95"] == [-1.1, 1.77] and alike["verdict"].startswith("parity shown")
    # [3, 0, 0]: mean 1, s = sqrt(3), half width 4.3027: the upper end 5.30 above the margin
    loose = bench_parity.distance_excess([3.0, -1.0, 0.5], [0.0, 1.0, -0.5])
    assert loose["interval_95"] == [-3.3, 5.3] and "as far" in loose["verdict"]
    # [0, 0.2]: mean 0.1, s = 0.1414, t(0.975, 1) = 12.706: [-1.17, 1.37], yet only two seeds
    two = bench_parity.distance_excess([1.0, 1.2], [1.0, -1.0])
    assert two["interval_95"] == [-1.17, 1.37] and "as far" in two["verdict"]

    folders = []
    curves = [  # seed 0 scored at 330 and 825, the others at 825 only
        {330: (30.0, 29.0, 31.0), 825: (48.0, 47.5, 48.5)},
        {825: (50.0, 51.0, 49.0)},
        {825: (45.0, 45.0, 46.0)},
    ]
    for seed, curve in enumerate(curves):
        folder = tmp_path / f"seed{seed}"
        folder.mkdir()
        (folder / "bench_parity_coupled.json").write_text(json.dumps(_coupled_report(seed, curve)))
        folders.append(str(folder))
    out = tmp_path / "summary"
    report = bench_parity.main(["--summarise", *folders, "--output", str(out)])
    (point,) = report["points"]
    assert point["iteration"] == 825 and point["IoU"]["ir_d2"] == [48.5, 49.0, 46.0]
    assert point["ir_d2_minus_official"] == bench_parity.paired_difference([0.5, -1.0, 1.0])
    assert point["control_minus_official"] == bench_parity.paired_difference([-0.5, 1.0, 0.0])
    assert point["distance_excess"] == bench_parity.distance_excess([0.5, -1.0, 1.0], [-0.5, 1, 0])
    assert point["ir_d2_minus_official"]["mean_absolute"] == 0.83
    assert point["ir_d2_minus_control"] == bench_parity.paired_difference([1.0, -2.0, 1.0])
    assert report["final"] == {"iterations": [825] * 3} | {
        k: v for k, v in point.items() if k != "iteration"
    }
    text = (out / "bench_parity_coupled_seeds.md").read_text()
    assert "| 1 | 50.0 / 51.0 / 49.0 | 825: 50.0 / 51.0 / 49.0 |" in text
    assert text in capsys.readouterr().out
    assert json.loads((out / "bench_parity_coupled_seeds.json").read_text())["seeds"] == [0, 1, 2]
    # runs of different lengths share no iteration; they pool at each seed's last test
    shorter = tmp_path / "seed3"
    shorter.mkdir()
    report3 = _coupled_report(3, {330: (20.0, 23.0, 20.5)})
    report3["conditions"] |= {"epochs": 2, "eval_every": 2}
    (shorter / "bench_parity_coupled.json").write_text(json.dumps(report3))
    mixed = bench_parity.main(["--summarise", *folders[1:], str(shorter), "--output", str(out)])
    assert mixed["points"] == [] and mixed["final"]["iterations"] == [825, 825, 330]
    assert mixed["final"]["ir_d2_minus_official"] == bench_parity.paired_difference([-1, 1, 0.5])
    assert mixed["final"]["distance_excess"] == bench_parity.distance_excess(
        [-1, 1, 0.5], [1, 0, 3]
    )
    text = (out / "bench_parity_coupled_seeds.md").read_text()
    assert "| each seed's last test (825, 825, 330) | 0.17 [-2.42, 2.75], mean abs 0.83" in text
    assert "| 3 | 330: 20.0 / 23.0 / 20.5 |" in text

    unfinished = tmp_path / "unfinished.json"
    unfinished.write_text(json.dumps(_coupled_report(5, {825: (1.0, 1.0, 1.0)}, finished=False)))
    with pytest.raises(CommandLineError, match="unfinished.json: an unfinished coupled run"):
        bench_parity.summarise([folders[0], str(unfinished)], out)
    head, official, ours = _parity_report(7, {825: 1.0}, {825: 2.0})
    independent = tmp_path / "independent.json"
    independent.write_text(json.dumps(head | {"official": official, "ir_d2": ours}))
    with pytest.raises(CommandLineError, match="coupled and independent runs cannot be set"):
        bench_parity.summarise([folders[0], str(independent)], out)


def per_seed_table(text: str, title: str) -> dict:
    """The cells of the Markdown table whose header starts with ``| title |``: row name ->
    {seed: cell text}, empty cells left out."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {title} |"))
    seeds = [int(s) for s in lines[start].strip("|").split("|")[1:]]
    table = {}
    for line in itertools.takewhile(lambda s: s.startswith("|"), lines[start + 2 :]):
        name, *cells = [c.strip() for c in line.strip("|").split("|")]
        table[name] = {seed: cell for seed, cell in zip(seeds, cells) if cell}
    return table


def test_the_learning_study_records_in_the_repository_agree_with_its_table():
    """The controlled study's finished runs live in ``benchmarks/results/learning_controlled``
    (bench_learning's layout, one ``run.json`` each), so that a study spread over several
    machines loses none. Every IoU the per-seed table prints without a ``*`` (a run whose record
    was lost) is a record's, to the digit; every record is in the table, made by one code under
    the study's conditions."""
    import bench_learning

    records = sorted(
        (REPO_ROOT / "benchmarks/results/learning_controlled").glob("*/seed*/run.json")
    )
    table = per_seed_table((REPO_ROOT / "benchmarks/README.md").read_text(), "IoU per seed")
    assert set(table) <= {name for name, _, _ in bench_learning.STUDY}
    study = argparse.Namespace(iterations=1000, recipe="controlled", opts=[], eval_frames=0)
    found, codes = set(), set()
    for path in records:
        saved = json.loads(path.read_text())
        run = saved["result"]
        (own,) = [keys for name, _, keys in bench_learning.STUDY if name == run["name"]]
        # the conditions under which today's bench_learning --resume keeps it (2 threads, CPU)
        expected = {**bench_learning.run_conditions(study, "cpu", own), "threads": 2}
        assert saved["tool"] == bench_learning.TOOL and saved["conditions"] == expected, path
        assert path.parent.parent.name == bench_learning.slug(run["name"]), path
        assert path.parent.name == f"seed{run['seed']}" and run["iterations"] == 1000, path
        assert run["test"] == "nudt_sirst_test" and run["train"] == "nudt_sirst_train", path
        assert table[run["name"]][run["seed"]] == f"{run['IoU']:.2f}", path
        found.add((run["name"], run["seed"]))
        codes.add(saved["code"])
    assert len(codes) <= 1  # one code, one study
    printed = {(n, s) for n, cells in table.items() for s, c in cells.items() if "*" not in c}
    assert printed == found  # a figure without its record is marked as such


def test_the_parity_records_in_the_repository_agree_with_its_tables():
    """The crop-256 parity runs live in ``benchmarks/results/parity_dnanet_crop256/seed<k>``
    (bench_parity's report and each side's record), so that runs spread over several machines
    lose none. Every IoU that the per-seed table prints without a ``*`` is a report's last test,
    to the digit; every report is in the table, each run under the one recipe and by one code,
    each side's record is the report's side; the summary over the seeds
    (``bench_parity_seeds.json``) is what ``--summarise`` makes of them today."""
    import bench_parity

    root = REPO_ROOT / "benchmarks/results/parity_dnanet_crop256"
    recipe = {"epochs": 5, "eval_every": 5, "batch": 4, "crop": 256, "base": 256, "workers": 1}
    recipe |= {"channel_size": "three", "backbone": "resnet_10", "optimizer": "Adam", "lr": 0.001}
    recipe |= {"device": "cpu", "threads": 2}
    table = per_seed_table((REPO_ROOT / "benchmarks/README.md").read_text(), "IoU at 825, seed")
    assert set(table) == set(bench_parity.SIDES)
    folders = sorted(root.glob("seed*"), key=lambda p: int(p.name[4:]))
    reports, found, codes = [], set(), set()
    for folder in folders:
        report = json.loads((folder / "bench_parity.json").read_text())
        seed = report["conditions"]["seed"]
        assert report["tool"] == bench_parity.TOOL and folder.name == f"seed{seed}", folder
        assert report["conditions"] == {**recipe, "seed": seed}, folder
        for side in bench_parity.SIDES:
            record = json.loads((folder / f"{side}.json").read_text())
            assert record["conditions"] == report["conditions"], (folder, side)
            assert record["result"] == report[side], (folder, side)
            codes.add(record["code"])
            last = report[side]["curve"][-1]
            assert last["iteration"] == report[side]["iterations"] == 825, (folder, side)
            assert table[side][seed] == f"{last['IoU']:.2f}", (folder, side)
            found.add((side, seed))
        reports.append(report)
    printed = {(side, s) for side, cells in table.items() for s, c in cells.items() if "*" not in c}
    assert printed == found  # a figure without its record is marked as such
    assert len(codes) <= 1  # the seeds of one distribution come from one code
    if len(reports) >= 2:
        names = [str((f / "bench_parity.json").relative_to(REPO_ROOT)) for f in folders]
        summary = json.loads((root / "bench_parity_seeds.json").read_text())
        expected = {"tool": bench_parity.TOOL, **bench_parity.seeds_report(reports, names)}
        assert summary == json.loads(json.dumps(expected))  # as --summarise wrote it


def test_the_coupled_parity_records_in_the_repository_agree_with_their_table():
    """The coupled crop-256 runs live in ``benchmarks/results/parity_dnanet_coupled_crop256/
    seed<k>/bench_parity_coupled.json``. Each row of the README's coupled table (``| coupled
    run |``) is a finished record's test, to the digit, the differences its own; every test of
    every record is in the table, each run under the one recipe and by one code; the summary the
    README quotes is ``--summarise``'s over the records that share an iteration."""
    import bench_parity

    root = REPO_ROOT / "benchmarks/results/parity_dnanet_coupled_crop256"
    recipe = {"batch": 4, "crop": 256, "base": 256, "workers": 1, "channel_size": "three"}
    recipe |= {"backbone": "resnet_10", "optimizer": "Adam", "lr": 0.001, "device": "cpu"}
    recipe |= {"threads": 2, "coupled": True}
    lines = (REPO_ROOT / "benchmarks/README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| coupled run |"))
    rows = set()
    for line in itertools.takewhile(lambda s: s.startswith("|"), lines[start + 2 :]):
        rows.add(tuple(c.strip() for c in line.strip("|").split("|")[:7]))
    found, codes, at = set(), set(), {}  # at: the records that scored each iteration
    every = []
    for path in sorted(root.glob("seed*/bench_parity_coupled.json")):
        report = json.loads(path.read_text())
        every.append((report, path))
        c = report["conditions"]
        assert report["tool"] == bench_parity.TOOL and report["finished"], path
        assert path.parent.name == f"seed{c['seed']}", path
        assert {k: v for k, v in c.items() if k not in bench_parity.SEED_KEYS} == recipe, path
        codes.add(report["code"])
        for point in report["curve"]:
            iou = [point[side]["IoU"] for side in bench_parity.COUPLED_SIDES]
            cells = [f"{x:.2f}" for x in iou] + [
                f"{d:+.2f}" for d in (iou[2] - iou[0], iou[1] - iou[0])
            ]
            found.add((f"seed {c['seed']}", str(point["iteration"]), *cells))
            at.setdefault(point["iteration"], []).append((report, path))
    assert found and rows == found  # every row has its record and every test its row
    assert len(codes) == 1
    text = " ".join("\n".join(lines).split())
    for iteration, records in at.items():
        if len(records) < 2:
            continue
        summary = bench_parity.coupled_seeds_report(*zip(*records))
        (point,) = [p for p in summary["points"] if p["iteration"] == iteration]
        ours, control = point["ir_d2_minus_official"], point["control_minus_official"]
        (low, high), mean = ours["interval_95"], ours["mean"]
        assert f"{mean:+.2f} with a 95% Student t interval of [{low:.2f}, {high:.2f}]" in text
        (low, high), mean = control["interval_95"], control["mean"]
        assert f"the control {mean:+.2f} [{low:.2f}, {high:.2f}]" in text
        absolute = (ours["mean_absolute"], control["mean_absolute"])
        assert "{:.2f} points for ir_d2 and {:.2f} for the control".format(*absolute) in text
        (low, high), mean = (
            point["distance_excess"]["interval_95"],
            point["distance_excess"]["mean"],
        )
        assert f"averages {mean:+.2f} [{low:.2f}, {high:.2f}]" in text
    # every seed at its last test, whatever its length: the pooled figures and their verdicts
    final = bench_parity.coupled_seeds_report(*zip(*every))["final"]
    figures = [
        "{:+.2f} [{:.2f}, {:.2f}]".format(final[key]["mean"], *final[key]["interval_95"])
        for key in ("ir_d2_minus_official", "control_minus_official", "distance_excess")
    ]
    assert (
        f"pooled over all {len(every)} seeds at their last test: ir_d2 - official {figures[0]}, "
        f"the control {figures[1]}, ir_d2's distance minus the control's {figures[2]}"
    ) in text
    assert f'"{final["distance_excess"]["verdict"]}"' in text  # quoted as --summarise gives it
    below = final["ir_d2_minus_control"]
    low, high = below["interval_95"]
    quote = f"{below['mean']:+.2f} with its 95% t interval of [{low:.2f}, {high:.2f}]"
    assert f"ir_d2 minus the control averages {quote}" in text


def test_bench_cpu_memory_alternates_the_runs_and_reports_the_ratio_of_medians(
    tmp_path, monkeypatch
):
    """Off and on alternate (a drift of the machine falls on both); the ratio is on / off of
    the medians over each mode's runs; each run is a fresh process given its own case."""
    import bench_cpu_memory

    cases = []
    seconds = iter([2.0, 1.8, 2.4, 1.7, 2.2, 1.9])  # off, on, off, on, off, on

    def fake_measure(case):
        cases.append(case)
        run = {"keep_freed_memory": case["keep"], "seconds": next(seconds)}
        return run | {"page_faults": 0 if case["keep"] else 9, "peak_rss_MiB": 1.0}

    monkeypatch.setattr(bench_cpu_memory, "measure", fake_measure)
    argv = ["--iterations", "6", "--warmup", "2", "--repeats", "3", "--output", str(tmp_path)]
    record = bench_cpu_memory.main(argv)
    assert [c["keep"] for c in cases] == [False, True] * 3
    assert len({c["output"] for c in cases}) == 6 and {c["warmup"] for c in cases} == {2}
    assert record["ratio"] == round(1.8 / 2.2, 3)
    saved = json.loads((tmp_path / "bench_cpu_memory.json").read_text())
    assert saved["tool"] == "benchmarks/bench_cpu_memory.py" and saved["ratio"] == record["ratio"]
    assert "on / off: 0.818x" in (tmp_path / "bench_cpu_memory.md").read_text()
    with pytest.raises(SystemExit):
        bench_cpu_memory.main(["--iterations", "3", "--warmup", "3"])
