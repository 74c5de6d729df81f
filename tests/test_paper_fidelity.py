"""
The papers as written: AFF U-Net's global fusion (SIRST-5K eq. 7) and Xavier init, SGEM's widths
and counts, the per-target negatives (4z samples), the authors' blur and input normalisation, the
Recall column, the paper-row configs, and the project pages' deviation and model-zoo tables
against the papers' figures (the README links each page's deviation table).
"""

import re

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import CONFIGS, REPO_ROOT, ir_cfg
from detectron2.modeling import build_model
from PIL import Image
from torchvision import transforms

from ir_d2.data import IRSTDDatasetMapper
from ir_d2.data.sirst5k import SIRST5KAugmentation
from ir_d2.data.transforms import IRRandomGaussianBlur
from ir_d2.modeling.irstd import AFFUNet, SGEMUNet, UNet
from ir_d2.tools.analyze_model import analyze

README = (REPO_ROOT / "README.md").read_text()
PROJECTS = {
    p: (REPO_ROOT / "projects" / p / "README.md").read_text()
    for p in ("BNSA-MaskRCNN", "SGEM", "SIRST-5K", "IRSTD-Baselines")
}


# ----------------------------------------------------------------------------- AFF U-Net
def test_aff_global_fusion_recomputes_eq_7():
    """The head reads F_global = {F'', F''/2, F''/4, F''/8}: recomputed from the net's own
    decoder outputs and weights (1x1 projections, bilinear up-sampling, concatenation, fusion)."""
    torch.manual_seed(0)
    net = AFFUNet(3, 8, fusion="paper").eval()
    x = torch.randn(1, 3, 40, 56)
    captured = {}
    net.decoder[0].register_forward_hook(lambda m, i, o: captured.__setitem__(0, o))
    for level in (1, 2, 3):
        net.decoder[level].register_forward_hook(
            lambda m, i, o, lv=level: captured.__setitem__(lv, o)
        )
    with torch.no_grad():
        out = net(x)
        full = captured[0]
        parts = []
        for conv, level in zip(net.fusion_proj, (3, 2, 1)):
            y = F.conv2d(captured[level], conv.weight, conv.bias)
            parts.append(
                F.interpolate(y, size=full.shape[-2:], mode="bilinear", align_corners=False)
            )
        fused = net.fusion_node(torch.cat([*parts, full], dim=1))
        expected = F.conv2d(fused, net.head.weight, net.head.bias)
    torch.testing.assert_close(out, expected)
    assert [c.in_channels for c in net.fusion_proj] == [64, 32, 16]
    assert net.fusion_node.body[0].in_channels == 4 * 8


def test_aff_fusion_options_and_counts():
    none, paper, code = (AFFUNet(3, 32, fusion=f) for f in ("none", "paper", "code"))
    counts = [sum(p.numel() for p in n.parameters()) for n in (none, paper, code)]
    assert [round(c / 1e4) / 100 for c in counts] == [8.34, 8.41, 8.43]  # the README's figures
    for figure in ("8.41 M", "8.43 M", "8.34 M"):
        assert figure in PROJECTS["SIRST-5K"]
    assert [c.in_channels for c in code.fusion_proj] == [512, 256, 128, 64]
    # "none" is the U-Net head on the last decoder node
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert none(x).shape == paper(x).shape == code(x).shape == (1, 1, 32, 32)
    with pytest.raises(ValueError, match="MODEL.IRSTD.AFF_FUSION"):
        AFFUNet(3, 8, fusion="sum")


