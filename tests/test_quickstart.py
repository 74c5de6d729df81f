"""The main job (python -m ir_d2.tools.quickstart) in smoke mode, and the set-up script's checks."""

import importlib.util
import json
import logging
import os
import subprocess
import sys

import cv2
import pytest
from conftest import REPO_ROOT

from ir_d2.engine.defaults import _setup_ir_logger
from ir_d2.engine.trainer import IRTrainer
from ir_d2.tools import quickstart
from ir_d2.utils.cli import CommandLineError


def test_the_main_job_writes_the_table_the_roc_plot_and_overlays(tmp_path, monkeypatch):
    monkeypatch.setenv("IR_D2_DATASETS", str(tmp_path / "no_datasets"))  # -> the synthetic set
    out = tmp_path / "quick"
    scored = []
    test = IRTrainer.test.__func__
    monkeypatch.setattr(
        IRTrainer, "test", classmethod(lambda cls, *a, **k: scored.append(1) or test(cls, *a, **k))
    )
    summary = quickstart.main(["--output", str(out), "--overlays", "3", "SOLVER.MAX_ITER", "3"])
    assert len(scored) == 1  # the test set is scored once (detectron2's end-of-training test)
    assert summary["data"] == "synthetic" and summary["test"] == "ir_synthetic_test"
    saved = json.loads((out / "results.json").read_text())
    assert set(saved["metrics"]) == {"IoU", "nIoU", "Pd", "Fa", "F1"}
    assert len(saved["roc"]["Pd"]) == len(saved["roc"]["thresholds"]) == 13
    table = (out / "results.md").read_text()
    assert "| model" in table and "Fa (1e-6)" in table
    roc = cv2.imread(str(out / "roc.png"))
    assert roc is not None and roc.shape[0] > 300
    overlays = sorted((out / "overlays").glob("*.png"))
    assert len(overlays) == 3
    assert cv2.imread(str(out / "overlays.png")).shape == (256, 3 * 256, 3)
    # run again: training is not repeated (resumed from the finished checkpoint)
    before = (out / "model_final.pth").stat().st_mtime_ns
    quickstart.main(["--output", str(out), "--overlays", "3", "SOLVER.MAX_ITER", "3"])
    assert (out / "model_final.pth").stat().st_mtime_ns == before
    assert len(scored) == 2  # once more, not twice


def test_a_tool_with_its_own_console_logger_prints_each_ir_d2_line_once(tmp_path, monkeypatch):
    ir_logger = logging.getLogger("ir_d2")
    console = logging.StreamHandler(sys.stdout)  # what the quickstart sets up before train_net
    monkeypatch.setattr(ir_logger, "handlers", [console])
    _setup_ir_logger(str(tmp_path))  # train_net's set-up after it
    streams = [getattr(h, "stream", None) for h in ir_logger.handlers]
    assert streams.count(sys.stdout) == 1
    assert [getattr(s, "name", "") for s in streams if s is not sys.stdout] == [
        str(tmp_path / "log.txt")
    ]


def test_the_main_job_never_writes_into_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "mine.txt").write_text("x")
    with pytest.raises(CommandLineError, match="not written by the quickstart"):
        quickstart.main(["--output", str(tmp_path)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


def test_choose_data_takes_sirst_when_present(tmp_path, monkeypatch):
    monkeypatch.setenv("IR_D2_DATASETS", str(tmp_path))
    assert quickstart.choose_data()[0] == "synthetic"
    with pytest.raises(FileNotFoundError, match="IR_D2_DATASETS"):
        quickstart.choose_data("sirst")
    (tmp_path / "sirst" / "50_50").mkdir(parents=True)
    (tmp_path / "sirst" / "50_50" / "train.txt").write_text("Misc_1\n")
    assert quickstart.choose_data() == ("sirst", "sirst_train", "sirst_test")
    assert quickstart.choose_data("synthetic")[0] == "synthetic"


# ----------------------------------------------------------------------------- set-up script
@pytest.fixture(scope="module")
def bootstrap():
    spec = importlib.util.spec_from_file_location("bootstrap", REPO_ROOT / "scripts/bootstrap.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_setup_refuses_an_old_python_in_one_line(bootstrap, tmp_path):
    with pytest.raises(bootstrap.SetupError, match="Python >= 3.10, this is 3.9"):
        bootstrap.check_python((3, 9))
    bootstrap.check_python((3, 10))
    fake = tmp_path / "python3.8"  # a Python that reports 3.8 runs the real script
    fake.write_text(
        "#!/bin/sh\n"
        f'exec {sys.executable} -c "import sys, runpy; sys.version_info = (3, 8, 0); '
        f'sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name=\'__main__\')" "$@"\n'
    )
    fake.chmod(0o755)
    run = subprocess.run(
        [str(REPO_ROOT / "setup.sh"), "install"],
        env={**os.environ, "PYTHON": str(fake)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1 and run.stderr.count("\n") == 1
    assert "setup.sh: ir_d2 needs Python >= 3.10, this is 3.8" in run.stderr


def test_setup_names_a_missing_compiler_and_an_unreachable_source(bootstrap, tmp_path):
    assert bootstrap.find_compiler({"PATH": str(tmp_path), "CXX": ""}) is None
    assert bootstrap.find_compiler({"PATH": os.environ["PATH"]}) is not None
    default, local = bootstrap.detectron2_source({})
    assert not local and default == (
        f"git+https://github.com/facebookresearch/detectron2.git@{bootstrap.DETECTRON2_COMMIT}"
    )
    assert bootstrap.detectron2_source({"DETECTRON2_SRC": str(tmp_path)}) == (str(tmp_path), True)
    assert bootstrap._git_url(default) == "https://github.com/facebookresearch/detectron2.git"
    unreachable = "git+https://ir-d2-no-such-host.invalid/detectron2.git@abc"
    with pytest.raises(bootstrap.SetupError) as e:
        bootstrap.check_reachable(unreachable, timeout=20)
    assert "cannot be reached" in str(e.value) and "DETECTRON2_SRC" in str(e.value)


def test_setup_is_idempotent_here(bootstrap):
    """Everything is installed in the interpreter running the tests: a set-up run with it
    (``PYTHON``) checks and keeps each part. Where a part is missing the test skips rather than
    let set-up install it (no test installs packages)."""
    found = bootstrap.probe()  # with sys.executable, as setup.sh with PYTHON below
    missing = [part for part in ("torch", "setuptools", "detectron2", "ir_d2") if not found[part]]
    if missing:
        pytest.skip(f"{sys.executable} lacks {missing}: set-up would install them")
    run = subprocess.run(
        [str(REPO_ROOT / "setup.sh"), "install"],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    for part in ("torch", "setuptools", "detectron2", "ir_d2"):
        assert any(
            line.startswith(f"[setup] {part}") and "kept" in line
            for line in run.stdout.splitlines()
        ), run.stdout
    assert "set-up checked" in run.stdout
