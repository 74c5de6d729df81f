"""
Tiled inference (``TEST.IRSTD.TILE_SIZE``): the tile layout, the merge (equal to whole-frame
inference wherever the net's receptive field stays inside the tile that supplies a pixel), the
memory bound (the net only ever sees one tile), the segmentor, the exported-model predictor, bad
keys, and a smoke run of ``benchmarks/bench_tiling.py``.
"""

import json
import sys

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, ir_cfg
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from hypothesis import assume, given
from hypothesis import strategies as st
from torch import nn

import ir_d2  # noqa: F401  (registration)
from ir_d2.engine import ExportedPredictor
from ir_d2.export import IRSTDExportModule, export_irstd_torchscript
from ir_d2.layers import check_tiling, tile_origins, tiled_probabilities

UNET = "IRSTD/irstd_unet_W32_1500e_sirst.yaml"
SMALL = ["MODEL.IRSTD.BASE_CHANNELS", 4, "MODEL.IRSTD.CHANNELS", []]


def _conv_stack(layers=3, in_channels=3, seed=0, dtype=torch.float64):
    """Per-pixel net of ``layers`` 3x3 convolutions (zero padding) with tanh between them:
    receptive radius ``layers``; weights large enough that every input pixel of the field moves
    the output. In float64 by default, so that 1e-6 tells a tile border's effect from the
    rounding of convolutions run on inputs of another size."""
    torch.manual_seed(seed)
    mods = []
    for i in range(layers):
        conv = nn.Conv2d(in_channels if i == 0 else 6, 1 if i == layers - 1 else 6, 3, 1, 1)
        nn.init.normal_(conv.weight, std=0.4)
        mods.append(conv)
        if i < layers - 1:
            mods.append(nn.Tanh())
    net = nn.Sequential(*mods).eval().to(dtype)
    net.in_channels = in_channels
    return net


def _near_inner_borders(size, origins, tile, radius):
    """(size,) bool: pixels within ``radius`` of a tile border that is not a frame border (where
    a net of that receptive radius may see the tile's padding instead of the frame)."""
    ends = [min(o + tile, size) for o in origins]
    near = np.zeros(size, bool)
    for b in origins[1:] + ends[:-1]:
        near[max(b - radius, 0) : b + radius] = True
    return near


# ------------------------------------------------------------------------------ tile layout
@given(
    size=st.integers(1, 3000),
    tile=st.integers(1, 700),
    overlap=st.integers(0, 699),
    align=st.sampled_from([1, 2, 16, 32]),
)
def test_tile_origins_cover_the_axis_with_the_overlap_and_end_at_its_end(
    size, tile, overlap, align
):
    assume(overlap < tile and tile - overlap >= align)
    origins = tile_origins(size, tile, overlap, align)
    assert origins[0] == 0
    if size <= tile:
        assert origins == [0]
        return
    assert all(o % align == 0 for o in origins)
    assert all(a < b for a, b in zip(origins, origins[1:]))
    assert min(origins[-1] + tile, size) == size  # the last tile ends exactly at the frame's end
    assert size - origins[-1] > tile - align  # ... and is (nearly) whole
    assert all(o + tile < size for o in origins[:-1])  # every other tile is whole
    for a, b in zip(origins, origins[1:]):
        assert a + tile - b >= overlap  # neighbours share at least ``overlap`` pixels
    covered = np.zeros(size, bool)
    for o in origins:
        covered[o : o + tile] = True
    assert covered.all()
    # as few tiles as the overlap allows: one fewer could not bridge 0 .. the last origin
    step = (tile - overlap) // align * align
    assert (len(origins) - 2) * step < origins[-1]