def test_xavier_init_draws_every_conv_from_xavier_normal():
    torch.manual_seed(0)
    net = UNet(3, 16)
    bn_before = [m.weight.clone() for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    net.init_weights("xavier")
    conv = net.decoder[0][0]  # (16, 48, 3, 3): fan_in 432, fan_out 144
    std = conv.weight.std().item()
    assert std == pytest.approx((2.0 / (48 * 9 + 16 * 9)) ** 0.5, rel=0.08)
    bn_after = [m.weight for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(torch.equal(a, b) for a, b in zip(bn_before, bn_after))
    with pytest.raises(ValueError, match="MODEL.IRSTD.INIT"):
        net.init_weights("orthogonal")
    cfg = ir_cfg("IRSTD/irstd_aff_unet_W32_bs256-1500e_nudt_sirst.yaml")
    assert cfg.MODEL.IRSTD.INIT == "xavier"


# ----------------------------------------------------------------------------- SGEM
def test_sgem_widths_match_the_papers_counts_within_one_percent():
    cfg = ir_cfg(
        "IRSTD/irstd_sgem_unet_W40_1500e_nudt_sirst.yaml",
        ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", ""],
    )
    r = analyze(cfg, 256, 256, runs=1, warmup=0)
    assert r["params_M"] == pytest.approx(8.69, rel=0.01)
    assert r["gflops"] == pytest.approx(15.92, rel=0.01)
    stated = f"{r['params_M']:.2f} M / {r['gflops']:.2f} GFLOPs"
    assert stated in PROJECTS["SGEM"], stated  # the figures the SGEM page states, as measured


def test_sgem_zero_init_is_ours_and_off_in_the_paper_row():
    torch.manual_seed(0)
    paper = SGEMUNet(3, 8)
    ours = SGEMUNet(3, 8, zero_init=True)
    assert (paper.sgem.restore[1].weight == 1).all() and (ours.sgem.restore[1].weight == 0).all()
    assert (
        ir_cfg("IRSTD/irstd_sgem_unet_W40_1500e_nudt_sirst.yaml").MODEL.IRSTD.SGEM_ZERO_INIT
        is False
    )
    torch.manual_seed(1)
    plain = UNet(3, 8).eval()
    ours.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), plain(x))  # identity SGEM: the plain U-Net


# ----------------------------------------------------------------------------- SIRST-5K data
def _frame_with_targets(centres, size=32):
    image = np.full((size, size), 40, np.uint8)
    mask = np.zeros((size, size), np.uint8)
    for y, x in centres:
        image[y - 1 : y + 2, x - 1 : x + 2] = np.arange(9, dtype=np.uint8).reshape(3, 3) * 20 + 60
        mask[y - 1 : y + 2, x - 1 : x + 2] = 1
    return image, mask


def test_per_target_negatives_are_4z_samples_each_changing_one_target():
    image, mask = _frame_with_targets([(8, 8), (20, 22)])
    aug = SIRST5KAugmentation(None, n2n_prob=0.0, negative=True, patch_size=3)
    pairs = aug(image, mask, 0)
    assert aug.group_size is None and len(pairs) == 4 * 2
    for k, (img, msk) in enumerate(pairs):
        target, angle = divmod(k, 4)
        changed = np.argwhere(img != image)
        np.testing.assert_array_equal(msk, mask)  # the label is unchanged (paper mode)
        if angle == 0:
            assert changed.size == 0
            continue
        centre = (8, 8) if target == 0 else (20, 22)
        assert (np.abs(changed - centre) <= 1).all()  # only this target's 3x3 patch
        patch = image[centre[0] - 1 : centre[0] + 2, centre[1] - 1 : centre[1] + 2]
        np.testing.assert_array_equal(
            img[centre[0] - 1 : centre[0] + 2, centre[1] - 1 : centre[1] + 2],
            np.rot90(patch, angle),
        )
    # a frame without targets is its own group of one; the old form rotates all targets together
    empty = aug(image, np.zeros_like(mask), 0)
    assert len(empty) == 1 and np.array_equal(empty[0][0], image)
    together = SIRST5KAugmentation(
        None, n2n_prob=0.0, negative=True, patch_size=3, per_target=False
    )
    assert together.group_size == 4 and len(together(image, mask, 0)) == 4


