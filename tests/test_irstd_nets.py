"""UNet, SGEMUNet and AFFUNet: shapes, equations, registry and parameter counts."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import ir_cfg

import ir_d2  # noqa: F401  (registration)
from ir_d2.modeling import (
    IRSTD_NET_REGISTRY,
    AFFUNet,
    DNANet,
    SGEMUNet,
    SIRST5KNet,
    UNet,
    build_irstd_net,
)
from ir_d2.modeling.irstd import SGEM, ChannelAttention, SpatialAttention
from ir_d2.modeling.irstd.aff import AFFBlock
from ir_d2.modeling.irstd.sgem import sgem_attention

NETS = {
    "UNet": UNet,
    "SGEMUNet": SGEMUNet,
    "AFFUNet": AFFUNet,
    "DNANet": DNANet,
    "SIRST5KNet": SIRST5KNet,
}


def test_registry_names():
    for name, cls in NETS.items():
        assert IRSTD_NET_REGISTRY.get(name) is cls


@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("hw", [(256, 256), (37, 51), (17, 9), (1, 1), (33, 64)])
def test_output_shape(name, hw):
    torch.manual_seed(0)
    net = NETS[name](3, 4).eval()
    with torch.no_grad():
        y = net(torch.randn(2, 3, *hw))
    assert y.shape == (2, 1, *hw)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", list(NETS))
def test_deep_supervision_outputs(name):
    torch.manual_seed(0)
    net = NETS[name](1, 4, deep_supervision=True).train()
    outs = net(torch.randn(2, 1, 23, 30))
    assert isinstance(outs, list) and len(outs) == 4
    assert all(o.shape == (2, 1, 23, 30) for o in outs)
    sum(o.sum() for o in outs).backward()
    assert len(net.output_heads()) == 4
    assert all(h.weight.grad is not None for h in net.output_heads())


@pytest.mark.parametrize("name", list(NETS))
def test_built_from_config(name):
    cfg = ir_cfg(
        "IRSTD/irstd_unet_W32_1500e_sirst.yaml",
        ["MODEL.IRSTD.NET", name, "MODEL.IRSTD.BASE_CHANNELS", 8, "MODEL.IRSTD.IN_CHANNELS", 1],
    )
    net = build_irstd_net(cfg)
    assert type(net) is NETS[name]
    assert net.channels == (8, 16, 32, 64, 128) and net.in_channels == 1
    cfg.MODEL.IRSTD.CHANNELS = [6, 10, 20, 30, 40]
    assert build_irstd_net(cfg).channels == (6, 10, 20, 30, 40)


@pytest.mark.parametrize("name", list(NETS))
def test_the_norm_key_means_detectrons_norm_for_every_caller_of_the_builder(name):
    from detectron2.layers import FrozenBatchNorm2d

    cfg = ir_cfg(
        "IRSTD/irstd_unet_W32_1500e_sirst.yaml",
        ["MODEL.IRSTD.NET", name, "MODEL.IRSTD.BASE_CHANNELS", 4, "MODEL.IRSTD.NORM", "FrozenBN"],
    )
    net = build_irstd_net(cfg)
    assert any(isinstance(m, FrozenBatchNorm2d) for m in net.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    cfg.MODEL.IRSTD.NORM = "NoSuchNorm"
    with pytest.raises(ValueError, match="MODEL.IRSTD.NORM"):
        build_irstd_net(cfg)


def _res_cbam_params(cin, cout):
    """Parameters of DNANet's Res_CBAM_block, counted from its definition: two 3x3 convs with
    bias + BN, the channel-attention MLP (no bias), the 7x7 spatial-attention conv (no bias) and,
    when the width changes, a 1x1 conv with bias + BN on the shortcut."""
    n = (9 * cin * cout + cout) + 2 * cout + (9 * cout * cout + cout) + 2 * cout
    n += 2 * cout * max(1, cout // 16) + 2 * 49
    if cin != cout:
        n += cin * cout + cout + 2 * cout
    return n


def _dnanet_params(blocks, c=(16, 32, 64, 128, 256), cin=3, heads=4):
    def stage(a, b, level):
        n = blocks[level - 1] if level else 1
        return _res_cbam_params(a, b) + (n - 1) * _res_cbam_params(b, b)

    total = sum(stage(cin if i == 0 else c[i - 1], c[i], i) for i in range(5))
    for j in range(1, 5):
        for i in range(5 - j):
            total += stage(j * c[i] + c[i + 1] + (c[i - 1] if i else 0), c[i], i)
    total += sum(c[k] * c[0] + c[0] for k in (4, 3, 2, 1))  # 1x1 projections of the fusion
    total += stage(5 * c[0], c[0], 0)  # the fusion node
    return total + heads * (c[0] + 1)


@pytest.mark.parametrize(
    "cls, blocks, expected",
    [(DNANet, (2, 2, 2, 2), 4_696_888), (SIRST5KNet, (3, 4, 6, 3), 8_792_702)],
)
def test_dnanet_and_the_sirst5k_net_have_the_authors_parameter_counts(cls, blocks, expected):
    # DNANet: 4.70 M (SGEM Table 1, SIRST-5K Table II); the SIRST-5K net: 8.79 M (Table II)
    net = cls(3, deep_supervision=True)
    assert net.blocks == blocks and net.channels == (16, 32, 64, 128, 256)
    assert sum(p.numel() for p in net.parameters()) == expected == _dnanet_params(blocks)
    single = cls(3, deep_supervision=False)
    assert sum(p.numel() for p in single.parameters()) == _dnanet_params(blocks, heads=1)


def test_dnanet_single_output_is_the_deep_supervision_lists_last():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 48, 32)
    single = DNANet(3, 4, deep_supervision=False).eval()
    deep = DNANet(3, 4, deep_supervision=True).eval()
    state = {k: v for k, v in single.state_dict().items() if not k.startswith("heads.")}
    state.update({f"heads.{k}": v for k, v in deep.heads.state_dict().items()})
    deep.load_state_dict(state)
    deep.heads[-1].load_state_dict(single.heads[0].state_dict())
    with torch.no_grad():
        outs = deep(x)
        assert len(outs) == 4 and all(o.shape == (1, 1, 48, 32) for o in outs)
        assert torch.equal(single(x), outs[-1])
    single.set_output_prior(0.01)
    assert torch.allclose(single.heads[0].bias, torch.tensor(-4.59512), atol=1e-4)
    assert deep.output_heads()[0] is deep.heads[-1]
    with pytest.raises(ValueError, match="MODEL.IRSTD.BLOCKS"):
        DNANet(3, blocks=[2, 2, 2])


def test_dnanet_resampling_is_the_codes_fixed_factor_resampling_on_multiples_of_16():
    """Resizing to the reference node's size with aligned corners equals the code's
    ``nn.Upsample(scale_factor=s, align_corners=True)`` where the sizes are exact multiples."""
    from ir_d2.modeling.irstd.dnanet import resize_aligned

    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 6)
    for factor in (2, 4, 8, 16):
        ref = torch.empty(1, 1, 4 * factor, 6 * factor)
        code = torch.nn.Upsample(scale_factor=factor, mode="bilinear", align_corners=True)
        assert torch.allclose(resize_aligned(x, ref), code(x), atol=1e-6)
    y = torch.randn(1, 2, 16, 32)
    down = torch.nn.Upsample(scale_factor=0.5, mode="bilinear", align_corners=True)
    assert torch.allclose(resize_aligned(y, torch.empty(1, 1, 8, 16)), down(y), atol=1e-6)


def test_aff_block_in_the_codes_layout():
    """The code's Res_CBAM_block: biases before every BN (3 convs here) and the spatial attention
    stacking the channel mean first, which is the paper's block with the two inputs of the 7x7
    conv swapped."""
    torch.manual_seed(0)
    paper, code = AFFBlock(8, 16), AFFBlock(8, 16, code_layout=True)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(code) - n(paper) == 16 + 16 + 16
    sa_paper, sa_code = SpatialAttention(), SpatialAttention(mean_first=True)
    sa_code.conv.weight.data = sa_paper.conv.weight.data.flip(1)
    x = torch.randn(2, 5, 9, 7)
    assert torch.allclose(sa_paper(x), sa_code(x), atol=1e-6)


def test_bad_config_names_the_key():
    cfg = ir_cfg("IRSTD/irstd_unet_W32_1500e_sirst.yaml", ["MODEL.IRSTD.NET", "ResUNet"])
    with pytest.raises(ValueError, match="MODEL.IRSTD.NET"):
        build_irstd_net(cfg)
    with pytest.raises(ValueError, match="MODEL.IRSTD.CHANNELS"):
        UNet(3, channels=[8, 16, 32])
    with pytest.raises(ValueError, match="MODEL.IRSTD.IN_CHANNELS"):
        UNet(3, 4)(torch.zeros(1, 1, 8, 8))


def _double_conv_params(cin, cout):
    return 9 * cin * cout + 2 * cout + 9 * cout * cout + 2 * cout  # two conv (no bias) + BN


def test_unet_parameter_count_closed_form():
    c = [32, 64, 128, 256, 512]
    expected = _double_conv_params(3, c[0])
    expected += sum(_double_conv_params(c[i - 1], c[i]) for i in range(1, 5))
    expected += sum(_double_conv_params(c[i + 1] + c[i], c[i]) for i in range(4))
    expected += c[0] + 1  # 1x1 head
    assert sum(p.numel() for p in UNet(3, 32).parameters()) == expected
    # SGEM adds three 1x1 convs (with bias) on C3 = 128 channels (key: C4 = 256 -> 128), a
    # depthwise 3x3 and a BN
    sgem = (128 * 128 + 128) + (256 * 128 + 128) + (128 * 128 + 128) + 128 * 9 + 2 * 128
    assert sum(p.numel() for p in SGEMUNet(3, 32).parameters()) == expected + sgem
    # SGEMUNet takes UNet's arguments, the node factory included
    net = SGEMUNet(3, 8, node=AFFBlock)
    assert isinstance(net.encoder[0], AFFBlock) and net.sgem.enc_channels == 32


@pytest.mark.parametrize("name", list(NETS))
def test_the_norm_of_every_node_is_chosen_by_one_argument(name):
    norms = lambda net, t: sum(isinstance(m, t) for m in net.modules())  # noqa: E731
    bn = NETS[name](3, 8)
    count = norms(bn, torch.nn.BatchNorm2d)
    assert count > 10 and norms(bn, torch.nn.GroupNorm) == 0
    gn = NETS[name](3, 8, norm="GN")
    assert norms(gn, torch.nn.GroupNorm) == count and norms(gn, torch.nn.BatchNorm2d) == 0
    # GN keeps the parameter count (a weight and a bias per channel, as BN)
    assert sum(p.numel() for p in gn.parameters()) == sum(p.numel() for p in bn.parameters())
    plain = NETS[name](3, 8, norm="")  # no norm: each conv gets its bias back
    assert norms(plain, torch.nn.BatchNorm2d) == 0
    convs = [
        m for m in plain.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)
    ]
    assert all(c.bias is not None for c in convs if c.groups == 1)
    assert plain(torch.randn(1, 3, 32, 32)).shape == (1, 1, 32, 32)
    with pytest.raises(ValueError, match="Unknown norm"):
        NETS[name](3, 8, norm="LayerNorm")


# ------------------------------------------------------------------------------------ SGEM
def test_sgem_attention_is_a_channel_affinity():
    torch.manual_seed(0)
    c = 6
    mix = torch.nn.Conv2d(c, c, 1)
    for hw in (20, 300):
        q, k = torch.randn(2, c, hw), torch.randn(2, c, hw)
        m = sgem_attention(q, k, mix)
        assert m.shape == (2, c, c)  # C x C whatever the number of pixels
        torch.testing.assert_close(m.sum(-1), torch.ones(2, c))
        # independent: softmax over key channels of W (Q K^T / HW) + b, W acting on query rows
        aff = torch.einsum("nch,ndh->ncd", q, k) / hw
        logits = torch.einsum("oc,ncd->nod", mix.weight[:, :, 0, 0], aff) + mix.bias[None, :, None]
        torch.testing.assert_close(m, torch.softmax(logits, dim=-1))


def test_sgem_forward_recomputed():
    """Fig. 3 / eqs. 1-3 written out with einsum and the BN formula, not with SGEM's modules."""
    torch.manual_seed(1)
    sgem = SGEM(8, 12).eval()
    bn = sgem.restore[1]
    for t in (bn.weight, bn.bias, bn.running_mean):  # leave the identity start
        torch.nn.init.normal_(t)
    torch.nn.init.uniform_(bn.running_var, 0.5, 2.0)
    e3, d1 = torch.randn(2, 8, 10, 14), torch.randn(2, 12, 5, 7)

    def conv1x1(m, x):
        return torch.einsum("oc,nchw->nohw", m.weight[:, :, 0, 0], x) + m.bias[:, None, None]

    q = conv1x1(sgem.query, e3).flatten(2)  # eq. 1
    k = F.interpolate(conv1x1(sgem.key, d1), size=(10, 14), mode="bilinear", align_corners=False)
    k = k.flatten(2)  # eq. 2, at E3's resolution
    aff = torch.einsum("nch,ndh->ncd", q, k) / (10 * 14)
    mixed = torch.einsum("oc,ncd->nod", sgem.mix.weight[:, :, 0, 0], aff)
    matrix = torch.softmax(mixed + sgem.mix.bias[:, None], dim=-1)  # eq. 3
    v = torch.einsum("ncd,ndh->nch", matrix, e3.flatten(2)).reshape(2, 8, 10, 14)
    dw = F.conv2d(v, sgem.restore[0].weight, padding=1, groups=8)  # depthwise 3x3
    restored = (dw - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var + bn.eps)[
        :, None, None
    ] * bn.weight[:, None, None] + bn.bias[:, None, None]
    with torch.no_grad():
        torch.testing.assert_close(sgem(e3, d1), e3 + restored)
    with pytest.raises(ValueError, match="SGEM"):
        sgem(d1, e3)


