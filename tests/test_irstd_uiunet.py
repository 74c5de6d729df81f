"""
UIU-Net (Wu et al., TIP 2022): registry, its config and the authors' parameter count, the RSU,
IC-A and side-fusion equations, output shapes, training step, output prior, norm key, ONNX
export. The full net has 50 M parameters: every test that does not need the authors' widths
uses BASE_CHANNELS 8, and full-width passes run on 32x32 frames.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import ir_cfg

import ir_d2  # noqa: F401  (registration of the other nets)
from ir_d2.modeling import IRSTD_NET_REGISTRY, build_irstd_net
from ir_d2.modeling.irstd.rsu import RSU, DilatedRSU, rsu_num_params
from ir_d2.modeling.irstd.uiunet import InteractiveCrossAttention, SideFusion, UIUNet

CONFIG = "IRSTD/irstd_uiunet_W64_bs3-500e_nudt_sirst.yaml"
#: the authors' UIUNET(3, 1) (model/uiunet.py) and BasicIRSTD's UIUNet(in_ch=1): 50.54 M
AUTHORS_PARAMS = {3: 50_541_461, 1: 50_540_309}


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def small(**kwargs):
    torch.manual_seed(0)
    return UIUNet(3, 8, **kwargs)


def record_shape(seen, key):
    """A forward hook storing its module's output shape under ``seen[key]`` (returns None, so
    the output is left alone)."""

    def hook(module, inputs, output):
        seen[key] = tuple(output.shape)

    return hook


def randomise_norms(module, seed=1):
    """BatchNorm statistics and affine parameters off their defaults, so that eval-mode checks
    exercise them."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
    return module


# ------------------------------------------------------------------------- registry, config
def test_registered_as_uiunet():
    assert IRSTD_NET_REGISTRY.get("UIUNet") is UIUNet


def test_built_from_its_config_has_the_authors_parameter_count():
    cfg = ir_cfg(CONFIG)
    net = build_irstd_net(cfg)
    assert type(net) is UIUNet
    assert net.in_channels == 3 and net.deep_supervision
    assert net.channels == (64, 128, 256, 512, 512, 512)
    assert n_params(net) == AUTHORS_PARAMS[3]
    cfg.MODEL.IRSTD.IN_CHANNELS = 1
    assert n_params(build_irstd_net(cfg)) == AUTHORS_PARAMS[1]  # BasicIRSTD's thop: 50.54 M


def _rsu_params(depth, cin, mid, out):
    """Independent count of an RSU: its 3x3 convs (with bias) + BatchNorm (2 per channel)."""
    convs = [(cin, out), (out, mid), *[(mid, mid)] * (depth - 1)]
    convs += [*[(2 * mid, mid)] * (depth - 2), (2 * mid, out)]
    return sum(9 * a * b + b + 2 * b for a, b in convs)


def _ica_params(c, r=4):
    b = c // r
    project = c * c + c + 2 * c
    channel = (c * b + b + 2 * b) + (b * c + c + 2 * c)
    spatial = (c * b + b + 2 * b) + 2 * 9
    post = 9 * c * c + c + 2 * c
    return project + channel + spatial + post


def test_parameter_count_decomposes_into_the_papers_blocks():
    # RSU-7(3, 32, 64), counted by hand: 1920 + 18528 + 6 * 9312 + 5 * 18528 + 37056
    assert _rsu_params(7, 3, 32, 64) == 206_016 == n_params(RSU(7, 3, 32, 64))
    for args in [(6, 64, 32, 128), (5, 5, 3, 7), (4, 256, 128, 512)]:
        assert n_params(RSU(*args)) == _rsu_params(*args) == rsu_num_params(*args)
    assert n_params(DilatedRSU(512, 256, 512)) == _rsu_params(4, 512, 256, 512)
    assert n_params(InteractiveCrossAttention(512, 512)) == _ica_params(512)
    encoder = [(7, 3, 32, 64), (6, 64, 32, 128), (5, 128, 64, 256), (4, 256, 128, 512)]
    encoder += [(4, 512, 256, 512)] * 2  # RSU-4F
    decoder = [(4, 1024, 256, 512), (4, 1024, 128, 256), (5, 512, 64, 128)]
    decoder += [(6, 256, 32, 64), (7, 128, 16, 64)]
    total = sum(_rsu_params(*a) for a in encoder + decoder)
    total += sum(_ica_params(c) for c in (512, 512, 256, 128))
    total += sum(9 * c + 1 for c in (64, 64, 128, 256, 512, 512)) + 6 + 1  # sides + fusion
    assert total == AUTHORS_PARAMS[3]


