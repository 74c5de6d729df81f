"""ISNet (Zhang et al., CVPR 2022): registry, size, outputs, gradients, its deformable conv, edge
ground truth and edge loss, ONNX export."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import ir_cfg

import ir_d2  # noqa: F401  (registration)
from ir_d2.layers.edge_loss import gradient_magnitude, isnet_edge_loss, mask_edges
from ir_d2.modeling.irstd.build import IRSTD_NET_REGISTRY, build_irstd_net
from ir_d2.modeling.irstd.deform_conv import ModulatedDeformConv2d, modulated_deform_conv2d_sampling
from ir_d2.modeling.irstd.isnet import ISNet, authors_unused_modules

CONFIG = "IRSTD/irstd_isnet_W8_bs12-3000e_nudt_sirst.yaml"
#: a small ISNet for the tests that run it
SMALL = dict(channels=[4, 8, 16, 32], blocks=[1, 1, 1], edge_channels=8, unused_modules=False)


def _n_params(module, trainable=False):
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)


def test_registered():
    assert IRSTD_NET_REGISTRY.get("ISNet") is ISNet


def test_built_from_its_config_with_the_documented_parameter_count():
    cfg = ir_cfg(CONFIG)
    net = build_irstd_net(cfg)
    assert type(net) is ISNet
    assert net.channels == (8, 16, 32, 64) and net.blocks == (4, 4, 4) and net.in_channels == 3
    # SGEM's Table 1: 1.09 M = the authors' model's parameters(), never-called modules included
    assert _n_params(net) == 1_090_671
    assert _n_params(net, trainable=True) == 986_962
    assert _n_params(net.unused) == 103_709 and not any(
        p.requires_grad for p in net.unused.parameters()
    )
    cfg.MODEL.IRSTD.IN_CHANNELS = 1  # BasicIRSTD's input
    assert _n_params(build_irstd_net(cfg)) == 1_090_395
    cfg.MODEL.IRSTD.ISNET.UNUSED_MODULES = False
    net = build_irstd_net(cfg)
    assert net.unused is None and _n_params(net) == 986_686


def test_the_unused_modules_count_in_closed_form():
    def res(c):  # two 3x3 convs without bias + two BN
        return 2 * 9 * c * c + 4 * c

    def gate(c):  # 1x1 weight, BN(c+1), conv (c+1 -> c+1) + bias, conv (c+1 -> 1) + bias, BN(1)
        return c * c + 2 * (c + 1) + (c + 1) ** 2 + (c + 1) + (c + 1) + 1 + 2

    expected = res(64) + res(32) + res(16) + (64 * 32 + 32) + (32 * 16 + 16) + (16 * 8 + 8)
    expected += 4 + gate(32) + gate(16) + gate(8)
    expected += (4 * 1 + 2) + (4 * 4 + 8)  # shuffle attentions: 4 vectors + GroupNorm
    expected += 16 * 4 * 9 + 2 * 4 + 4 * 3 + 3  # head2 on c1 = 16
    expected += (3 + 1) + (3 * 16 + 16)
    assert _n_params(authors_unused_modules(16)) == expected == 103_709


@pytest.mark.parametrize("hw", [(64, 64), (32, 96)])
def test_eval_output_is_the_mask_logits(hw):
    torch.manual_seed(0)
    net = ISNet(3, **SMALL).eval()
    with torch.no_grad():
        y = net(torch.randn(2, 3, *hw))
    assert isinstance(y, torch.Tensor) and y.shape == (2, 1, *hw)
    assert torch.isfinite(y).all() and y.std() > 0


def test_default_net_and_odd_sizes():
    torch.manual_seed(0)
    net = ISNet(1).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 1, 32, 64)).shape == (1, 1, 32, 64)
        small = ISNet(3, **SMALL).eval()
        assert small(torch.randn(1, 3, 37, 51)).shape == (1, 1, 37, 51)


def test_training_output_and_gradients():
    torch.manual_seed(0)
    net = ISNet(3, **{**SMALL, "unused_modules": True}).train()
    x = torch.randn(2, 3, 64, 64)
    out = net(x)
    assert set(out) == {"logits", "edge"}
    logits, edge = out["logits"], out["edge"]
    assert logits.shape == edge.shape == (2, 1, 64, 64)
    assert torch.isfinite(logits).all() and torch.isfinite(edge).all()
    targets = torch.zeros(2, 64, 64)
    targets[:, 20:24, 30:33] = 1
    loss = torch.sigmoid(logits).mean() + isnet_edge_loss(edge, targets, torch.ones(2, 64, 64))
    loss.backward()
    assert torch.isfinite(loss)
    grads = {n: p.grad for n, p in net.named_parameters()}
    assert all(
        g is not None and torch.isfinite(g).all()
        for n, g in grads.items()
        if not n.startswith("unused.")
    )
    assert all(g is None for n, g in grads.items() if n.startswith("unused."))
    head = net.output_heads()[0]
    assert head is net.head.logits and head.weight.grad.abs().sum() > 0
    assert net.edge_out.weight.grad.abs().sum() > 0
    assert net.toaa1.dcn_row.conv_offset_mask.weight.grad.abs().sum() > 0


def test_init_hooks_and_authors_init():
    torch.manual_seed(0)
    net = ISNet(3)
    net.set_output_prior(0.01)
    assert torch.allclose(net.head.logits.bias, torch.tensor([-math.log(99.0)]))
    # the code's weight_init: conv N(0, 0.02), BN weight N(1, 0.02), bias N(0, 1)
    w = torch.cat([m.weight.flatten() for m in net.tfd.modules() if isinstance(m, torch.nn.Conv2d)])
    assert abs(float(w.std()) - 0.02) < 1e-3
    bn = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    bias = torch.cat([m.bias.flatten() for m in bn])
    assert (
        0.9 < float(bias.std()) < 1.1
        and abs(float(torch.cat([m.weight for m in bn]).std()) - 0.02) < 3e-3
    )
    # the gated conv keeps Xavier (std sqrt(2 / 128) = 0.125), the DCN its uniform +-1/sqrt(3C)
    assert abs(float(net.tfd[0].gate.weight.std()) - 0.125) < 0.01
    dcn = net.toaa2.dcn_col
    assert dcn.weight.abs().max() <= 1 / math.sqrt(32 * 3) and dcn.bias.abs().max() == 0
    net.init_weights("xavier")
    assert abs(float(net.tfd[0].res1.body[0].weight.std()) - math.sqrt(2 / (2 * 64 * 9))) < 2e-3


def test_norm_key_and_wrong_channels_name_the_keys():
    cfg = ir_cfg(CONFIG, ["MODEL.IRSTD.NORM", "GN", "MODEL.IRSTD.ISNET.EDGE_CHANNELS", 8])
    net = build_irstd_net(cfg)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert sum(isinstance(m, torch.nn.GroupNorm) for m in net.modules()) > 50
    with pytest.raises(ValueError, match="MODEL.IRSTD.IN_CHANNELS"):
        net(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="MODEL.IRSTD.ISNET.DEFORM_IMPL"):
        ISNet(3, deform_impl="cuda")
    with pytest.raises(ValueError, match="MODEL.IRSTD.CHANNELS"):
        ISNet(3, channels=[8, 16, 32])


@pytest.mark.parametrize("kernel", [(3, 1), (1, 3), (3, 3)])
def test_sampling_deform_conv_equals_torchvision(kernel):
    from torchvision.ops import deform_conv2d

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 9, 11, generator=g)
    k = kernel[0] * kernel[1]
    offset = 3.0 * torch.randn(2, 2 * k, 9, 11, generator=g)  # many samples leave the frame
    mask = torch.rand(2, k, 9, 11, generator=g)
    weight = torch.randn(4, 5, *kernel, generator=g)
    bias = torch.randn(4, generator=g)
    padding = (kernel[0] // 2, kernel[1] // 2)
    expected = deform_conv2d(x, offset, weight, bias, padding=padding, mask=mask)
    got = modulated_deform_conv2d_sampling(x, offset, mask, weight, bias, padding)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # zero offsets and unit modulation: an ordinary convolution
    plain = modulated_deform_conv2d_sampling(
        x, torch.zeros_like(offset), torch.ones_like(mask), weight, bias, padding
    )
    torch.testing.assert_close(
        plain, F.conv2d(x, weight, bias, padding=padding), atol=1e-5, rtol=1e-5
    )
    # the module: the same output by both implementations, with learned offsets
    m = ModulatedDeformConv2d(5, 4, kernel, impl="torchvision")
    torch.nn.init.normal_(m.conv_offset_mask.weight, 0, 0.5)
    a = m(x)
    m.impl = "sampling"
    torch.testing.assert_close(m(x), a, atol=1e-5, rtol=1e-5)


def test_gradient_magnitude_is_the_codes_central_difference_conv():
    x = torch.randn(2, 3, 7, 9, generator=torch.Generator().manual_seed(0))
    kv = torch.tensor([[0.0, -1, 0], [0, 0, 0], [0, 1, 0]])[None, None]
    kh = torch.tensor([[0.0, 0, 0], [-1, 0, 1], [0, 0, 0]])[None, None]
    ref = []
    for c in range(3):
        v = F.conv2d(x[:, c : c + 1], kv, padding=1)
        h = F.conv2d(x[:, c : c + 1], kh, padding=1)
        ref.append(torch.sqrt(v**2 + h**2 + 1e-6))
    torch.testing.assert_close(gradient_magnitude(x), torch.cat(ref, 1), atol=1e-6, rtol=0)


def test_mask_edges_by_hand():
    flat, one, two = math.sqrt(1e-6), math.sqrt(1 + 1e-6), math.sqrt(2 + 1e-6)
    # a single target pixel: its 4 neighbours are edges (one difference of +-1), itself is flat
    m = torch.zeros(1, 5, 5)
    m[0, 2, 2] = 1
    expected = torch.full((5, 5), flat)
    for i, j in [(1, 2), (3, 2), (2, 1), (2, 3)]:
        expected[i, j] = one
    torch.testing.assert_close(mask_edges(m)[0, 0], expected, atol=1e-7, rtol=0)
    # a 2x2 square at rows/cols 1-2 of a 4x4 frame: every pixel of the square is a corner (both
    # differences +-1); the 8 pixels beside its sides have one; the frame's 4 corners are flat
    sq = torch.zeros(1, 1, 4, 4)
    sq[..., 1:3, 1:3] = 1
    expected = torch.tensor(
        [[flat, one, one, flat], [one, two, two, one], [one, two, two, one], [flat, one, one, flat]]
    )
    torch.testing.assert_close(mask_edges(sq)[0, 0], expected, atol=1e-7, rtol=0)


def test_edge_loss_closed_form():
    flat, one = math.sqrt(1e-6), math.sqrt(1 + 1e-6)
    m = torch.zeros(1, 5, 5)
    m[0, 2, 2] = 1
    z = torch.zeros(1, 1, 5, 5)  # sigmoid(0) = 1/2: the cross-entropy is log 2 for any target
    sum_e, n = 4 * one + 21 * flat, 25
    for double, q in [(True, 1 / (1 + math.exp(-0.5))), (False, 0.5)]:
        iou = q * sum_e / (q * n + sum_e - q * sum_e)
        for weight in (10.0, 3.0):
            expected = weight * math.log(2) + 1 - iou
            got = isnet_edge_loss(z, m, torch.ones(1, 5, 5), weight, double_sigmoid=double)
            assert got.dtype == torch.float32 and abs(float(got) - expected) < 1e-5


def test_edge_loss_equals_an_independent_recomputation():
    g = torch.Generator().manual_seed(0)
    z = 2 * torch.randn(3, 1, 12, 10, generator=g)
    m = (torch.rand(3, 12, 10, generator=g) > 0.8).float()
    e = mask_edges(m)
    p = torch.sigmoid(z)
    bce = -(e * torch.log(p) + (1 - e) * torch.log(1 - p)).mean()
    q = torch.sigmoid(p)
    inter = (q * e).sum(dim=(1, 2, 3))
    iou = inter / (q.sum(dim=(1, 2, 3)) + e.sum(dim=(1, 2, 3)) - inter)
    expected = 10 * bce + 1 - iou.mean()
    torch.testing.assert_close(
        isnet_edge_loss(z, m, torch.ones(3, 12, 10)), expected, atol=1e-5, rtol=1e-5
    )
    # bounded for huge logits where the target exceeds 1 (the logs are floored at -100)
    assert torch.isfinite(isnet_edge_loss(torch.full_like(z, 1e4), m))


def test_edge_loss_leaves_the_padding_out():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2, 1, 6, 7, generator=g)
    m = torch.zeros(2, 6, 7)
    m[0, 2:4, 5:7] = 1  # touches the right border: its edge spills into the padding
    m[1, 0, 0] = 1
    plain = isnet_edge_loss(z, m)
    zp = torch.randn(2, 1, 8, 8, generator=g) * 5
    zp[..., :6, :7] = z
    mp = torch.zeros(2, 8, 8)
    mp[:, :6, :7] = m
    valid = torch.zeros(2, 8, 8)
    valid[:, :6, :7] = 1
    torch.testing.assert_close(isnet_edge_loss(zp, mp, valid), plain, atol=1e-6, rtol=1e-6)
    assert abs(float(isnet_edge_loss(zp, mp, torch.ones(2, 8, 8)) - plain)) > 1e-3


def test_onnx_export_equals_eager_at_two_sizes(tmp_path):
    import onnx
    import onnxruntime as ort

    from ir_d2.export.irstd import IRSTDExportModule, export_irstd_onnx

    torch.manual_seed(0)
    net = ISNet(3, **SMALL).eval()
    for m in net.modules():  # BN statistics and DCN offsets off their defaults
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
        if isinstance(m, ModulatedDeformConv2d):
            torch.nn.init.normal_(m.conv_offset_mask.weight, 0, 0.3)
    module = IRSTDExportModule(net).eval()
    x0 = torch.randn(1, 3, 64, 64)
    with torch.no_grad():  # logits of median 0 and std 2: probabilities spread over (0, 1)
        logits = net(x0)
        scale = 2.0 / float(logits.std())
        net.head.logits.weight.mul_(scale)
        net.head.logits.bias.copy_(scale * (net.head.logits.bias - logits.median()))
    path = str(tmp_path / "isnet.onnx")
    export_irstd_onnx(module, x0, path)
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert "GridSample" in ops and "DeformConv" not in ops
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for hw in [(64, 64), (96, 128)]:
        x = torch.randn(1, 3, *hw)
        with torch.no_grad():
            expected = module(x).numpy()
        got = session.run(None, {"image": x.numpy()})[0]
        assert got.shape == expected.shape == (1, 1, *hw)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
        assert np.percentile(expected, 95) - np.percentile(expected, 5) > 0.2