def test_sgem_unet_is_the_unet_at_init_and_learns_away():
    torch.manual_seed(0)
    unet, sgem_net = UNet(3, 4).eval(), SGEMUNet(3, 4).eval()
    missing, unexpected = sgem_net.load_state_dict(unet.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("sgem.") for k in missing)
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(sgem_net(x), unet(x))
    sgem_net.train()
    sgem_net(x).square().sum().backward()
    assert sgem_net.sgem.restore[1].weight.grad.abs().sum() > 0
    torch.nn.init.ones_(sgem_net.sgem.restore[1].weight)
    sgem_net.eval()
    with torch.no_grad():
        assert not torch.allclose(sgem_net(x), unet(x))


# ------------------------------------------------------------------------------------- AFF
def test_channel_attention_eq5():
    torch.manual_seed(0)
    ca = ChannelAttention(32, reduction=16)
    x = torch.randn(2, 32, 5, 7)
    w1, w2 = ca.mlp[0].weight[:, :, 0, 0], ca.mlp[2].weight[:, :, 0, 0]

    def mlp(v):  # (N, C)
        return torch.relu(v @ w1.T) @ w2.T

    expected = torch.sigmoid(mlp(x.mean((2, 3))) + mlp(x.flatten(2).max(-1).values))
    torch.testing.assert_close(ca(x), expected[:, :, None, None])
    assert w1.shape == (2, 32)


