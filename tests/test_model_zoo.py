"""
Configs from the package (ir_d2.model_zoo, ir_d2:// bases, zoo paths on the command line), the CPU
fallback of cuda configs, and the "Use from Python" snippet of docs/datasets.md as written.
"""

import logging
import re
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import CONFIGS, REPO_ROOT

from ir_d2 import model_zoo
from ir_d2.engine.defaults import setup_cfg
from ir_d2.tools import train_net
from ir_d2.utils.cli import CommandLineError

SGEM = "IRSTD/irstd_sgem_unet_W40_1500e_nudt_sirst.yaml"


def test_get_config_file_and_get_config_as_detectron2_model_zoo():
    path = model_zoo.get_config_file(SGEM)
    assert path == str((CONFIGS / SGEM).resolve())
    assert model_zoo.get_config_file("ir_d2://" + SGEM) == path
    cfg = model_zoo.get_config(SGEM, ["SOLVER.MAX_ITER", "7"])
    assert cfg.MODEL.IRSTD.NET == "SGEMUNet" and cfg.SOLVER.MAX_ITER == 7
    assert list(cfg.MODEL.IRSTD.CHANNELS) == [40, 64, 128, 256, 560]
    assert not cfg.is_frozen()
    listed = model_zoo.list_configs()
    assert SGEM in listed and len(listed) == len(list(CONFIGS.rglob("*.yaml")))
    for bad in ("IRSTD/nope.yaml", "../setup.py"):
        with pytest.raises(FileNotFoundError, match="model zoo"):
            model_zoo.get_config_file(bad)


def test_a_users_yaml_may_inherit_from_the_zoo(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text(
        '_BASE_: "ir_d2://IR-InstanceSegmentation/mask_rcnn_R_50_BNSA-C3_FPN_100e_ircoco.yaml"\n'
        "SOLVER:\n  BASE_LR: 0.001\n"
    )
    cfg = setup_cfg(str(mine))
    # the zoo file's own relative _BASE_ (../Base-IR-RCNN-FPN.yaml) resolved inside the zoo
    assert cfg.MODEL.BACKBONE.NAME == "build_bnsa_resnet_fpn_backbone"
    assert list(cfg.MODEL.BNSA.STAGES) == ["res3"] and cfg.MODEL.ROI_HEADS.NUM_CLASSES == 4
    assert cfg.SOLVER.BASE_LR == 0.001


def test_train_net_takes_a_zoo_path_and_names_a_missing_config(tmp_path):
    args = train_net.get_parser().parse_args(
        ["--config-file", "quick_schedules/irstd_unet_sirst_instant_test.yaml", "--eval-only"]
    )
    cfg = setup_cfg(args.config_file, ["OUTPUT_DIR", str(tmp_path)])
    assert cfg.MODEL.IRSTD.NET == "UNet" and cfg.MODEL.IRSTD.BASE_CHANNELS == 8
    argv = ["--config-file", str(tmp_path / "missing.yaml"), "OUTPUT_DIR", str(tmp_path)]
    with pytest.raises(CommandLineError) as e:
        train_net.main(train_net.get_parser().parse_args(argv))
    assert "missing.yaml" in str(e.value) and "\n" not in str(e.value)


def test_a_cuda_config_runs_on_the_cpu_with_one_log_line(caplog):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the fallback does not apply")
    with caplog.at_level(logging.WARNING, logger="ir_d2"):
        cfg = setup_cfg(
            str(CONFIGS / "IRSTD/irstd_unet_W32_1500e_sirst.yaml"), ["MODEL.DEVICE", "cuda"]
        )
    assert cfg.MODEL.DEVICE == "cpu"
    lines = [r.getMessage() for r in caplog.records if "no CUDA" in r.getMessage()]
    assert len(lines) == 1 and "MODEL.DEVICE" in lines[0]
    from detectron2.modeling import build_model

    model = build_model(cfg)
    assert next(model.parameters()).device.type == "cpu"


def _doc_python_block(doc: str, heading: str) -> str:
    text = (REPO_ROOT / doc).read_text()
    start = text.index(f"## {heading}")
    return re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)


def test_the_docs_use_from_python_snippet_runs_as_written():
    code = _doc_python_block("docs/datasets.md", "Use from Python")
    namespace = {}
    exec(compile(code, "docs/datasets.md", "exec"), namespace)  # noqa: S102 - our own docs
    model = namespace["model"]
    assert type(model).__name__ == "GeneralizedRCNN"
    assert any(
        name.startswith("backbone.bottom_up.bnsa_res3") for name, _ in model.named_parameters()
    )


def test_a_non_editable_install_finds_its_configs(tmp_path):
    """Build a wheel from a copy of the sources, install it elsewhere, use it from elsewhere."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, src / name)
    shutil.copytree(REPO_ROOT / "configs", src / "configs")
    shutil.copytree(
        REPO_ROOT / "ir_d2", src / "ir_d2", ignore=shutil.ignore_patterns("__pycache__")
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "w"), "."]
    subprocess.run(build, cwd=src, check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "w").glob("ir_d2-*.whl")
    target = tmp_path / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    code = (
        "import ir_d2, os; from ir_d2 import model_zoo; "
        f"p = model_zoo.get_config_file({SGEM!r}); "
        f"c = model_zoo.get_config({SGEM!r}); "
        "print(ir_d2.__file__); print(p); print(c.MODEL.IRSTD.NET, c.MODEL.DEVICE)"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    module, path, net = run.stdout.split("\n")[:3]
    assert module.startswith(str(target)) and path.startswith(str(target))
    assert path.endswith(SGEM) and net.startswith("SGEMUNet")
