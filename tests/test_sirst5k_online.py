"""SIRST-5K online augmentation in IRSTDDatasetMapper and the negative-sample loss in
IRSTDSegmentor, on real NUDT-SIRST frames."""

import logging
import uuid

import cv2
import numpy as np
import pytest
import torch
from conftest import ir_cfg, shared_data_dir
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from PIL import Image
from scipy import ndimage

import ir_d2  # noqa: F401  (registration)
from ir_d2.data import IRDataError, IRSTDDatasetMapper, register_irstd
from ir_d2.data.sirst5k import NoiseBank, SIRST5KAugmentation

N_FRAMES = 6
STILL = [  # no random geometric or photometric augmentation: outputs at the frame's size
    "INPUT.IR.FLIP", "none",
    "INPUT.IR.CROP_SIZE", [],
    "INPUT.IR.BRIGHTNESS", [1.0, 1.0],
    "INPUT.IR.CONTRAST", [1.0, 1.0],
]  # fmt: skip
# all targets rotated together, 4 variants per frame (ir_d2 0.1's form; the paper's per-target
# form, 4 per target, is the default and has its own test below)
TOGETHER = ["INPUT.SIRST5K.PER_TARGET", False]


@pytest.fixture(scope="module")
def nudt(tmp_path_factory):
    """A throw-away dataset of the first NUDT-SIRST training frames: (name, records)."""
    from detectron2.data import DatasetCatalog

    root = shared_data_dir("nudt-sirst")
    ids = (root / "50_50" / "train.txt").read_text().split()[:N_FRAMES]
    split = tmp_path_factory.mktemp("nudt") / "train.txt"
    split.write_text("\n".join(ids) + "\n")
    name = f"nudt_online_{uuid.uuid4().hex[:8]}"
    register_irstd(name, str(root / "images"), str(root / "masks"), str(split))
    return name, DatasetCatalog.get(name)


def _cfg(name, *opts, enabled=True):
    return ir_cfg(
        None,
        [
            "INPUT.DATASET_MAPPER_NAME", "IRSTDDatasetMapper",
            "DATASETS.TRAIN", (name,),
            "INPUT.SIRST5K.ENABLED", enabled,
            *opts,
        ],
    )  # fmt: skip


def _frame(record):
    """Independent reading: Pillow, gray (NUDT-SIRST frames have R = G = B)."""
    rgb = np.asarray(Image.open(record["file_name"]).convert("RGB"))
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    return rgb[..., 0]


def _mask(record):
    return (cv2.imread(record["sem_seg_file_name"], cv2.IMREAD_GRAYSCALE) > 127).astype(np.int64)