def test_spatial_attention_eq6():
    torch.manual_seed(0)
    sa = SpatialAttention()
    x = torch.randn(2, 16, 9, 11)
    stacked = torch.stack([x.max(1).values, x.mean(1)], dim=1)
    expected = torch.sigmoid(F.conv2d(stacked, sa.conv.weight, padding=3))
    torch.testing.assert_close(sa(x), expected)
    assert sa(x).shape == (2, 1, 9, 11)


def test_aff_block_in_place_residual_and_pooling_give_the_out_of_place_gradients():
    """AFFBlock pools with adaptive_max_pool2d / torch.max and adds the residual and the ReLU in
    place (as the authors' code, for speed): in training, the output and every gradient are
    those of the plain out-of-place formula with amax, recomputed on a copy."""
    import copy

    torch.manual_seed(0)
    for cin in (8, 4):  # identity shortcut, then a 1x1 conv + BN shortcut
        block = AFFBlock(cin, 8, reduction=4).train()
        twin = copy.deepcopy(block)
        x = torch.randn(2, cin, 6, 5, requires_grad=True)
        x2 = x.detach().clone().requires_grad_(True)
        out = block(x)
        y = twin.body(x2)
        ca = twin.channel_attention.mlp
        y = torch.sigmoid(ca(y.mean((2, 3), keepdim=True)) + ca(y.amax((2, 3), keepdim=True))) * y
        pooled = torch.cat([y.amax(1, keepdim=True), y.mean(1, keepdim=True)], 1)
        y = torch.sigmoid(twin.spatial_attention.conv(pooled)) * y
        expected = torch.relu(y + twin.shortcut(x2))
        torch.testing.assert_close(out, expected)
        weights = torch.randn_like(out)
        (out * weights).sum().backward()
        (expected * weights).sum().backward()
        torch.testing.assert_close(x.grad, x2.grad)
        for (name, p), q in zip(block.named_parameters(), twin.parameters()):
            torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_aff_block_residual_layout():
    torch.manual_seed(0)
    block = AFFBlock(8, 8).eval()
    assert isinstance(block.shortcut, torch.nn.Identity)
    x = torch.randn(1, 8, 6, 6)
    y = block.body(x)
    y = block.channel_attention(y) * y
    y = block.spatial_attention(y) * y
    torch.testing.assert_close(block(x), torch.relu(y + x))
    assert isinstance(AFFBlock(4, 8).shortcut, torch.nn.Sequential)
    # AFFUNet passes UNet's arguments through and builds every node with its own reduction
    net = AFFUNet(1, 8, channels=[8, 16, 32, 64, 64], reduction=4)
    assert net.in_channels == 1 and net.channels == (8, 16, 32, 64, 64)
    nodes = [*net.encoder, *net.decoder]
    assert all(isinstance(n, AFFBlock) for n in nodes)
    assert [n.channel_attention.mlp[0].out_channels for n in net.encoder] == [2, 4, 8, 16, 16]
    cfg = ir_cfg(
        "IRSTD/irstd_aff_unet_W32_bs256-1500e_sirst.yaml", ["MODEL.IRSTD.AFF_REDUCTION", 4]
    )
    net = build_irstd_net(cfg)
    assert net.encoder[4].channel_attention.mlp[0].out_channels == 512 // 4


