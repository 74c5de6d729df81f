"""ACM and ALCNet (Dai et al. 2021): registry, configs, sizes, equations, gradients, export."""

import math

import numpy as np
import pytest
import torch
from conftest import ir_cfg

import ir_d2  # noqa: F401  (registration of the other nets)
from ir_d2.export.irstd import IRSTDExportModule, export_irstd_onnx
from ir_d2.modeling.irstd.acm import ACM
from ir_d2.modeling.irstd.acm_backbone import input_norm
from ir_d2.modeling.irstd.acm_fusion import AsymBiFusion
from ir_d2.modeling.irstd.alcnet import (
    ALCNet,
    BottomUpLocalModulation,
    local_contrast,
    multiscale_local_contrast,
)
from ir_d2.modeling.irstd.build import IRSTD_NET_REGISTRY, build_irstd_net

CONFIGS = {
    "ACM": "IRSTD/irstd_acm_W8_bs8-300e_nudt_sirst.yaml",
    "ALCNet": "IRSTD/irstd_alcnet_W8_bs2-300e_nudt_sirst.yaml",
}
CLASSES = {"ACM": ACM, "ALCNet": ALCNet}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small tensors: one intra-op thread is faster, and much faster on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def n_params(net):
    return sum(p.numel() for p in net.parameters())


# Parameter counts recomputed by hand from the authors' layer list (bias only where their layer
# has one; BatchNorm: 2 per channel; the stem's input BatchNorm has none).
def _bn(c):
    return 2 * c


def _conv(cin, cout, k, bias=False):
    return cin * cout * k * k + (cout if bias else 0)


def _block(cin, cout):
    shortcut = _conv(cin, cout, 1) + _bn(cout) if cin != cout else 0
    return _conv(cin, cout, 3) + _bn(cout) + _conv(cout, cout, 3) + _bn(cout) + shortcut


def _stages(c, b):
    total = 0
    for i in range(3):
        cin = c[1] if i == 0 else c[i]
        total += _block(cin, c[i + 1]) + (b[i] - 1) * _block(c[i + 1], c[i + 1])
    return total


def _head(c):
    return _conv(c, c // 4, 3) + _bn(c // 4) + _conv(c // 4, 1, 1, bias=True)


def _attention(c, r):  # one of G (global) or L (point-wise): conv-BN-ReLU-conv-BN, biases
    return _conv(c, c // r, 1, True) + _bn(c // r) + _conv(c // r, c, 1, True) + _bn(c)


def _asym_bi(c, high=None):
    project = _conv(high, c, 1, True) + _bn(c) if high else 0
    return project + 2 * _attention(c, 4) + _conv(c, c, 3, True) + _bn(c)


def acm_params(cin, c, b, arch):
    stem = _conv(cin, c[0], 3) + _bn(c[0]) + _conv(c[0], c[0], 3) + _bn(c[0])
    stem += _conv(c[0], c[1], 3) + _bn(c[1])
    total = stem + _stages(c, b) + _head(c[1])
    if arch == "fpn":
        return total + _asym_bi(c[2], c[3]) + _asym_bi(c[1], c[2])
    deconvs = _conv(c[3], c[2], 4, True) + _conv(c[2], c[1], 4, True)
    ups = b[1] * _block(c[2], c[2]) + b[0] * _block(c[1], c[1])
    return total + deconvs + _asym_bi(c[2]) + _asym_bi(c[1]) + ups


def alcnet_params(cin, c, b):
    stem = _conv(cin, c[1], 3) + _bn(c[1])
    projections = _conv(c[3], c[1], 1) + _bn(c[1]) + _conv(c[2], c[1], 1) + _bn(c[1])
    blam = 2 * _bn(c[1]) + _attention(c[1], 1)
    return stem + _stages(c, b) + projections + 2 * blam + _head(c[1])


def test_registered_under_their_names():
    assert IRSTD_NET_REGISTRY.get("ACM") is ACM
    assert IRSTD_NET_REGISTRY.get("ALCNet") is ALCNet


@pytest.mark.parametrize(
    "name, params, params_gray",
    [("ACM", 289_965, 289_821), ("ALCNet", 372_573, 372_285)],
)
def test_built_from_its_config_with_the_documented_size(name, params, params_gray):
    cfg = ir_cfg(CONFIGS[name])
    net = build_irstd_net(cfg)
    assert type(net) is CLASSES[name]
    assert net.in_channels == 3 and net.channels == (8, 16, 32, 64)
    assert n_params(net) == params
    w, b = (8, 16, 32, 64), (3, 3, 3) if name == "ACM" else (4, 4, 4)
    closed = acm_params(3, w, b, "fpn") if name == "ACM" else alcnet_params(3, w, b)
    assert closed == params
    cfg.MODEL.IRSTD.IN_CHANNELS = 1
    assert n_params(build_irstd_net(cfg)) == params_gray
    # [] takes the net's defaults: the same net
    cfg.MODEL.IRSTD.CHANNELS, cfg.MODEL.IRSTD.BLOCKS = [], []
    assert n_params(build_irstd_net(cfg)) == params_gray


def test_the_other_settings_of_the_papers_tables():
    # ASKCResUNet with the defaults: BasicIRSTD's "ACM" (thop 0.397823 M with its affine input BN)
    unet = ACM(1, arch="unet")
    assert n_params(unet) == acm_params(1, (8, 16, 32, 64), (3, 3, 3), "unet") == 397_821
    # SGEM's Table 1 ACM (1.54 M): the FPN with --channel-times 2 and --blocks 4
    sgem = ACM(3, channels=[16, 32, 64, 128], blocks=[4, 4, 4], arch="fpn")
    assert n_params(sgem) == acm_params(3, (16, 32, 64, 128), (4, 4, 4), "fpn") == 1_542_873
    assert abs(n_params(sgem) / 1.54e6 - 1) < 0.03
    assert abs(alcnet_params(3, (8, 16, 32, 64), (4, 4, 4)) / 0.38e6 - 1) < 0.03


@pytest.mark.parametrize("make", [ACM, lambda c: ACM(c, arch="unet"), ALCNet])
@pytest.mark.parametrize("hw", [(32, 32), (64, 96), (37, 51)])
def test_output_is_one_logit_map_at_the_input_size(make, hw):
    torch.manual_seed(0)
    net = make(1).eval()
    with torch.no_grad():
        y = net(torch.randn(2, 1, *hw))
    assert y.shape == (2, 1, *hw)
    assert torch.isfinite(y).all() and y.std() > 0


@pytest.mark.parametrize("make", [ACM, lambda c: ACM(c, arch="unet"), ALCNet])
def test_forward_backward_reaches_the_head(make):
    torch.manual_seed(0)
    net = make(3).train()
    x = torch.randn(2, 3, 64, 64)
    target = (torch.rand(2, 1, 64, 64) > 0.97).float()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x), target)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    (head,) = net.output_heads()
    assert head.weight.grad.abs().sum() > 0 and head.bias.grad.abs().sum() > 0
    # the first conv of the stem learns too (the gradient crosses the whole net)
    first = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["ACM", "ALCNet"])
