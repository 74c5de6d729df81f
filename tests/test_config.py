"""add_ir_config and the model-zoo configs."""

from pathlib import Path

import pytest
from conftest import CONFIGS, ir_cfg
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from ir_d2 import add_ir_config

ALL_CONFIGS = sorted(
    str(p.relative_to(CONFIGS))
    for p in Path(CONFIGS).rglob("*.yaml")
    if not p.name.startswith("Base")
)


def _flatten(node, prefix=""):
    out = {}
    for k, v in node.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_add_ir_config_only_adds_keys_and_is_idempotent():
    base = _flatten(get_cfg())
    cfg = get_cfg()
    add_ir_config(cfg)
    added = _flatten(cfg)
    for k, v in base.items():
        assert added[k] == v, f"add_ir_config changed detectron2's default {k}"
    # detectron2's own global defaults are untouched
    assert "BNSA" not in get_cfg().MODEL
    assert cfg.MODEL.BNSA.STAGES == ["res3", "res4"]
    assert cfg.MODEL.BNSA.NORM == "BN" and cfg.MODEL.BNSA.BOTTLENECK_RATIO == 0.25
    assert cfg.MODEL.BNSA.RESIDUAL is False and cfg.MODEL.BNSA.LAYOUT == "per_branch"
    assert cfg.MODEL.ROI_MASK_HEAD.LOVASZ == "softmax"
    add_ir_config(cfg)
    assert _flatten(cfg) == added


def test_every_key_is_commented():
    """Each `cfg.X = ...` line of config.py has a comment line right above it (or a CN())."""
    src = (CONFIGS.parent / "ir_d2" / "config.py").read_text().splitlines()
    for i, line in enumerate(src):
        s = line.strip()
        if s.startswith("cfg.") and "=" in s and "CN()" not in s:
            assert src[i - 1].strip().startswith("#"), f"config.py:{i + 1} has no comment: {s}"


def test_unknown_key_names_the_key():
    cfg = get_cfg()
    add_ir_config(cfg)
    with pytest.raises(AssertionError, match="MODEL.BNSA.STAGE"):
        cfg.merge_from_list(["MODEL.BNSA.STAGE", ["res3"]])


@pytest.mark.parametrize("config_file", ALL_CONFIGS)
def test_config_merges_and_builds(config_file):
    cfg = ir_cfg(config_file)
    model = build_model(cfg)
    classical = cfg.MODEL.IRSTD.NET in ("TopHat", "MaxMedian")  # no parameters by design
    assert (sum(p.numel() for p in model.parameters()) > 0) != classical