def test_prior_prob_sets_every_output_head_bias():
    cfg = ir_cfg(
        "IRSTD/irstd_unet_W32_1500e_sirst.yaml",
        [
            "MODEL.IRSTD.BASE_CHANNELS",
            4,
            "MODEL.IRSTD.DEEP_SUPERVISION",
            True,
            "MODEL.IRSTD.PRIOR_PROB",
            0.01,
        ],
    )
    net = build_irstd_net(cfg)
    expected = -math.log(99.0)
    for head in [net.head, *net.aux_heads]:
        assert torch.allclose(head.bias, torch.full_like(head.bias, expected))
        torch.nn.init.zeros_(head.weight)
    out = net(torch.randn(1, 3, 32, 32))
    for o in out:  # with zero weights every pixel starts at exactly the prior
        torch.testing.assert_close(torch.sigmoid(o), torch.full_like(o, 0.01))
    # 0 keeps torch's default init
    default = build_irstd_net(
        ir_cfg(
            "IRSTD/irstd_unet_W32_1500e_sirst.yaml",
            ["MODEL.IRSTD.BASE_CHANNELS", 4, "MODEL.IRSTD.PRIOR_PROB", 0.0],
        )
    )

    assert not torch.allclose(default.head.bias, torch.full_like(default.head.bias, expected))
    with pytest.raises(ValueError, match="PRIOR_PROB"):
        net.set_output_prior(1.0)