def test_output_prior_and_xavier_init(name):
    net = build_irstd_net(
        ir_cfg(CONFIGS[name], ["MODEL.IRSTD.PRIOR_PROB", 0.01, "MODEL.IRSTD.INIT", "xavier"])
    )
    (head,) = net.output_heads()
    assert head is net.head[-1] and head.out_channels == 1 and head.kernel_size == (1, 1)
    assert torch.allclose(head.bias, torch.tensor([-math.log(99.0)]))
    net.set_output_prior(0.2)
    assert torch.allclose(head.bias, torch.tensor([-math.log(4.0)]))


def test_xavier_reaches_the_transposed_convs():
    torch.manual_seed(0)
    net = ACM(3, channels=[8, 16, 32, 256], arch="unet")
    before = net.deconv2.weight.detach().clone()
    net.init_weights("xavier")
    after = net.deconv2.weight.detach()
    assert not torch.equal(before, after)
    fan_in, fan_out = 32 * 16, 256 * 16  # weight (256, 32, 4, 4): std sqrt(2 / (fi + fo))
    assert abs(after.std().item() / math.sqrt(2 / (fan_in + fan_out)) - 1) < 0.05


@pytest.mark.parametrize("name", ["ACM", "ALCNet"])
def test_onnx_equals_eager_at_two_sizes(name, tmp_path):
    import onnxruntime as ort

    torch.manual_seed(0)
    net = CLASSES[name](1, blocks=[1, 1, 1]).eval()
    for m in net.modules():  # BN statistics and affine parameters off their defaults
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            if m.affine:
                m.weight.data.uniform_(0.5, 2.0)
                m.bias.data.uniform_(-0.5, 0.5)
    head = net.output_heads()[0]
    with torch.no_grad():  # logits of median 0, std 2: a probability map with structure
        logits = net(torch.randn(1, 1, 64, 64))
        scale = 2.0 / float(logits.std())
        head.weight.mul_(scale)
        head.bias.copy_(scale * (head.bias - logits.median()))
    module = IRSTDExportModule(net).eval()
    path = tmp_path / "model.onnx"
    export_irstd_onnx(module, torch.randn(1, 1, 64, 64), str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for hw in [(64, 96), (96, 64)]:
        x = torch.randn(1, 1, *hw)
        with torch.no_grad():
            eager = module(x).numpy()
        (onnx,) = session.run(None, {"image": x.numpy()})
        assert onnx.shape == (1, 1, *hw)
        assert eager.std() > 0.1  # neither constant nor saturated
        np.testing.assert_allclose(onnx, eager, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["ACM", "ALCNet"])
def test_bad_input_and_config_name_the_key(name):
    cls = CLASSES[name]
    with pytest.raises(ValueError, match=r"MODEL\.IRSTD\.IN_CHANNELS"):
        cls(3)(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"MODEL\.IRSTD\.IN_CHANNELS"):
        cls(3)(torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match=r"MODEL\.IRSTD\.CHANNELS"):
        cls(3, channels=[8, 16, 32, 64, 128])
    with pytest.raises(ValueError, match=r"MODEL\.IRSTD\.BLOCKS"):
        cls(3, blocks=[3, 0, 3])
    cfg = ir_cfg(CONFIGS[name], ["MODEL.IRSTD.NORM", "NoSuchNorm"])
    with pytest.raises(ValueError, match=r"MODEL\.IRSTD\.NORM"):
        build_irstd_net(cfg)
    with pytest.raises(ValueError, match=r"MODEL\.IRSTD\.ACM\.ARCH"):
        ACM(3, arch="segnet")
    with pytest.raises(ValueError, match=r"MODEL\.IRSTD\.ACM\.ALC_SHIFTS"):
        ALCNet(3, shifts=[])


@pytest.mark.parametrize("name", ["ACM", "ALCNet"])
def test_the_norm_key_reaches_every_norm(name):
    from detectron2.layers import FrozenBatchNorm2d

    count = sum(
        isinstance(m, torch.nn.BatchNorm2d)
        for m in build_irstd_net(ir_cfg(CONFIGS[name])).modules()
    )
    net = build_irstd_net(ir_cfg(CONFIGS[name], ["MODEL.IRSTD.NORM", "FrozenBN"]))
    assert sum(isinstance(m, FrozenBatchNorm2d) for m in net.modules()) == count > 30
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    gn = CLASSES[name](3, norm="GN")
    assert sum(isinstance(m, torch.nn.GroupNorm) for m in gn.modules()) == count
    # the stem's input norm has no learned scale or shift, whatever the norm
    assert all(n_params(input_norm(norm, 3)) == 0 for norm in ("BN", "GN", "SyncBN"))
    stem_norm = build_irstd_net(ir_cfg(CONFIGS[name])).encoder.stem[0]
    assert isinstance(stem_norm, torch.nn.BatchNorm2d) and not stem_norm.affine


def _contrast_by_loops(x, s):
    """The local contrast pixel by pixel: the 8 neighbours at distance s, wrapping around."""
    n, c, h, w = x.shape
    out = np.empty((n, c, h, w))
    a = x.numpy().astype(np.float64)
    for i in range(h):
        for j in range(w):
            cen = a[:, :, i, j]
            diffs = []
            for di, dj in ((1, 1), (1, 0), (1, -1), (0, 1)):
                fwd = a[:, :, (i + di * s) % h, (j + dj * s) % w] - cen
                bwd = a[:, :, (i - di * s) % h, (j - dj * s) % w] - cen
                diffs.append(fwd * bwd)
            out[:, :, i, j] = np.min(diffs, axis=0)
    return out


def test_local_contrast_recomputed_pixel_by_pixel():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 11, 9)
    for s in (1, 3, 13):  # 13 > the size: wraps around
        np.testing.assert_allclose(
            local_contrast(x, s).numpy(), _contrast_by_loops(x, s), atol=1e-5
        )
    both = np.maximum(_contrast_by_loops(x, 2), _contrast_by_loops(x, 5))
    np.testing.assert_allclose(multiscale_local_contrast(x, (2, 5)).numpy(), both, atol=1e-5)
    # a lone bright pixel on a flat background: the contrast is (peak)^2 there, 0 elsewhere
    spot = torch.zeros(1, 1, 40, 40)
    spot[0, 0, 20, 20] = 3.0
    lc = multiscale_local_contrast(spot, (13, 17))
    assert lc[0, 0, 20, 20] == 9.0 and lc.sum() == 9.0


def test_fusion_equations():
    torch.manual_seed(0)
    low, high = torch.randn(2, 8, 6, 5), torch.randn(2, 8, 6, 5)
    acm = AsymBiFusion(8).eval()
    g, l_ = acm.topdown(high), acm.bottomup(low)
    assert g.shape == (2, 8, 1, 1) and l_.shape == (2, 8, 6, 5)
    assert ((g > 0) & (g < 1)).all() and ((l_ > 0) & (l_ < 1)).all()
    with torch.no_grad():
        expected = acm.post(2 * low * g + 2 * high * l_)
        assert torch.allclose(acm(high, low), expected, atol=1e-6)
    # ALCNet's BLAM: Z = L(norm(low)) * norm(high) + norm(low), L with no channel reduction
    blam = BottomUpLocalModulation(8).eval()
    assert blam.attention[0].out_channels == 8
    with torch.no_grad():
        for bn in (blam.norm_high, blam.norm_low):
            bn.running_mean.uniform_(-1, 1)
        nl, nh = blam.norm_low(low), blam.norm_high(high)
        assert torch.allclose(blam(high, low), blam.attention(nl) * nh + nl, atol=1e-6)