def test_blur_is_the_authors_gaussian_blur():
    aug = IRRandomGaussianBlur(prob=1.0, min_sigma=0.8, max_sigma=0.8)
    image = (np.random.default_rng(0).random((20, 24, 3)) * 255).astype(np.uint8)
    out = aug.get_transform(image).apply_image(image)
    np.testing.assert_array_equal(out, cv2.GaussianBlur(image, (0, 0), 0.8))
    np.random.seed(0)
    never = IRRandomGaussianBlur(prob=0.0)
    assert np.array_equal(never.get_transform(image).apply_image(image), image)
    with pytest.raises(ValueError, match="BLUR"):
        IRRandomGaussianBlur(prob=2.0)


# ----------------------------------------------------------------------------- configs
def test_sirst5k_paper_rows_train_as_the_paper_says():
    for name, iters in [
        ("irstd_unet_W32_bs256-1500e_nudt_sirst.yaml", 3885),
        ("irstd_aff_unet_W32_bs256-1500e_nudt_sirst.yaml", 3885),
        ("irstd_sirst5k_net_W16_bs256-1500e_nudt_sirst.yaml", 3885),
        ("irstd_sirst5k_net-n2n_W16_bs256-1500e_nudt_sirst.yaml", 32590),
        ("irstd_sirst5k_net-n2n-neg-s7_W16_bs256-1500e_nudt_sirst.yaml", 32590),
    ]:
        cfg = ir_cfg(f"IRSTD/{name}")
        assert cfg.SOLVER.IMS_PER_BATCH == 256 and cfg.SOLVER.MAX_ITER == iters, name
        assert cfg.SOLVER.OPTIMIZER == "Adagrad" and cfg.SOLVER.BASE_LR == 0.05
        # the authors' code steps its cosine schedule once, at construction: a constant lr
        assert cfg.SOLVER.LR_SCHEDULER_NAME == "WarmupMultiStepLR" and not cfg.SOLVER.STEPS
        assert cfg.MODEL.IRSTD.INIT == "xavier" and cfg.MODEL.IRSTD.PRIOR_PROB == 0.0
        assert tuple(cfg.INPUT.IR.BRIGHTNESS) == tuple(cfg.INPUT.IR.CONTRAST) == (1.0, 1.0)
        assert cfg.INPUT.IR.BLUR_PROB == 0.5 and tuple(cfg.INPUT.IR.SCALE) == (0.5, 2.0)
    assert ir_cfg("IRSTD/irstd_unet_W32_bs256-1500e_nudt_sirst.yaml").MODEL.IRSTD.NET == "UNet"
    neg = ir_cfg("IRSTD/irstd_sirst5k_net-n2n-neg-s7_W16_bs256-1500e_nudt_sirst.yaml")
    assert neg.INPUT.SIRST5K.PATCH_SIZE == 7 and neg.INPUT.SIRST5K.PER_TARGET
    for alpha in (0.2, 0.3, 0.4, 0.5):
        cfg = ir_cfg(f"IRSTD/irstd_sirst5k_net-n2n-a{alpha}_W16_bs256-1500e_nudt_sirst.yaml")
        assert cfg.INPUT.SIRST5K.ALPHA == alpha and cfg.INPUT.SIRST5K.N2N_PROB == 0.88
    # every Table III / IV / V row but "Plain" builds the authors' released network
    for path in sorted((CONFIGS / "IRSTD").glob("irstd_sirst5k_net*.yaml")):
        assert ir_cfg(f"IRSTD/{path.name}").MODEL.IRSTD.NET == "SIRST5KNet", path.name


MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's, in RGB order