def _rotated(gray, mask, k, size=3):
    """The frame with the size x size patch around each 8-connected target rotated by k quarter
    turns, by scipy's labelling and centres of mass (not the code's OpenCV components)."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    out = gray.copy()
    h, w = gray.shape
    boxes = []
    for cy, cx in ndimage.center_of_mass(mask, labels, range(1, n + 1)):
        y0 = min(max(int(np.floor(cy + 0.5)) - size // 2, 0), h - size)
        x0 = min(max(int(np.floor(cx + 0.5)) - size // 2, 0), w - size)
        out[y0 : y0 + size, x0 : x0 + size] = np.rot90(out[y0 : y0 + size, x0 : x0 + size], k)
        boxes.append((y0, x0))
    return out, boxes


def _gray(tensor):
    image = tensor.numpy()
    assert (image[0] == image[1]).all() and (image[1] == image[2]).all()  # gray stays gray
    return image[0]


# ----------------------------------------------------------------------------- negative groups
def test_groups_are_the_rotated_variants_with_one_label(nudt):
    name, records = nudt
    opts = ["INPUT.SIRST5K.N2N_PROB", 0.0, "INPUT.SIRST5K.NEGATIVE", True, *STILL, *TOGETHER]
    mapper = IRSTDDatasetMapper(_cfg(name, *opts), True)
    assert mapper.sirst5k.group_size == 4 and mapper.sirst5k.noise_bank is None
    changed = 0
    for r in records:
        out = mapper(r)
        gray, mask = _frame(r), _mask(r)
        group = out["group"]
        assert len(group) == 4
        # the returned dict is the first variant's, with the record's other keys
        assert out["image"] is group[0]["image"] and out["dataset_name"] == name
        for k, variant in enumerate(group):
            assert set(variant) == {"image", "sem_seg", "height", "width", "file_name", "image_id"}
            assert (variant["file_name"], variant["image_id"]) == (r["file_name"], r["image_id"])
            np.testing.assert_array_equal(variant["sem_seg"].numpy(), mask)  # label unchanged
            expected, boxes = _rotated(gray, mask, k)
            got = _gray(variant["image"])
            np.testing.assert_array_equal(got, expected)
            # pixels outside the patches are the original ones
            outside = np.ones_like(mask, dtype=bool)
            for y0, x0 in boxes:
                outside[y0 : y0 + 3, x0 : x0 + 3] = False
            np.testing.assert_array_equal(got[outside], gray[outside])
            changed += int((got != gray).any())
        np.testing.assert_array_equal(_gray(group[0]["image"]), gray)  # angle 0: unchanged
    assert changed >= len(records)  # the rotations really changed the frames


def test_per_target_groups_hold_four_variants_per_target(nudt):
    """The paper's form (the default): 4z variants for z targets, each turning one target."""
    name, records = nudt
    opts = ["INPUT.SIRST5K.N2N_PROB", 0.0, "INPUT.SIRST5K.NEGATIVE", True, *STILL]
    mapper = IRSTDDatasetMapper(_cfg(name, *opts), True)
    assert mapper.sirst5k.per_target and mapper.sirst5k.group_size is None
    for r in records:
        gray, mask = _frame(r), _mask(r)
        _, n_targets = ndimage.label(mask, structure=np.ones((3, 3)))
        out = mapper(r)
        group = out.get("group", [out])
        assert len(group) == (4 * n_targets if n_targets else 1)
        for variant in group:
            np.testing.assert_array_equal(variant["sem_seg"].numpy(), mask)  # label unchanged
        changed = [(_gray(v["image"]) != gray) for v in group]
        for k in range(0, len(group), 4):  # angle 0 of each target: the frame unchanged
            assert not changed[k].any()
        for c in changed:  # every other variant changes one 3x3 patch at most
            if c.any():
                ys, xs = np.nonzero(c)
                assert ys.max() - ys.min() <= 2 and xs.max() - xs.min() <= 2


def _same_geometry(group, gray, mask, flips, y, x, crop=(200, 180)):
    """Whether every variant of ``group`` is the frame rotated by k quarter turns around its
    targets, then flipped on ``flips`` and cropped at (y, x), and its mask the same crop."""
    window = (slice(y, y + crop[0]), slice(x, x + crop[1]))
    ref_mask = np.flip(mask, flips) if flips else mask
    for k, variant in enumerate(group):
        rotated = _rotated(gray, mask, k)[0]
        ref = np.flip(rotated, flips) if flips else rotated
        if not np.array_equal(_gray(variant["image"]), ref[window]):
            return False
        if not np.array_equal(variant["sem_seg"].numpy(), ref_mask[window]):
            return False
    return True


def test_group_gets_one_crop_and_flip(nudt):
    name, records = nudt
    opts = ["INPUT.SIRST5K.N2N_PROB", 0.0, "INPUT.SIRST5K.NEGATIVE", True, *STILL, *TOGETHER]
    opts += ["INPUT.IR.FLIP", "both", "INPUT.IR.CROP_SIZE", [200, 180]]
    mapper = IRSTDDatasetMapper(_cfg(name, *opts), True)
    np.random.seed(0)
    seen = set()
    for _ in range(3):
        for r in records:
            gray, mask = _frame(r), _mask(r)
            group = mapper(r)["group"]
            found = []
            # candidate flips and crop offsets of the group: the best matches of its first
            # variant (the frame itself) for each flip, checked exactly below
            for flips in [(), (0,), (1,), (0, 1)]:
                src = np.flip(gray, flips) if flips else gray
                first = _gray(group[0]["image"])
                sqdiff = cv2.matchTemplate(
                    src.astype(np.float32), first.astype(np.float32), cv2.TM_SQDIFF
                )
                best = np.argsort(sqdiff, axis=None)[:3]
                found += [(flips, *np.unravel_index(i, sqdiff.shape)) for i in best]
            matches = [f for f in found if _same_geometry(group, gray, mask, *f)]
            assert matches
            seen.add(matches[0][0])
    assert len(seen) >= 3  # several flips drawn, each applied to the whole group