def test_wrong_configurations_raise_naming_the_key():
    net = UIUNet(1, 8)
    with pytest.raises(ValueError, match=r"MODEL\.IRSTD\.IN_CHANNELS"):
        net(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"MODEL\.IRSTD\.IN_CHANNELS"):
        net(torch.zeros(1, 32, 32))
    with pytest.raises(ValueError, match=r"MODEL\.IRSTD\.BASE_CHANNELS"):
        UIUNet(3, 6)
    cfg = ir_cfg(CONFIG, ["MODEL.IRSTD.CHANNELS", "[4, 8, 16, 32, 64]"])
    with pytest.raises(ValueError, match=r"MODEL\.IRSTD\.CHANNELS"):
        build_irstd_net(cfg)


# ---------------------------------------------------------------------------- the blocks
def test_rsu_pools_to_its_coarsest_level_and_is_residual():
    torch.manual_seed(0)
    seen = {}
    rsu = RSU(7, 3, 4, 6).eval()
    rsu.bottom.register_forward_hook(record_shape(seen, "bottom"))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        y = rsu(x)
    assert y.shape == (1, 6, 32, 32)
    assert seen["bottom"][-2:] == (1, 1)  # 5 ceil-mode pools: 32 -> 1
    assert rsu.bottom[0].dilation == (2, 2)
    assert all(layer[0].dilation == (1, 1) for layer in [*rsu.encoder, *rsu.decoder])
    # H(x) = U(F_1(x)) + F_1(x): with the last decoder layer silenced (BN to 0, ReLU(0) = 0),
    # the block is F_1 alone
    rsu.decoder[0][1].weight.data.zero_()
    rsu.decoder[0][1].bias.data.zero_()
    with torch.no_grad():
        torch.testing.assert_close(rsu(x), rsu.conv_in(x), rtol=0, atol=0)
        assert rsu.conv_in(x).abs().sum() > 0


def test_dilated_rsu_keeps_the_size_and_grows_the_dilation():
    torch.manual_seed(0)
    rsu = DilatedRSU(3, 4, 6).eval()
    assert not hasattr(rsu, "pool")
    assert [layer[0].dilation[0] for layer in rsu.encoder] == [1, 2, 4]
    assert [layer[0].dilation[0] for layer in rsu.decoder] == [1, 2, 4]
    assert rsu.bottom[0].dilation[0] == 8
    seen = {}
    rsu.bottom.register_forward_hook(record_shape(seen, "bottom"))
    with torch.no_grad():
        assert rsu(torch.randn(1, 3, 11, 13)).shape == (1, 6, 11, 13)
    assert seen["bottom"][-2:] == (11, 13)


def _conv_bn(seq, x):
    """Conv then BatchNorm (eval) of a conv-norm-act Sequential, functionally."""
    conv, bn = seq[0], seq[1]
    y = F.conv2d(x, conv.weight, conv.bias, padding=conv.padding, dilation=conv.dilation)
    return F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0, bn.eps)