def test_code_rows_normalise_a_frame_as_the_authors_transforms(tmp_path):
    """The DNANet and SIRST-5K rows and the ACM, ALCNet and ISNet baselines feed the net what their
    authors' code feeds it: Pillow's convert('RGB'), ToTensor, Normalize with the ImageNet
    constants (torchvision's; MXNet's for ACM / ALCNet, the same formula); UIU-Net's
    ToTensorLab(flag=0) on skimage's RGB array, recomputed here (its division by the frame's
    maximum equals ir_d2's by 255 on a frame whose maximum is 255). A colour frame tells the
    channel orders apart (gray frames would not); the BGR base config gives the reversed input."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (18, 22, 3), dtype=np.uint8)
    rgb[..., 0] = np.maximum(rgb[..., 0], 200)  # R high, B low: the orders differ everywhere
    rgb[..., 2] = np.minimum(rgb[..., 2], 40)
    rgb[0, 0, 0] = 255  # UIU-Net divides by the frame's maximum
    Image.fromarray(rgb).save(tmp_path / "frame.png")
    record = {"file_name": str(tmp_path / "frame.png"), "height": 18, "width": 22}
    normalize = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    official = normalize(Image.open(tmp_path / "frame.png").convert("RGB"))

    image = np.asarray(Image.open(tmp_path / "frame.png"), dtype=np.float64)  # skimage's imread
    image = image / image.max()
    uiunet = np.stack([(image[..., c] - m) / s for c, m, s in zip(range(3), MEAN, STD)])

    def ir_d2_input(config, *opts):
        cfg = ir_cfg(config, ["MODEL.IRSTD.BASE_CHANNELS", 4, "MODEL.IRSTD.SIZE_DIVISIBILITY", 1])
        cfg.merge_from_list(["INPUT.IR.TEST_SIZE", 0, *opts])  # the frame's size: no resizing
        model = build_model(cfg).eval()
        return model.preprocess_image([IRSTDDatasetMapper(cfg, False)(dict(record))]).tensor[0]

    for name in (
        "irstd_dnanet_W16_bs16-1500e_nudt_sirst.yaml",
        "Base-SIRST5K.yaml",
        "irstd_acm_W8_bs8-300e_nudt_sirst.yaml",
        "irstd_alcnet_W8_bs2-300e_nudt_sirst.yaml",
        "irstd_isnet_W8_bs12-3000e_nudt_sirst.yaml",
    ):
        torch.testing.assert_close(ir_d2_input(f"IRSTD/{name}"), official, atol=1e-5, rtol=0)
    got = ir_d2_input("IRSTD/irstd_uiunet_W64_bs3-500e_nudt_sirst.yaml")
    np.testing.assert_allclose(got.double().numpy(), uiunet, atol=1e-5, rtol=0)
    bgr = ir_d2_input("IRSTD/irstd_dnanet_W16_bs16-1500e_nudt_sirst.yaml", "INPUT.FORMAT", "BGR")
    assert not torch.allclose(bgr, official, atol=0.1)  # the order matters on this frame


def test_no_paper_row_carries_an_improvement_of_ours():
    """Our improvements (output prior, residual BNSA, zero-init SGEM, brightness/contrast jitter)
    stay off in every config but the ones named as ours and the CPU quick schedules."""
    for path in sorted(CONFIGS.rglob("*.yaml")):
        name = path.relative_to(CONFIGS).as_posix()
        if path.name.startswith("Base") or name.startswith("quick_schedules/"):
            continue
        cfg = ir_cfg(name)
        ours = "-residual_" in name or "-prior_" in name
        improvements = [
            cfg.MODEL.IRSTD.PRIOR_PROB > 0,
            cfg.MODEL.BNSA.RESIDUAL and cfg.MODEL.BACKBONE.NAME.startswith("build_bnsa"),
            cfg.MODEL.IRSTD.SGEM_ZERO_INIT,
        ]
        assert any(improvements) == ours, name
        if cfg.MODEL.META_ARCHITECTURE == "IRSTDSegmentor":
            assert tuple(cfg.INPUT.IR.BRIGHTNESS) == (1.0, 1.0), name


def test_wang_ren_paper_rows_follow_sec_4_1_and_table_5():
    cfg = ir_cfg("IR-InstanceSegmentation/mask_rcnn_R_50_FPN_100e_ircoco.yaml")
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.MAX_ITER) == (0.001, 8, 27600)
    assert cfg.SOLVER.WARMUP_ITERS == 1000 and tuple(cfg.SOLVER.STEPS) == ()
    final = ir_cfg(
        "IR-InstanceSegmentation/mask_rcnn-focal_siou-bce_dice_lovasz_R_50_BNSA-C3C4_FPN_100e_ircoco.yaml"
    )
    assert final.MODEL.BNSA.RESIDUAL is False and final.MODEL.ROI_MASK_HEAD.LOVASZ == "softmax"
    for name in (
        "faster_rcnn_R_50_FPN_100e_flir.yaml",
        "faster_rcnn-focal_siou_R_50_BNSA-C3C4_FPN_100e_flir.yaml",
    ):
        cfg = ir_cfg(f"IR-Detection/{name}")
        assert cfg.MODEL.MASK_ON is False and cfg.DATASETS.TRAIN == ("flir_v2_train",)
        assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 3 and cfg.SOLVER.MAX_ITER == 134275
    ours = ir_cfg("IR-Detection/faster_rcnn-focal_siou_R_50_BNSA-C3C4_FPN_100e_flir.yaml")
    assert ours.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE == "focal_siou"
    model = build_model(ours)
    assert any("bnsa_res4" in n for n, _ in model.named_parameters())


# ----------------------------------------------------------------------------- Recall
def test_recall_is_coco_ar100_on_the_0_1_scale(tmp_path):
    """Predicting exactly 3 of a class's 5 objects gives Recall 3/5 at every IoU threshold."""
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.structures import Boxes, BoxMode, Instances

    from ir_d2.evaluation import IRCOCOEvaluator

    boxes = [[[2, 2, 10, 10], [20, 5, 8, 12], [40, 30, 6, 6]], [[5, 5, 20, 10], [30, 30, 9, 9]]]
    records = [
        {
            "file_name": f"f{i}.png",
            "image_id": i,
            "height": 64,
            "width": 64,
            "annotations": [
                {"bbox": b, "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0, "iscrowd": 0}
                for b in bs
            ],
        }
        for i, bs in enumerate(boxes)
    ]
    name = "tmp_recall_check"
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(thing_classes=["target"], evaluator_type="coco")
    try:
        evaluator = IRCOCOEvaluator(
            name, tasks=("bbox",), output_dir=str(tmp_path), distributed=False
        )
        evaluator.reset()
        for r, bs in zip(records, ([boxes[0][0], boxes[0][1]], [boxes[1][1]])):
            inst = Instances((64, 64))
            xyxy = [BoxMode.convert(b, BoxMode.XYWH_ABS, BoxMode.XYXY_ABS) for b in bs]
            inst.pred_boxes = Boxes(torch.tensor(xyxy, dtype=torch.float32))
            inst.scores = torch.ones(len(bs))
            inst.pred_classes = torch.zeros(len(bs), dtype=torch.int64)
            evaluator.process([{"image_id": r["image_id"]}], [{"instances": inst}])
        results = evaluator.evaluate()
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    assert results["bbox"]["Recall"] == pytest.approx(3 / 5)
    assert results["bbox"]["AP"] == pytest.approx(60.0, abs=0.5)  # detectron2's 0-100 scale


# ----------------------------------------------------------------------- project pages' tables
def _rows(text, marker):
    block = text[text.index(marker) :].split("\n")[1:]
    table = []
    for line in block:
        if not line.startswith("|"):
            break
        table.append(line)
    return table


DEVIATION_PAGES = {
    "BNSA-MaskRCNN": "wang-ren",
    "SGEM": "deng-yang",
    "SIRST-5K": "lu",
    "IRSTD-Baselines": "baselines",
}


def test_each_page_has_one_deviation_table_and_the_readme_links_them():
    header = "| paper | where | the paper | ir_d2 | why | key |"
    rows = []
    for project, marker in DEVIATION_PAGES.items():
        text = (REPO_ROOT / "projects" / project / "README.md").read_text()
        table = _rows(text, f"<!-- deviations:{marker} -->")
        assert table[0] == header, project
        assert len(table) > 3, project
        for row in table[2:]:
            assert len(row.strip("|").split(" | ")) == 6, row
        rows += table[2:]
        assert f"projects/{project}/README.md#where-ir_d2-departs-from-" in README, project
    assert "<!-- deviations:" not in README  # one table per paper, no copy to keep in sync
    text = "\n".join(rows)
    for point in (
        "min(\\|dx\\|, \\|dy\\|)",  # SIoU angle
        "detached",  # focal weight
        "`s = 1`",  # Dice smoothing
        "eq. 3",  # SGEM's reading
        "0.88 = 4899 / 5562",  # N2N_PROB
        "online",  # online vs offline
        "4z samples",  # per-target negatives
        "batch 256",
        "Xavier",
        "Adam",
        "+4.271 M",  # the BNSA readings, measured
        "8,792,702",  # the SIRST-5K net behind Table II
        '"min_literal"',  # Algorithm 2 as written
        "h/8 x w/8",  # eq. 1's regions
        "pixel-level F1",
        "no optimizer named",  # Wang & Ren's SGD is detectron2's
        "summed over the ROIs",  # eqs. 13, 14, 16
        "once, at construction",  # the authors' cosine schedule that never decays
    ):
        assert point in text, point


PAPER_FIGURES = {
    "BNSA-MaskRCNN": [
        "| no BNSA | 63.400 | 0.684 | 95.820 | 73.164 | 55.832 | 74.703 | 75.565 |",
        "| C3+C4 | 65.583 | 0.698 | 96.006 | 78.589 | 58.070 | 75.951 | 77.997 |",
        "| Focal-SIoU | 67.115 | 0.708 | 96.865 | 79.852 | 59.671 | 77.120 | 78.705 |",
        "| + Dice + Lovász-Softmax | 66.480 | 0.708 | 96.548 | 79.679 | 59.189 | 76.935 | 80.878 |",  # noqa: E501
        "| ours (final) | 68.460 | 0.718 | 97.229 | 82.278 | 61.798 | 77.394 | 80.007 | 53.865 M |",  # noqa: E501
        "| Mask R-CNN (mask head off) | 63.135 | 0.720 | 91.283 | 56.847 | 44.382 | 60.372 | 68.948 |",  # noqa: E501
        "| ours (BNSA + Focal-SIoU) | 65.672 | 0.741 | 92.259 | 60.278 | 48.283 | 63.843 | 70.378 |",  # noqa: E501
    ],
    "SGEM": [
        "| SGEM U-Net (paper) | 87.64 | 93.41 | 15.92 | 8.69 M | 342 |",
        "| DNANet (paper) | 86.57 | 92.80 | 14.28 | 4.70 M | 27 |",
    ],
    "IRSTD-Baselines": [
        "| `irstd_dnanet_W16_bs16-1500e_nudt_sirst.yaml` | DNANet (SGEM T1) | 86.57 | 92.80 | — | — | 4.70 M |",  # noqa: E501
        "| 1.54 M / 1.31 (SGEM); 0.29 M (SIRST-5K) |",
        "| 50.54 M / 54.50 (SGEM, SIRST-5K) |",
    ],
    "SIRST-5K": [
        "| Plain (U-Net) | 87.11 | 70.05 | 222.61 |",
        "| + AFF + N2N + Neg + L_Neg | 92.78 | 98.84 | 2.74 |",
        "| 0.2 | 88.6 | 98.10 | 1.61 |",
        "| 9 | 90.25 | 98.94 | 16.936 |",
    ],
}


@pytest.mark.parametrize("project", sorted(PAPER_FIGURES))
def test_the_zoo_holds_the_papers_figures_beside_every_row_config(project):
    text = PROJECTS[project]
    for row in PAPER_FIGURES[project]:
        assert row in text, row
    # every config a zoo row names exists and no paper figure is left as "—"
    for config in re.findall(r"\| `([\w.+-]+\.yaml)` \|", text):
        assert list(CONFIGS.rglob(config)), config
    assert "| — | — | — | — | — | — | — |" not in text.split("**Table 4")[0]
