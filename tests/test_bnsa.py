"""BNSA block and the BNSA ResNet-FPN backbone."""

import copy

import pytest
import torch
from conftest import CONFIGS, SMALL_RCNN_OPTS, ir_cfg
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, build_backbone, build_model
from detectron2.structures import Instances
from detectron2.utils.events import EventStorage

import ir_d2  # noqa: F401  (registration)
from ir_d2.modeling import BNSABlock
from ir_d2.modeling.backbone.bnsa import sa_fuse
from ir_d2.utils.testing import random_instance_batch

VANILLA = "IR-InstanceSegmentation/mask_rcnn_R_50_FPN_100e_ircoco.yaml"
BNSA_C3C4 = "IR-InstanceSegmentation/mask_rcnn_R_50_BNSA-C3C4_FPN_100e_ircoco.yaml"


# ----------------------------------------------------------------------------- block
@pytest.mark.parametrize("hw", [(32, 32), (17, 23), (1, 1), (2, 5), (9, 1)])
@pytest.mark.parametrize("residual", [True, False])
def test_block_keeps_shape(hw, residual):
    torch.manual_seed(0)
    block = BNSABlock(64, residual=residual, norm="GN")
    x = torch.randn(2, 64, *hw)
    y = block(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("layout", ["per_branch", "shared"])
def test_residual_block_is_identity_at_init_and_learns(layout):
    torch.manual_seed(0)
    block = BNSABlock(32, norm="BN", residual=True, layout=layout)
    x = torch.randn(2, 32, 15, 11, requires_grad=True)
    y = block(x)
    assert torch.equal(y, x)
    # the zero-initialised scale receives a gradient, so the block moves away from the identity
    y.square().sum().backward()
    assert block.scale.grad.abs().item() > 0
    with torch.no_grad():
        block.scale.fill_(0.5)
    assert not torch.allclose(block(x), x)


def test_plain_block_is_not_identity():
    torch.manual_seed(0)
    block = BNSABlock(32, residual=False, norm="")
    x = torch.randn(1, 32, 8, 8)
    assert not torch.allclose(block(x), x)


def test_block_bottleneck_width_and_eq2():
    block = BNSABlock(512, bottleneck_ratio=0.25, norm="BN", layout="shared")
    assert block.mid_channels == 128
    assert block.reduce[0].out_channels == 128 and block.expand[0].out_channels == 512
    block = BNSABlock(512, bottleneck_ratio=0.25, norm="BN")  # per branch: 1x1 in, out of each
    for branch in (block.res_branch, block.attn_branch):
        convs = [m for m in branch if isinstance(m, torch.nn.Conv2d)]
        assert [(c.in_channels, c.out_channels, c.kernel_size[0]) for c in convs] == [
            (512, 128, 1),
            (128, 128, 3),
            (128, 128, 3),
            (128, 512, 1),
        ]
    # eq. 2: X_out = X_attn * X_res + X_attn, against a direct computation
    a, r = torch.tensor([2.0, -1.0, 0.0]), torch.tensor([3.0, 4.0, 5.0])
    assert torch.equal(sa_fuse(r, a), torch.tensor([8.0, -5.0, 0.0]))


def test_block_forward_recomputes_the_per_branch_layout():
    """The default block equals an independent re-computation of our reading of fig. 5 (a 1x1 conv
    before and after each branch, eqs. 1-2 at C channels) from its own weights."""
    torch.manual_seed(2)
    block = BNSABlock(16, norm="", residual=False).eval()
    x = torch.randn(1, 16, 7, 9)
    F = torch.nn.functional

    def chain(convs, t):
        for c in convs:
            t = F.relu(F.conv2d(t, c.weight, c.bias, padding=c.padding))
        return t

    res = chain([m for m in block.res_branch if isinstance(m, torch.nn.Conv2d)], x)
    pooled = F.avg_pool2d(x, 2, 2, ceil_mode=True)
    att = chain([m for m in block.attn_branch if isinstance(m, torch.nn.Conv2d)], pooled)
    att = F.interpolate(att, size=(7, 9), mode="bilinear", align_corners=False)
    torch.testing.assert_close(block(x), att * res + att)  # eq. 2


def test_block_forward_recomputes_the_shared_layout():
    """The "shared" block equals an independent re-computation from its own weights."""
    torch.manual_seed(1)
    block = BNSABlock(16, norm="", residual=False, layout="shared").eval()
    x = torch.randn(1, 16, 7, 9)
    F = torch.nn.functional

    def conv(seq_conv, t):
        return F.conv2d(t, seq_conv.weight, seq_conv.bias, padding=seq_conv.padding)

    y = F.relu(conv(block.reduce[0], x))
    res = F.relu(conv(block.res_branch[2], F.relu(conv(block.res_branch[0], y))))
    pooled = F.avg_pool2d(y, 2, 2, ceil_mode=True)
    att = F.relu(conv(block.attn_branch[3], F.relu(conv(block.attn_branch[1], pooled))))
    att = F.interpolate(att, size=(7, 9), mode="bilinear", align_corners=False)
    expected = conv(block.expand[0], att * res + att)
    torch.testing.assert_close(block(x), expected)


def test_the_block_called_from_python_is_the_papers_plain_form():
    """BNSABlock(C) with no arguments is what MODEL.BNSA.RESIDUAL's default builds: the paper's
    plain form, out = BNSA(x), with no residual scale."""
    from ir_d2.config import get_ir_cfg

    block = BNSABlock(16)
    assert block.residual is False and not hasattr(block, "scale")
    assert get_ir_cfg().MODEL.BNSA.RESIDUAL is block.residual


def test_block_rejects_wrong_channels():
    with pytest.raises(ValueError, match="BNSABlock\\(8\\)"):
        BNSABlock(8, norm="")(torch.zeros(1, 4, 8, 8))
    with pytest.raises(ValueError, match="BOTTLENECK_RATIO"):
        BNSABlock(8, bottleneck_ratio=0.0)
    with pytest.raises(ValueError, match="MODEL.BNSA.LAYOUT"):
        BNSABlock(8, layout="stacked")


# ----------------------------------------------------------------------------- backbone
def _backbone(config_file, opts=()):
    cfg = ir_cfg(config_file, opts)
    return build_backbone(cfg, ShapeSpec(channels=3)), cfg


def test_registry_name():
    assert "build_bnsa_resnet_fpn_backbone" in BACKBONE_REGISTRY


@pytest.mark.parametrize(
    "stages", [["res2"], ["res3"], ["res4"], ["res5"], ["res3", "res4"], ["res2", "res5"]]
)
def test_backbone_outputs_match_vanilla(stages):
    torch.manual_seed(0)
    vanilla, _ = _backbone(VANILLA)
    bnsa, _ = _backbone(BNSA_C3C4, ["MODEL.BNSA.STAGES", stages, "MODEL.BNSA.RESIDUAL", True])
    assert bnsa.output_shape() == vanilla.output_shape()
    blocks = {n.split(".")[1] for n, _ in bnsa.named_modules() if n.startswith("bottom_up.bnsa_")}
    assert blocks == {f"bnsa_{s}" for s in stages}
    channels = {"res2": 256, "res3": 512, "res4": 1024, "res5": 2048}
    for s in stages:
        assert getattr(bnsa.bottom_up, f"bnsa_{s}").channels == channels[s]

    bnsa.load_state_dict(vanilla.state_dict(), strict=False)
    vanilla.eval(), bnsa.eval()
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        out_v, out_b = vanilla(x), bnsa(x)
    assert list(out_b) == list(out_v) == ["p2", "p3", "p4", "p5", "p6"]
    for k in out_v:
        assert out_b[k].shape == out_v[k].shape
        # zero-initialised residual: the BNSA backbone equals the vanilla one at init
        torch.testing.assert_close(out_b[k], out_v[k])


def test_bnsa_changes_features_when_plain_and_leaves_stage_flow_alone():
    torch.manual_seed(0)
    bnsa, _ = _backbone(BNSA_C3C4, ["MODEL.BNSA.RESIDUAL", False])
    bnsa.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        bottom = bnsa.bottom_up
        stem = bottom.stem(x)
        r2 = bottom.res2(stem)
        r3 = bottom.res3(r2)
        r4 = bottom.res4(r3)  # res4 reads the plain res3 output, not the BNSA one
        r5 = bottom.res5(r4)
        out = bottom(x)
    torch.testing.assert_close(out["res2"], r2)
    torch.testing.assert_close(out["res5"], r5)
    torch.testing.assert_close(out["res3"], bottom.bnsa_res3(r3))
    torch.testing.assert_close(out["res4"], bottom.bnsa_res4(r4))


def test_bad_stage_names_name_the_key():
    with pytest.raises(ValueError, match="MODEL.BNSA.STAGES"):
        _backbone(BNSA_C3C4, ["MODEL.BNSA.STAGES", ["res6"]])
    with pytest.raises(ValueError, match="MODEL.BNSA.STAGES"):
        _backbone(
            BNSA_C3C4,
            [
                "MODEL.RESNETS.OUT_FEATURES",
                ["res3", "res4", "res5"],
                "MODEL.FPN.IN_FEATURES",
                ["res3", "res4", "res5"],
                "MODEL.BNSA.STAGES",
                ["res2"],
            ],
        )


def test_freeze_at_keeps_bnsa_trainable():
    bnsa, _ = _backbone(BNSA_C3C4, ["MODEL.BACKBONE.FREEZE_AT", 5])
    stage = (
        "bottom_up.stem.",
        "bottom_up.res2.",
        "bottom_up.res3.",
        "bottom_up.res4.",
        "bottom_up.res5.",
    )
    frozen = [p.requires_grad for n, p in bnsa.named_parameters() if n.startswith(stage)]
    assert frozen and not any(frozen)
    assert all(p.requires_grad for n, p in bnsa.named_parameters() if "bnsa" in n)


@pytest.mark.parametrize("norm", ["GN", "FrozenBN", ""])
def test_norm_choice(norm):
    bnsa, _ = _backbone(BNSA_C3C4, ["MODEL.BNSA.NORM", norm])
    names = {type(m).__name__ for m in bnsa.bottom_up.bnsa_res3.modules()}
    expected = {"GN": "GroupNorm", "FrozenBN": "FrozenBatchNorm2d"}.get(norm)
    if expected:
        assert expected in names
    else:
        assert not names & {"BatchNorm2d", "GroupNorm", "FrozenBatchNorm2d"}


@pytest.mark.parametrize(
    "layout, ratio, added",
    # the counts the BNSA deviation row of projects/BNSA-MaskRCNN/README.md states
    [
        ("per_branch", 0.25, 4271),
        ("shared", 0.25, 3611),
        ("shared", 0.5, 13118),
        ("per_branch", 0.5, 14433),
    ],
)
def test_parameter_overhead_c3c4_r50(layout, ratio, added):
    vanilla, _ = _backbone(VANILLA)
    bnsa, _ = _backbone(
        BNSA_C3C4, ["MODEL.BNSA.LAYOUT", layout, "MODEL.BNSA.BOTTLENECK_RATIO", ratio]
    )
    extra = sum(p.numel() for p in bnsa.parameters()) - sum(p.numel() for p in vanilla.parameters())
    bnsa_only = sum(p.numel() for n, p in bnsa.named_parameters() if "bnsa" in n)
    assert extra == bnsa_only
    assert round(extra / 1e3) == added
    readme = (CONFIGS.parent / "projects" / "BNSA-MaskRCNN" / "README.md").read_text()
    assert f"+{added / 1e3:.3f} M" in readme


# ----------------------------------------------------------------------------- checkpoint
def test_vanilla_checkpoint_loads_with_only_bnsa_missing(tmp_path):
    torch.manual_seed(0)
    vanilla = build_model(ir_cfg(VANILLA))
    DetectionCheckpointer(vanilla, save_dir=str(tmp_path)).save("vanilla")
    bnsa = build_model(ir_cfg(BNSA_C3C4))
    seen = []

    class Recorder(DetectionCheckpointer):
        def _log_incompatible_keys(self, incompatible):
            seen.append(incompatible)
            super()._log_incompatible_keys(incompatible)

    Recorder(bnsa).load(str(tmp_path / "vanilla.pth"))
    (incompatible,) = seen
    assert incompatible.missing_keys
    assert all(".bnsa_res3." in k or ".bnsa_res4." in k for k in incompatible.missing_keys)
    assert not incompatible.unexpected_keys
    # and every vanilla weight arrived under its own name
    sd_v, sd_b = vanilla.state_dict(), bnsa.state_dict()
    for k, v in sd_v.items():
        assert torch.equal(sd_b[k], v), k


# ----------------------------------------------------------------------------- full model
def _fake_batch(n=2, seed=0):
    return random_instance_batch(n, 96, 128, seed=seed)


def _small_cfg(config_file, opts=()):
    return ir_cfg(config_file, [*SMALL_RCNN_OPTS, *opts])


def test_bnsa_mask_rcnn_trains_and_predicts():
    torch.manual_seed(0)
    model = build_model(_small_cfg(BNSA_C3C4))
    model.train()
    with EventStorage():
        losses = model(_fake_batch())
    assert {"loss_cls", "loss_box_reg", "loss_mask", "loss_rpn_cls", "loss_rpn_loc"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    grads = [p.grad for n, p in model.named_parameters() if "bnsa_res4" in n]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)

    model.eval()
    inputs = [{k: v for k, v in d.items() if k != "instances"} for d in _fake_batch(seed=1)]
    with torch.no_grad():
        outputs = model(inputs)
    assert len(outputs) == 2
    for out in outputs:
        inst = out["instances"]
        assert isinstance(inst, Instances) and inst.image_size == (96, 128)
        assert len(inst) <= 10
        assert {"pred_boxes", "scores", "pred_classes", "pred_masks"} <= set(inst.get_fields())


def test_bnsa_model_equals_vanilla_model_at_init():
    torch.manual_seed(0)
    vanilla = build_model(_small_cfg(VANILLA)).eval()
    bnsa = build_model(_small_cfg(BNSA_C3C4, ["MODEL.BNSA.RESIDUAL", True])).eval()
    bnsa.load_state_dict(copy.deepcopy(vanilla.state_dict()), strict=False)
    inputs = [{k: v for k, v in d.items() if k != "instances"} for d in _fake_batch(n=1, seed=3)]
    with torch.no_grad():
        a, b = vanilla(inputs)[0]["instances"], bnsa(inputs)[0]["instances"]
    torch.testing.assert_close(a.scores, b.scores)
    torch.testing.assert_close(a.pred_boxes.tensor, b.pred_boxes.tensor)