def test_tile_origins_examples():
    assert tile_origins(64, 64, 32) == [0]
    assert tile_origins(100, 64, 32) == [0, 18, 36]
    assert tile_origins(224, 64, 32, align=32) == [0, 32, 64, 96, 128, 160]
    assert tile_origins(200, 64, 32, align=32) == [0, 32, 64, 96, 128, 160]  # last: 40 pixels
    assert tile_origins(4000, 512, 32, align=32)[-1] == 3488


@pytest.mark.parametrize(
    "tile, overlap, key",
    [
        (0, 0, "TEST.IRSTD.TILE_SIZE"),
        (-64, 0, "TEST.IRSTD.TILE_SIZE"),
        (64, 64, "TEST.IRSTD.TILE_OVERLAP"),
        (64, 100, "TEST.IRSTD.TILE_OVERLAP"),
        (64, -1, "TEST.IRSTD.TILE_OVERLAP"),
        (64, 48, "MODEL.IRSTD.SIZE_DIVISIBILITY"),  # tiles 16 apart on a grid of 32
    ],
)
def test_bad_tiling_keys_raise_naming_the_key(tile, overlap, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        check_tiling(tile, overlap, 32)
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        tile_origins(500, tile, overlap, 32)
    opts = [*SMALL, "TEST.IRSTD.TILE_SIZE", tile, "TEST.IRSTD.TILE_OVERLAP", overlap]
    if tile != 0:  # TILE_SIZE 0 is "whole frames", a valid setting
        with pytest.raises(ValueError, match=key.replace(".", r"\.")):
            build_model(ir_cfg(UNET, opts))


# ------------------------------------------------------------------------------ the merge
@pytest.mark.parametrize("layers", [1, 3, 5])
def test_tiled_equals_whole_everywhere_when_half_the_overlap_covers_the_field(layers):
    """Receptive radius ``layers``: an overlap of twice that gives the whole-frame output
    everywhere, one pixel less does not (frames sized so that neighbours share exactly the
    overlap)."""
    net, tile = _conv_stack(layers), 40
    for overlap, equal in ((2 * layers, True), (2 * layers - 1, False)):
        step = tile - overlap
        g = torch.Generator().manual_seed(1)
        image = torch.randn(1, 3, tile + 2 * step, tile + 3 * step, generator=g).double()
        assert np.diff(tile_origins(image.shape[-1], tile, overlap)).tolist() == [step] * 3
        with torch.no_grad():
            whole = net(image)
        tiled = tiled_probabilities(net, image, tile, overlap)
        assert tiled.shape == whole.shape
        if equal:
            torch.testing.assert_close(tiled, whole, atol=1e-6, rtol=0)
        else:
            assert (tiled - whole).abs().max() > 1e-3


def test_tiled_equals_whole_away_from_tile_borders_when_the_field_exceeds_the_overlap():
    radius, tile = 4, 40
    net = _conv_stack(radius)
    for overlap in (2, 0):
        step = tile - overlap
        height, width = tile + 2 * step, tile + 3 * step  # neighbours share exactly the overlap
        g = torch.Generator().manual_seed(2)
        image = torch.randn(1, 3, height, width, generator=g).double()
        with torch.no_grad():
            whole = net(image)[0, 0].numpy()
        tiled = tiled_probabilities(net, image, tile, overlap)[0, 0].numpy()
        near_y = _near_inner_borders(height, tile_origins(height, tile, overlap), tile, radius)
        near_x = _near_inner_borders(width, tile_origins(width, tile, overlap), tile, radius)
        far = ~near_y[:, None] & ~near_x[None, :]
        assert far.mean() > 0.3
        np.testing.assert_allclose(tiled[far], whole[far], atol=1e-6, rtol=0)
        assert np.abs(tiled - whole).max() > 1e-3  # the field does reach past the tiles here


def test_strided_net_with_aligned_tiles_equals_whole_and_padding_is_the_frames():
    """A net that pools by 2 twice needs inputs divisible by 4 and tiles on the frame's grid of
    4: tiles start at multiples of ``size_divisibility`` and are padded as the frame is."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.AvgPool2d(2),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.Upsample(scale_factor=4, mode="nearest"),
        nn.Conv2d(4, 1, 3, padding=1),
    ).eval()
    net = net.double()
    frame = torch.randn(1, 3, 90, 70, generator=torch.Generator().manual_seed(3)).double()
    padded = nn.functional.pad(frame, (0, 2, 0, 2))  # 92x72, as ImageList pads it to 4
    with torch.no_grad():
        whole = net(padded)[..., :90, :70]
    seen = []

    def fn(x):
        seen.append(tuple(x.shape[-2:]))
        return net(x)

    tiled = tiled_probabilities(fn, frame, tile=38, overlap=30, size_divisibility=4)
    assert all(h % 4 == 0 and w % 4 == 0 for h, w in seen)
    torch.testing.assert_close(tiled, whole, atol=1e-6, rtol=0)


def test_the_net_sees_one_tile_at_a_time_without_gradients():
    net = _conv_stack(2)
    image = torch.randn(1, 3, 300, 257, dtype=torch.float64, requires_grad=True)
    calls = []

    def fn(x):
        calls.append(x.shape)
        assert not torch.is_grad_enabled()  # no graph kept through the tiles
        return net(x)

    tile, overlap, div = 64, 16, 16
    out = tiled_probabilities(fn, image, tile, overlap, size_divisibility=div)
    assert out.shape == (1, 1, 300, 257) and not out.requires_grad
    n_tiles = len(tile_origins(300, tile, overlap, div)) * len(
        tile_origins(257, tile, overlap, div)
    )
    assert len(calls) == n_tiles
    assert max(s[-2] * s[-1] for s in calls) <= tile * tile  # bounded by the tile, not the frame
    with pytest.raises(ValueError, match=r"\(1, C, H, W\)"):
        tiled_probabilities(fn, image[0], tile, overlap)
    with pytest.raises(ValueError, match="tiled net"):
        tiled_probabilities(lambda x: x[..., 1:, :], image, tile, overlap)


# --------------------------------------------------------------------------- the segmentor
def _segmentor(tile=0, overlap=32, net=None):
    """The small U-Net's segmentor, its net replaced by ``net`` (and its dtype) when given."""
    torch.manual_seed(0)
    cfg = ir_cfg(UNET, [*SMALL, "TEST.IRSTD.TILE_SIZE", tile, "TEST.IRSTD.TILE_OVERLAP", overlap])
    model = build_model(cfg).eval()
    if net is not None:
        model.net = net
        model.to(next(net.parameters()).dtype)
    return model


def _frame(h, w, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 80, (h, w), dtype=np.uint8)
    image[h // 3 : h // 3 + 3, w // 2 : w // 2 + 3] = 250  # a bright small target
    return torch.from_numpy(np.repeat(image[None], 3, axis=0))


def _counting(net):
    calls = []

    def hook(module, args):
        calls.append(tuple(args[0].shape))

    net.register_forward_pre_hook(hook)
    return calls


def test_segmentor_tiled_equals_whole_with_a_small_field_on_a_200x160_frame():
    """Tile 64, overlap 32 on a 200x160 frame; a net of receptive radius 3 < 32 / 2 gives the
    whole-frame sem_seg and targets everywhere, through the segmentor's normalisation, padding
    and post-processing."""
    net = _conv_stack(3)
    image = _frame(200, 160)
    with torch.no_grad():  # the head's bias set so that about 1% of the pixels are targets
        plain = _segmentor()
        x = (image.double() - plain.pixel_mean) / plain.pixel_std
        net[-1].bias -= torch.quantile(net(x[None]), 0.99)
    tiled_model, whole_model = _segmentor(64, 32, net), _segmentor(0, 32, net)
    calls = _counting(net)
    inputs = [{"image": image, "height": 200, "width": 160}]
    with torch.no_grad():
        tiled = tiled_model(inputs)[0]
        n_tiled = len(calls)
        whole = whole_model(inputs)[0]
    assert n_tiled == len(tile_origins(224, 64, 32, 32)) * len(tile_origins(160, 64, 32, 32)) > 1
    assert max(h * w for _, _, h, w in calls[:n_tiled]) <= 64 * 64
    assert tiled["sem_seg"].shape == whole["sem_seg"].shape == (1, 200, 160)
    torch.testing.assert_close(tiled["sem_seg"], whole["sem_seg"], atol=1e-6, rtol=0)
    assert len(whole["targets"]) > 0
    assert [t["centroid"] for t in tiled["targets"]] == [t["centroid"] for t in whole["targets"]]


def test_segmentor_tiled_equals_whole_away_from_tile_borders_when_the_field_is_larger():
    radius = 6
    net = _conv_stack(radius)
    tiled_model, whole_model = _segmentor(64, 0, net), _segmentor(0, 0, net)
    inputs = [{"image": _frame(200, 160, seed=1)}]
    with torch.no_grad():
        tiled = tiled_model(inputs)[0]["sem_seg"][0].numpy()
        whole = whole_model(inputs)[0]["sem_seg"][0].numpy()
    near_y = _near_inner_borders(224, tile_origins(224, 64, 0, 32), 64, radius)[:200]
    near_x = _near_inner_borders(160, tile_origins(160, 64, 0, 32), 64, radius)
    far = ~near_y[:, None] & ~near_x[None, :]
    np.testing.assert_allclose(tiled[far], whole[far], atol=1e-6, rtol=0)
    assert np.abs(tiled - whole).max() > 1e-4  # without overlap the borders do differ


def test_segmentor_tiles_each_image_of_a_batch_as_if_alone_and_keeps_small_frames_whole():
    net = _conv_stack(3)
    tiled_model, whole_model = _segmentor(64, 32, net), _segmentor(0, 32, net)
    frames = [_frame(200, 160, seed=2), _frame(50, 90, seed=3)]
    with torch.no_grad():
        batch = tiled_model([{"image": f} for f in frames])
        for f, out in zip(frames, batch):
            alone = whole_model([{"image": f}])[0]
            torch.testing.assert_close(out["sem_seg"], alone["sem_seg"], atol=1e-6, rtol=0)
        calls = _counting(net)
        tiled_model([{"image": _frame(60, 64)}])  # fits the tile: one whole call
    assert calls == [(1, 3, 64, 64)]


def test_segmentor_does_not_tile_in_training():
    model = _segmentor(64, 32)
    model.train()
    calls = _counting(model.net)
    sem = torch.zeros(96, 96, dtype=torch.int64)
    sem[40:43, 50:53] = 1
    with EventStorage():
        losses = model([{"image": _frame(96, 96), "sem_seg": sem}])
    assert set(losses) == {"loss_soft_iou"} and calls == [(1, 3, 96, 96)]


def _structured_unet():
    """The small U-Net's segmentor in float64, BN statistics and affine parameters moved off
    their defaults and the head rescaled so that its logits on a frame spread with standard
    deviation 2 around 0 (random weights otherwise give a nearly constant map, which would
    hide a tile border's effect)."""
    model = _segmentor(0).double()
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2, generator=g)
            m.running_var.uniform_(0.5, 2.0, generator=g)
            m.weight.data.uniform_(0.5, 2.0, generator=g)
            m.bias.data.uniform_(-0.5, 0.5, generator=g)
    head = model.net.output_heads()[0]
    with torch.no_grad():
        x = (_frame(320, 352, seed=4).double() - model.pixel_mean) / model.pixel_std
        logits = model.net(x[None])
        scale = 2.0 / float(logits.std())
        head.weight.mul_(scale)
        head.bias.copy_(scale * (head.bias - logits.median()))
    return model


def test_unet_tiled_equals_whole_when_the_overlap_covers_its_receptive_field():
    """The U-Net (4 pooling stages) reaches about 110 pixels each way: tiles of 288 sharing 256
    pixels (128 of context on every inner side) give its whole-frame output; tiles of 96 sharing
    32 do not."""
    model = _structured_unet()
    inputs = [{"image": _frame(320, 352, seed=4)}]
    with torch.no_grad():
        whole = model(inputs)[0]["sem_seg"]
        assert whole.std() > 0.1  # a map with structure
        model.tile_size, model.tile_overlap = 288, 256
        tiled = model(inputs)[0]["sem_seg"]
        model.tile_size, model.tile_overlap = 96, 32  # neighbours 64 apart
        short = model(inputs)[0]["sem_seg"]
    torch.testing.assert_close(tiled, whole, atol=1e-6, rtol=0)
    assert (short - whole).abs().max() > 1e-3


# ------------------------------------------------------------------ the exported predictor
def test_exported_predictor_tiles_like_the_segmentor(tmp_path):
    net = _conv_stack(3, dtype=torch.float32)  # an export runs in float32
    path = str(tmp_path / "model.ts")
    export_irstd_torchscript(IRSTDExportModule(net), torch.zeros(1, 3, 64, 64), path)
    opts = [*SMALL, "MODEL.WEIGHTS", path, "TEST.IRSTD.TILE_OVERLAP", 32]
    tiled = ExportedPredictor(ir_cfg(UNET, [*opts, "TEST.IRSTD.TILE_SIZE", 64]))
    whole = ExportedPredictor(ir_cfg(UNET, [*opts, "TEST.IRSTD.TILE_SIZE", 0]))
    calls = []
    run = tiled.net.__call__

    class Spy:
        def __call__(self, x):
            calls.append(tuple(x.shape))
            return run(x)

    tiled.net = Spy()
    frame = _frame(200, 160, seed=5)[0].numpy()  # HxW gray
    a, b = tiled(frame), whole(frame)
    assert len(calls) > 1 and max(h * w for _, _, h, w in calls) <= 64 * 64
    assert a["sem_seg"].shape == b["sem_seg"].shape == (1, 200, 160)
    torch.testing.assert_close(a["sem_seg"], b["sem_seg"], atol=1e-5, rtol=0)
    segmentor = _segmentor(64, 32, net)
    with torch.no_grad():
        c = segmentor([{"image": torch.from_numpy(np.repeat(frame[None], 3, axis=0))}])[0]
    torch.testing.assert_close(a["sem_seg"], c["sem_seg"], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"TEST\.IRSTD\.TILE_OVERLAP"):
        ExportedPredictor(ir_cfg(UNET, [*opts, "TEST.IRSTD.TILE_SIZE", 32]))


# ----------------------------------------------------------------------------- the benchmark
def test_bench_tiling_smoke_runs_at_a_tiny_size(tmp_path):
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    import bench_tiling

    argv = ["--config-file", UNET, "--sizes", "96x80", "--tile", "64", "--repeats", "1"]
    argv += ["--output", str(tmp_path), "--threads", "1", *map(str, SMALL)]
    (row,) = bench_tiling.main(argv)
    assert row["size"] == "96x80"
    for mode in ("whole", "tiled"):
        assert row[mode]["seconds"] > 0 and row[mode]["peak_rss_MiB"] >= 0
    assert row["time_ratio"] == round(row["tiled"]["seconds"] / row["whole"]["seconds"], 3)
    assert 0 <= row["max_abs_diff"] < 1 and 0 <= row["share_diff_1e-4"] <= 1
    saved = json.loads((tmp_path / "bench_tiling.json").read_text())
    assert saved["tool"] == "benchmarks/bench_tiling.py" and saved["tile"] == 64
    text = (tmp_path / "bench_tiling.md").read_text()
    assert "| 96x80 |" in text and "tiled / whole memory" in text