def test_interactive_cross_attention_equations():
    torch.manual_seed(0)
    ica = randomise_norms(InteractiveCrossAttention(6, 8, reduction=4)).eval()
    high, low = torch.randn(2, 6, 5, 7), torch.randn(2, 8, 5, 7)
    with torch.no_grad():
        got = ica(high, low)
        y = torch.relu(_conv_bn(ica.project_high, high))  # Y'
        gap = y.mean(dim=(2, 3), keepdim=True)
        ca = ica.channel_attention
        g = torch.sigmoid(_conv_bn(ca[3:], torch.relu(_conv_bn(ca[:3], gap))))  # G
        z = torch.relu(_conv_bn(ica.spatial_reduce, low * g))
        stats = torch.cat([z.mean(1, keepdim=True), z.max(1, keepdim=True).values], 1)
        s = torch.sigmoid(F.conv2d(stats, ica.spatial_conv.weight, padding=1))  # S

        def post(t):
            return torch.relu(_conv_bn(ica.post, t))

        expected = torch.cat([post(2 * low * g), post(2 * y * s)], dim=1)
    assert got.shape == (2, 16, 5, 7)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert g.shape == (2, 8, 1, 1) and s.shape == (2, 1, 5, 7)
    assert ica.spatial_conv.bias is None and ica.spatial_conv.weight.shape == (1, 2, 3, 3)


def test_side_fusion_is_a_1x1_conv_over_the_resized_side_logits():
    torch.manual_seed(0)
    fusion = SideFusion((4, 6, 8))
    feats = [torch.randn(1, 4, 8, 8), torch.randn(1, 6, 4, 4), torch.randn(1, 8, 2, 2)]
    with torch.no_grad():
        maps = fusion(feats)
        sides = [
            F.interpolate(side(f), size=(8, 8), mode="bilinear", align_corners=False)
            for side, f in zip(fusion.sides, feats)
        ]
        fused = F.conv2d(torch.cat(sides, 1), fusion.fuse.weight, fusion.fuse.bias)
    assert len(maps) == 4 and all(m.shape == (1, 1, 8, 8) for m in maps)
    for m, e in zip(maps, [*sides, fused]):
        torch.testing.assert_close(m, e, rtol=1e-6, atol=1e-6)
    assert all(s.kernel_size == (3, 3) for s in fusion.sides)


# -------------------------------------------------------------------------------- the net
def test_structure_follows_the_authors_code():
    net = small()
    kinds = [(type(s).__name__, s.depth) for s in net.encoder]
    assert kinds == [("RSU", 7), ("RSU", 6), ("RSU", 5), ("RSU", 4)] + [("DilatedRSU", 4)] * 2
    kinds = [(type(s).__name__, s.depth) for s in net.decoder]  # levels 1..5
    assert kinds == [("RSU", 7), ("RSU", 6), ("RSU", 5), ("RSU", 4), ("DilatedRSU", 4)]
    assert sorted(net.fusions) == ["2", "3", "4", "5"]  # IC-A; level 1 concatenates
    assert [net.fusions[k].channels for k in "2345"] == [16, 32, 64, 64]
    assert len(net.output_heads()) == 7 and net.output_heads()[0] is net.side_fusion.fuse


@pytest.mark.parametrize("hw", [(32, 32), (64, 96), (37, 51)])
def test_outputs_with_and_without_deep_supervision(hw):
    net = randomise_norms(small()).eval()
    x = torch.randn(1, 3, *hw)
    with torch.no_grad():
        outs = net(x)
        net.deep_supervision = False
        final = net(x)
    assert isinstance(outs, list) and len(outs) == 7
    assert all(o.shape == (1, 1, *hw) for o in outs)
    assert torch.is_tensor(final) and final.shape == (1, 1, *hw)
    # the fused output is the last, and it is the 1x1 fusion of the 6 side maps
    torch.testing.assert_close(final, outs[-1], rtol=0, atol=0)
    fuse = net.side_fusion.fuse
    torch.testing.assert_close(outs[-1], F.conv2d(torch.cat(outs[:6], 1), fuse.weight, fuse.bias))
    assert not torch.allclose(outs[0], outs[-1])