def test_group_gets_one_brightness_and_contrast(nudt):
    name, records = nudt
    opts = ["INPUT.SIRST5K.N2N_PROB", 0.0, "INPUT.SIRST5K.NEGATIVE", True, *STILL, *TOGETHER]
    opts += ["INPUT.IR.BRIGHTNESS", [0.5, 1.5], "INPUT.IR.CONTRAST", [0.5, 1.5]]
    mapper = IRSTDDatasetMapper(_cfg(name, *opts), True)
    np.random.seed(1)
    tables = set()
    for r in records:
        gray, mask = _frame(r), _mask(r)
        table = {}  # input gray value -> output value, over the whole group
        for k, variant in enumerate(mapper(r)["group"]):
            source = _rotated(gray, mask, k)[0].ravel()
            for a, b in set(zip(source.tolist(), _gray(variant["image"]).ravel().tolist())):
                assert table.setdefault(a, b) == b, "variants got different photometric maps"
        tables.add(tuple(sorted(table.items())))
    assert len(tables) == len(records)  # the map is drawn anew for each frame


# ----------------------------------------------------------------------------- N2N
def test_n2n_with_probability_1_is_exactly_the_blend(nudt):
    name, records = nudt
    alpha = 0.25
    values = (0, 40, 97, 255)
    bank = NoiseBank([np.full((256, 256), v, np.uint8) for v in values])  # no resize
    aug = SIRST5KAugmentation(bank, n2n_prob=1.0, alpha=alpha)
    cfg = _cfg(name, *STILL)
    mapper = IRSTDDatasetMapper(cfg, True, sirst5k=aug)  # detectron2's configurable override
    np.random.seed(2)
    drawn = set()
    for r in records * 3:
        out = mapper(r)
        assert "group" not in out
        gray = _frame(r).astype(np.int64)
        got = _gray(out["image"]).astype(np.int64)
        # alpha = 1/4: 4 * out = v + 3 * I exactly, half-way cases rounded to even
        hits = []
        for v in values:
            num = v + 3 * gray
            q, rem = np.divmod(num, 4)
            expected = q + (rem > 2) + ((rem == 2) & (q % 2 == 1))
            if np.array_equal(got, expected):
                hits.append(v)
        assert len(hits) == 1
        drawn.add(hits[0])
        np.testing.assert_array_equal(out["sem_seg"].numpy(), _mask(r))
    assert len(drawn) >= 3  # patches drawn at random from the bank


def test_n2n_with_the_mapper_noise_bank(nudt, caplog):
    name, records = nudt
    opts = ["INPUT.SIRST5K.N2N_PROB", 1.0, "INPUT.SIRST5K.ALPHA", 0.1, *STILL]
    with caplog.at_level(logging.INFO, logger="ir_d2"):
        mapper = IRSTDDatasetMapper(_cfg(name, *opts), True)
    bank = mapper.sirst5k.noise_bank
    assert f"{len(bank)} patches from {N_FRAMES} frames of {name}" in caplog.text
    # eq. 1 on the 8 x 8 grid of each 256 x 256 frame: 32 x 32 regions, 0 < var < 100, 0 < mean <
    # 100, counted by reshaping the frames into blocks
    expected = 0
    for r in records:
        blocks = _frame(r).astype(np.float64).reshape(8, 32, 8, 32).transpose(0, 2, 1, 3)
        mean, var = blocks.mean((2, 3)), blocks.var((2, 3))
        expected += int(((var > 0) & (var < 100) & (mean > 0) & (mean < 100)).sum())
    assert len(bank) == expected > 0
    assert all(p.shape == (32, 32) and p.dtype == np.uint8 for p in bank.patches)
    np.random.seed(3)
    r = records[0]
    gray = _frame(r).astype(np.float64)
    got = _gray(mapper(r)["image"])
    # eq. 2 by torch's bilinear resize (align_corners=False), independent of the code's OpenCV
    patches = torch.from_numpy(np.stack(bank.patches).astype(np.float64))[:, None]
    resized = torch.nn.functional.interpolate(patches, size=(256, 256), mode="bilinear")
    blends = [np.clip(np.rint(0.1 * n[0].numpy() + 0.9 * gray), 0, 255) for n in resized]
    assert any(np.array_equal(got, b) for b in blends)
    assert not np.array_equal(got, gray)
    # reproducible under detectron2's seeding of np.random
    np.random.seed(3)
    np.testing.assert_array_equal(_gray(mapper(r)["image"]), got)


def test_n2n_then_negatives_form_one_noisy_group(nudt):
    name, records = nudt
    opts = ["INPUT.SIRST5K.N2N_PROB", 1.0, "INPUT.SIRST5K.NEGATIVE", True, *STILL, *TOGETHER]
    opts += ["INPUT.SIRST5K.ANGLES", [0, 180]]
    mapper = IRSTDDatasetMapper(_cfg(name, *opts), True)
    np.random.seed(4)
    for r in records:
        group = mapper(r)["group"]
        assert len(group) == 2
        noisy = _gray(group[0]["image"])
        assert not np.array_equal(noisy, _frame(r))
        # the second variant is the same noisy frame, its target patches turned by 180 degrees
        np.testing.assert_array_equal(_gray(group[1]["image"]), _rotated(noisy, _mask(r), 2)[0])


# ----------------------------------------------------------------------------- disabled, errors
class _Before(IRSTDDatasetMapper):
    """The mapper's training path as it was before SIRST-5K (commit 59bc196), the reference."""

    def _map(self, dataset_dict):
        image = self._read_image(dataset_dict)
        mask = self._read_mask(dataset_dict, image.shape)
        aug_input = T.AugInput(image, sem_seg=mask)
        self.augmentations(aug_input)
        dataset_dict["image"] = self._to_tensor(aug_input.image)
        dataset_dict["sem_seg"] = torch.as_tensor(aug_input.sem_seg.astype(np.int64))
        dataset_dict.pop("sem_seg_file_name", None)
        return dataset_dict


def test_disabled_is_the_mapper_as_before(nudt):
    name, records = nudt
    # disabled: nothing is built, so unregistered training sets do not matter
    opts = ["INPUT.IR.SCALE", [0.7, 1.3], "INPUT.IR.FLIP", "both", "INPUT.IR.CROP_SIZE", [96, 96]]
    cfg = _cfg("not_a_registered_set", *opts, enabled=False)
    mapper, before = IRSTDDatasetMapper(cfg, True), _Before(cfg, True)
    assert mapper.sirst5k is None
    for seed, r in enumerate(records):
        np.random.seed(seed)
        out = mapper(r)
        np.random.seed(seed)
        ref = before(r)
        assert set(out) == set(ref) and "group" not in out
        assert torch.equal(out["image"], ref["image"]) and torch.equal(
            out["sem_seg"], ref["sem_seg"]
        )
    # never at test time, even when enabled
    test_mapper = IRSTDDatasetMapper(_cfg("not_a_registered_set"), False)
    assert test_mapper.sirst5k is None and "group" not in test_mapper(records[0])


def test_errors_name_the_keys(nudt, tmp_path, caplog):
    name, records = nudt
    for key, value in [("ALPHA", 1.5), ("ANGLES", [0, 45]), ("MODE", "rotate")]:
        cfg = _cfg(name, "INPUT.SIRST5K.N2N_PROB", 0.0, f"INPUT.SIRST5K.{key}", value)
        with pytest.raises(ValueError, match=f"INPUT.SIRST5K.{key}"):
            IRSTDDatasetMapper(cfg, True)
    with pytest.raises(ValueError, match="INPUT.SIRST5K.MAX_VAR"):  # an empty noise bank
        IRSTDDatasetMapper(_cfg(name, "INPUT.SIRST5K.MAX_VAR", 1e-9), True)
    with pytest.raises(ValueError, match="DATASETS.TRAIN"):
        IRSTDDatasetMapper(_cfg(name, "DATASETS.TRAIN", ()), True)
    # an unreadable training frame: an error naming it and the key, or skipped and logged
    bad = f"nudt_online_bad_{uuid.uuid4().hex[:8]}"
    root = shared_data_dir("nudt-sirst")
    (tmp_path / "split.txt").write_text(f"{records[0]['image_id']}\nno_such_frame\n")
    register_irstd(bad, str(root / "images"), str(root / "masks"), str(tmp_path / "split.txt"))
    with pytest.raises(IRDataError, match="no_such_frame") as info:
        IRSTDDatasetMapper(_cfg(bad), True)
    assert "INPUT.SIRST5K.N2N_PROB" in str(info.value)
    with caplog.at_level(logging.INFO, logger="ir_d2"):
        mapper = IRSTDDatasetMapper(_cfg(bad, "DATALOADER.SKIP_BAD_SAMPLES", True), True)
    assert "from 1 frames" in caplog.text and "1 unreadable frames skipped" in caplog.text
    assert len(mapper.sirst5k.noise_bank) > 0