def test_full_net_trains_one_step_with_gradients_on_every_head():
    # the authors' widths; batch 2: BatchNorm after IC-A's global pool needs > 1 value
    net = build_irstd_net(ir_cfg(CONFIG)).train()
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    target = torch.zeros(2, 1, 32, 32)
    target[:, :, 14:17, 9:12] = 1.0
    outs = net(x)
    assert len(outs) == 7 and all(o.shape == (2, 1, 32, 32) for o in outs)
    # the authors' muti_bce_loss_fusion: the sum of the 7 binary cross-entropies
    loss = sum(F.binary_cross_entropy_with_logits(o, target) for o in outs)
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    for head in net.output_heads():
        assert torch.isfinite(head.weight.grad).all() and head.weight.grad.abs().sum() > 0
    unused = [n for n, p in net.named_parameters() if p.grad is None]
    assert not unused


def test_output_prior_and_xavier_init_from_the_config():
    cfg = ir_cfg(
        CONFIG,
        ["MODEL.IRSTD.BASE_CHANNELS", 8, "MODEL.IRSTD.PRIOR_PROB", 0.01,
         "MODEL.IRSTD.INIT", "xavier"],
    )  # fmt: skip
    net = build_irstd_net(cfg)
    bias = math.log(0.01 / 0.99)
    for head in net.output_heads():
        torch.testing.assert_close(head.bias, torch.full_like(head.bias, bias))
    conv = net.decoder[4].conv_in[0]  # 128 -> 64, 3x3: xavier_normal_ std sqrt(2 / fan sum)
    std = math.sqrt(2.0 / (9 * (conv.in_channels + conv.out_channels)))
    assert abs(conv.weight.std().item() / std - 1) < 0.05
    with pytest.raises(ValueError, match="PRIOR_PROB"):
        net.set_output_prior(1.5)


@pytest.mark.parametrize("norm", ["FrozenBN", "GN", ""])
def test_the_norm_key_replaces_every_batchnorm(norm):
    from detectron2.layers import FrozenBatchNorm2d

    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in small().modules())
    cfg = ir_cfg(CONFIG, ["MODEL.IRSTD.BASE_CHANNELS", 8, "MODEL.IRSTD.NORM", norm])
    net = build_irstd_net(cfg).eval()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    kind = {"FrozenBN": FrozenBatchNorm2d, "GN": torch.nn.GroupNorm}.get(norm)
    if kind is not None:
        assert sum(isinstance(m, kind) for m in net.modules()) == n_bn
    if norm == "GN":  # IC-A's pooled (N, C, 1, 1) branch: one group over all channels
        attention = net.fusions["2"].channel_attention
        assert attention[1].num_groups == attention[4].num_groups == 1
    else:  # no norm: convs and ReLUs only, parameters less the 2 per BN channel
        bn_params = sum(
            n_params(m) for m in small().modules() if isinstance(m, torch.nn.BatchNorm2d)
        )
        assert n_params(net) == n_params(small()) - bn_params
    # 64x64: the RSU bottoms are 2x2 (a 32x32 frame takes them to 1x1, where a GN group of one
    # channel, like a BN over a batch of 1 in training, would hold a single value)
    with torch.no_grad():
        assert torch.isfinite(net(torch.randn(1, 3, 64, 64))[-1]).all()


# ------------------------------------------------------------------------------- export
def test_onnx_export_equals_eager_at_two_sizes(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from ir_d2.export.irstd import IRSTDExportModule, export_irstd_onnx

    net = randomise_norms(small()).eval()
    x64 = torch.randn(1, 3, 64, 64)
    # spread the fused logits (median 0, std 2) so the probabilities have structure
    fuse = net.side_fusion.fuse
    with torch.no_grad():
        logits = net(x64)[-1]
        scale = 2.0 / float(logits.std())
        fuse.weight.mul_(scale)
        fuse.bias.copy_(scale * (fuse.bias - logits.median()))
    module = IRSTDExportModule(net).eval()
    path = tmp_path / "uiunet.onnx"
    export_irstd_onnx(module, x64, str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for x in (x64, torch.randn(1, 3, 96, 128)):
        with torch.no_grad():
            expected = module(x).numpy()
        (got,) = session.run(None, {"image": x.numpy()})
        assert got.shape == expected.shape == (1, 1, *x.shape[-2:])
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
        assert np.percentile(expected, 95) - np.percentile(expected, 5) > 0.3