# ----------------------------------------------------------------------------- L_Neg
def _reference_loss(logits, targets, group_of, mode, s=1.0):
    """Per-image Soft-IoU (eq. 8) by explicit sums, combined per group by a Python loop."""
    per_image = []
    for logit, target in zip(logits, targets):
        p = 1.0 / (1.0 + torch.exp(-logit.double().reshape(-1)))
        t = target.double().reshape(-1)
        inter = torch.dot(p, t)
        per_image.append(1.0 - (inter + s) / (p.sum() + t.sum() - inter + s))
    if mode == "none":
        p = torch.sigmoid(logits.double()).reshape(-1)
        t = targets.double().reshape(-1)
        return 1.0 - ((p * t).sum() + s) / (p.sum() + t.sum() - (p * t).sum() + s)
    groups = {}
    for g, loss in zip(group_of, per_image):
        groups.setdefault(g, []).append(loss)
    combine = sum if mode == "sum" else min
    return sum(combine(v) for v in groups.values()) / len(groups)


@pytest.mark.parametrize("mode", ["none", "sum", "min"])
def test_segmentor_negative_loss_on_mapped_groups(nudt, mode):
    name, records = nudt
    opts = ["INPUT.SIRST5K.N2N_PROB", 0.5, "INPUT.SIRST5K.NEGATIVE", True, *TOGETHER]
    opts += [
        "INPUT.SIRST5K.PATCH_SIZE",
        9,
        "INPUT.IR.CROP_SIZE",
        [],
        "INPUT.IR.SCALE",
        [0.25, 0.25],
    ]
    np.random.seed(5)
    mapper = IRSTDDatasetMapper(_cfg(name, *opts), True)
    batch = [mapper(r) for r in records[:3]]
    cfg = ir_cfg(
        "IRSTD/irstd_sirst5k_net-n2n-neg_W16_bs256-1500e_nudt_sirst.yaml",
        ["MODEL.IRSTD.NEG_LOSS", mode, "MODEL.IRSTD.DEEP_SUPERVISION", False],
    )
    cfg.merge_from_list(["MODEL.IRSTD.NET", "UNet", "MODEL.IRSTD.BASE_CHANNELS", 4])
    torch.manual_seed(0)
    model = build_model(cfg).train()
    captured = []

    def keep(module, inputs, output):
        output.retain_grad()
        captured.append(output)

    model.net.register_forward_hook(keep)
    losses = model(batch)
    assert set(losses) == {"loss_soft_iou" if mode == "none" else "loss_neg"}
    (logits,) = captured
    assert logits.shape[0] == 12  # 3 frames x 4 variants, flattened in order
    targets = torch.stack([v["sem_seg"] for d in batch for v in d["group"]])
    group_of = [i for i, d in enumerate(batch) for _ in d["group"]]
    ref = _reference_loss(logits.detach(), targets, group_of, mode)
    (loss,) = losses.values()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-6)
    loss.backward()
    touched = logits.grad.reshape(12, -1).abs().sum(1) > 0
    if mode == "min":  # the gradient reaches only each group's best variant
        per_image = [
            _reference_loss(logits.detach()[i : i + 1], targets[i : i + 1], [0], "sum")
            for i in range(12)
        ]
        for g in range(3):
            ids = range(4 * g, 4 * g + 4)
            low = min(per_image[i].item() for i in ids)
            best = [per_image[i].item() <= low + 1e-12 for i in ids]
            assert [bool(touched[i]) for i in ids] == best and sum(best) < 4
    else:
        assert touched.all()
