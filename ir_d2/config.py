# -*- coding: utf-8 -*-
"""
Config keys of ir_d2.

``add_ir_config(cfg)`` adds every key the package reads to a detectron2 config; call it before
``cfg.merge_from_file``. It only adds keys (new subtrees are ``CN()``) and never changes a value
of detectron2's own defaults, so a plain detectron2 config behaves the same after it.

The keys are grouped by the part of the package that reads them, one function per group.

``get_ir_cfg()`` is detectron2's ``get_cfg()`` with these keys, whose config files may also name
model-zoo configs as ``_BASE_: "ir_d2://IRSTD/Base-IRSTD.yaml"`` (resolved by
:mod:`ir_d2.utils.config_paths`).
"""

import os

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg

from ir_d2.utils.config_paths import CONFIG_PREFIX

__all__ = ["add_ir_config", "get_ir_cfg", "IRCfgNode"]


class IRCfgNode(CN):
    """detectron2's CfgNode whose YAML files may name model-zoo configs with the ``ir_d2://``
    prefix, also in ``_BASE_`` (where detectron2 would join it to the file's own folder)."""

    @classmethod
    def _open_cfg(cls, filename):
        # fvcore joins a _BASE_ that is not absolute to the folder of its file, so a zoo _BASE_
        # arrives as "<folder>/ir_d2://...": the prefix onwards is the path the handler resolves
        filename = os.fspath(filename)
        if CONFIG_PREFIX in filename:
            filename = filename[filename.index(CONFIG_PREFIX) :]
        return super()._open_cfg(filename)


def get_ir_cfg() -> IRCfgNode:
    """detectron2's default config with ir_d2's keys (:func:`add_ir_config`), as an
    :class:`IRCfgNode`."""
    cfg = IRCfgNode(add_ir_config(get_cfg()))  # every node an IRCfgNode, as merging expects
    cfg.DATASETS.IR_REGISTER.set_new_allowed(True)  # the conversion drops the flag
    return cfg


def add_ir_config(cfg):
    """
    Add the ir_d2 config keys to ``cfg`` (in place). Calling it twice is harmless.
    """
    if "BNSA" in cfg.MODEL:  # already added
        return cfg
    _add_bnsa_config(cfg)
    _add_roi_heads_config(cfg)
    _add_data_config(cfg)
    _add_irstd_config(cfg)
    _add_irstd_baselines_config(cfg)
    _add_sirst5k_config(cfg)
    _add_solver_config(cfg)
    _add_test_config(cfg)
    _add_datasets_config(cfg)
    return cfg


def _add_datasets_config(cfg):
    """Datasets registered from the config itself (no Python needed for one's own data)."""
    # name -> {TYPE: "coco" | "irstd" | "subset", ...}: registered by ir_d2's tools at set-up
    # (ir_d2.data.register_datasets_from_config); docs/datasets.md lists each TYPE's keys.
    cfg.DATASETS.IR_REGISTER = CN(new_allowed=True)


def _add_bnsa_config(cfg):
    """Bottleneck Squeeze-and-Attention backbone (Wang & Ren 2025, sec. 3.2)."""
    cfg.MODEL.BNSA = CN()
    # ResNet outputs that pass through their own BNSA block before the FPN (any of res2..res5).
    cfg.MODEL.BNSA.STAGES = ["res3", "res4"]
    # Norm inside the BNSA block: "BN", "GN", "SyncBN" (CUDA), "naiveSyncBN", "FrozenBN" or "".
    cfg.MODEL.BNSA.NORM = "BN"
    # Width of the squeeze-and-attention part relative to the stage width (paper: C -> C/4).
    cfg.MODEL.BNSA.BOTTLENECK_RATIO = 0.25
    # Where the 1x1 bottleneck convs sit: "per_branch" (before and after each branch, our reading
    # of fig. 5) or "shared" (one before and one after the whole SA part, ir_d2 0.1).
    cfg.MODEL.BNSA.LAYOUT = "per_branch"
    # False: out = BNSA(x), the paper's plain form; True (ours): out = x + scale * BNSA(x) with a
    # learned scale starting at 0 (identity at init).
    cfg.MODEL.BNSA.RESIDUAL = False


def _add_roi_heads_config(cfg):
    """Box and mask losses of the Mask R-CNN paper (Wang & Ren 2025, sec. 3.3-3.4)."""
    # Exponent of the IoU weight IoU^gamma of the focal IoU box losses (eq. 12; paper: 0.5).
    cfg.MODEL.ROI_BOX_HEAD.FOCAL_IOU_GAMMA = 0.5
    # Weight of the binary cross-entropy term of the IR mask loss (eq. 18).
    cfg.MODEL.ROI_MASK_HEAD.BCE_WEIGHT = 1.0
    # Weight of the Dice term of the IR mask loss (eq. 18).
    cfg.MODEL.ROI_MASK_HEAD.DICE_WEIGHT = 1.0
    # Weight of the Lovasz term of the IR mask loss (eq. 18; paper: 0.1).
    cfg.MODEL.ROI_MASK_HEAD.LOVASZ_WEIGHT = 0.1
    # Errors of the Lovasz term: "softmax" (eqs. 15-17, on probabilities) or "hinge" (on logits).
    cfg.MODEL.ROI_MASK_HEAD.LOVASZ = "softmax"
    # Classes the Lovasz-Softmax term averages over per ROI: "present" (reference code) or "all".
    cfg.MODEL.ROI_MASK_HEAD.LOVASZ_CLASSES = "present"
    # Smoothing constant s of the Dice loss (eq. 14).
    cfg.MODEL.ROI_MASK_HEAD.DICE_SMOOTH = 1.0


def _add_data_config(cfg):
    """Infrared input: reading, normalisation, masks, mappers and bad samples."""
    # Dataset mapper used by the ir_d2 trainer: "IRDatasetMapper" (instances),
    # "IRSTDDatasetMapper" (small-target semantic masks) or "DatasetMapper" (detectron2's).
    cfg.INPUT.DATASET_MAPPER_NAME = "IRDatasetMapper"
    cfg.INPUT.IR = CN()
    # How 16-bit (radiometric) frames become 8-bit: "minmax", "percentile" or "none" (clip).
    cfg.INPUT.IR.NORMALIZE = "minmax"
    # Low and high percentiles used by NORMALIZE "percentile".
    cfg.INPUT.IR.PERCENTILES = [1.0, 99.0]
    # A semantic mask pixel is foreground when its value is > MASK_THRESHOLD ({0,64,255} masks).
    cfg.INPUT.IR.MASK_THRESHOLD = 127
    # Random brightness factor range for training (1.0, 1.0 disables it).
    cfg.INPUT.IR.BRIGHTNESS = [0.8, 1.2]
    # Random contrast factor range for training (1.0, 1.0 disables it).
    cfg.INPUT.IR.CONTRAST = [0.8, 1.2]
    # Random horizontal flip for training ("horizontal", "vertical", "both" or "none").
    cfg.INPUT.IR.FLIP = "horizontal"
    # Probability of a random Gaussian blur in training (SIRST-5K's code: 0.5); 0 disables it.
    cfg.INPUT.IR.BLUR_PROB = 0.0
    # Range of the blur's standard deviation in pixels (SIRST-5K's code: [0, 1]).
    cfg.INPUT.IR.BLUR_SIGMA = [0.0, 1.0]
    # Fixed-size training crop (H, W) of the small-target mapper; [] keeps the whole frame.
    cfg.INPUT.IR.CROP_SIZE = [256, 256]
    # Test-time size of the small-target mapper: 0 keeps the original size.
    cfg.INPUT.IR.TEST_SIZE = 0
    # Random rescale factor range of the small-target mapper in training, before the crop.
    cfg.INPUT.IR.SCALE = [1.0, 1.0]
    # True: a mask whose size differs from its image (same aspect ratio) is resized (nearest);
    # False: it is an error naming both files (SIRST's Misc_111 mask is 592x400, its image 325x220).
    cfg.INPUT.IR.RESIZE_MISMATCHED_MASKS = False
    # True: a missing, empty or corrupt image or mask is logged, counted and skipped;
    # False: it raises an error naming the file and the dataset.
    cfg.DATALOADER.SKIP_BAD_SAMPLES = False


def _add_irstd_config(cfg):
    """Small-target segmentation: IRSTDSegmentor and its nets (SGEM, SIRST-5K AFF)."""
    cfg.MODEL.IRSTD = CN()
    # Net built from ir_d2.modeling.IRSTD_NET_REGISTRY: the papers' "UNet", "SGEMUNet",
    # "AFFUNet", "SIRST5KNet", and the baselines "DNANet", "ACM", "ALCNet", "ISNet", "UIUNet".
    cfg.MODEL.IRSTD.NET = "UNet"
    # Inputs are padded to a multiple of this (4 down-sampling stages need 16; 32 is safe).
    cfg.MODEL.IRSTD.SIZE_DIVISIBILITY = 32
    # Channels of the first U-Net stage; each down-sampling stage doubles them.
    cfg.MODEL.IRSTD.BASE_CHANNELS = 32
    # Widths of the net's levels (full resolution first), overriding BASE_CHANNELS; [] derives
    # them as BASE_CHANNELS * (1, 2, 4, ...) for the U-Net family and DNANet (5 levels; SGEM widens
    # the first this way) and takes the authors' widths for ACM, ALCNet and ISNet (4 levels: the
    # stem, then 3 stages; [8, 16, 32, 64]), which ignore BASE_CHANNELS.
    cfg.MODEL.IRSTD.CHANNELS = []
    # Residual blocks per down-sampling stage; [] takes the net's default (DNANet: [2, 2, 2, 2],
    # SIRST5KNet: [3, 4, 6, 3], ACM: [3, 3, 3], ALCNet and ISNet: [4, 4, 4]).
    cfg.MODEL.IRSTD.BLOCKS = []
    # Norm of every conv of the nets: "BN" (the papers'), "GN", "SyncBN" (torch's, CUDA),
    # "naiveSyncBN" (detectron2's all-reduce, also across CPU processes), "FrozenBN" or "".
    cfg.MODEL.IRSTD.NORM = "BN"
    # Channels of the net's input image (3: gray replicated to BGR).
    cfg.MODEL.IRSTD.IN_CHANNELS = 3
    # Smoothing constant s of the Soft-IoU loss (SGEM eq. 4, SIRST-5K eq. 8).
    cfg.MODEL.IRSTD.SOFT_IOU_SMOOTH = 1.0
    # True: nets that support it return several outputs, each scored by the loss.
    cfg.MODEL.IRSTD.DEEP_SUPERVISION = False
    # How the losses of several outputs combine: "mean" (DNANet's and SIRST-5K's code) or "sum"
    # (UIU-Net's code).
    cfg.MODEL.IRSTD.DS_REDUCTION = "mean"
    # Segmentation loss of every output: "soft_iou" (SGEM eq. 4, SIRST-5K eq. 8, DNANet, ACM,
    # ALCNet) or "bce" (binary cross-entropy, mean over pixels: UIU-Net's code).
    cfg.MODEL.IRSTD.LOSS = "soft_iou"
    # ISNet: weight of the binary cross-entropy of the edge map against the mask's edges (the
    # authors' code: 10); used only by nets that return an edge map in training.
    cfg.MODEL.IRSTD.EDGE_LOSS_WEIGHT = 10.0
    # AFFUNet: reduction r of the channel-attention MLP, C -> C/r -> C (SIRST-5K eq. 5; CBAM: 16).
    cfg.MODEL.IRSTD.AFF_REDUCTION = 16
    # SGEMUNet: start SGEM's last BatchNorm at zero, so the net is the U-Net at init (ours).
    cfg.MODEL.IRSTD.SGEM_ZERO_INIT = False
    # AFFUNet: global fusion before the head (eq. 7): "paper" (4 scales), "code" (5) or "none".
    cfg.MODEL.IRSTD.AFF_FUSION = "paper"
    # Weight init of the net's convolutions: "default" (torch's) or "xavier" (SIRST-5K, sec. IV).
    cfg.MODEL.IRSTD.INIT = "default"
    # Initial foreground probability of the net's output heads (bias -log((1-p)/p)); 0 keeps
    # the init's bias. Ours, not the papers': a small prior speeds up Soft-IoU training.
    cfg.MODEL.IRSTD.PRIOR_PROB = 0.0
    # Probability above which a pixel is a target at inference.
    cfg.MODEL.IRSTD.THRESHOLD = 0.5
    # Negative-sample loss over a frame's rotated variants (SIRST-5K): "none", "sum" (eq. 9),
    # "min" (Algorithm 2 as a running minimum) or "min_literal" (Algorithm 2 as written).
    cfg.MODEL.IRSTD.NEG_LOSS = "none"


def _add_irstd_baselines_config(cfg):
    """The small-target baselines the papers compare with (SGEM Table 1, SIRST-5K Tables I-II)."""
    # ACM (Dai et al., WACV 2021) and ALCNet (Dai et al., TGRS 2021).
    cfg.MODEL.IRSTD.ACM = CN()
    # ACM decoder: "fpn" (ASKCResNetFPN, train_dentist.py's defaults) or "unet" (ASKCResUNet).
    cfg.MODEL.IRSTD.ACM.ARCH = "fpn"
    # ALCNet: cyclic shifts of the multiscale local contrast (the code's cal_mpcm; [13]: single).
    cfg.MODEL.IRSTD.ACM.ALC_SHIFTS = [13, 17]
    # ISNet (Zhang et al., CVPR 2022).
    cfg.MODEL.IRSTD.ISNET = CN()
    # ISNet: width of the full-resolution shape branch (TFD edge blocks; the code: 64).
    cfg.MODEL.IRSTD.ISNET.EDGE_CHANNELS = 64
    # ISNet: TOAA deform conv "auto" (torchvision, plain torch in export), "torchvision", "sampling"
    cfg.MODEL.IRSTD.ISNET.DEFORM_IMPL = "auto"
    # ISNet: also build the authors' never-called modules, frozen (1.09 M parameters as SGEM).
    cfg.MODEL.IRSTD.ISNET.UNUSED_MODULES = True
    # ISNet: the code's init (conv N(0, 0.02), BN weight N(1, 0.02), BN bias N(0, 1)).
    cfg.MODEL.IRSTD.ISNET.AUTHORS_INIT = True
    # ISNet edge loss: the code's Soft-IoU term on sigmoid(sigmoid(z)); False: sigmoid(z).
    cfg.MODEL.IRSTD.ISNET.EDGE_IOU_DOUBLE_SIGMOID = True
    # UIU-Net (Wu et al., TIP 2022).
    cfg.MODEL.IRSTD.UIUNET = CN()
    # The classical detectors "TopHat" and "MaxMedian" (SIRST-5K Table I), thresholded at
    # mean + K * std of their response.
    cfg.MODEL.IRSTD.CLASSICAL = CN()
    # Side of the top-hat's elliptical structuring element / of the Max-Median window (pixels).
    cfg.MODEL.IRSTD.CLASSICAL.KERNEL = 5
    # Threshold in standard deviations of the frame's response above its mean.
    cfg.MODEL.IRSTD.CLASSICAL.K = 4.0


def _add_sirst5k_config(cfg):
    """SIRST-5K online data synthesis (Lu et al. 2024, sec. III)."""
    cfg.INPUT.SIRST5K = CN()
    # Apply the SIRST-5K augmentations in IRSTDDatasetMapper during training.
    cfg.INPUT.SIRST5K.ENABLED = False
    # Probability of a Noise2Noise displacement of a training frame.
    cfg.INPUT.SIRST5K.N2N_PROB = 0.5
    # Blend weight alpha of the noise patch (eqs. 2-3).
    cfg.INPUT.SIRST5K.ALPHA = 0.1
    # Noise bank: grid of regions per frame (eq. 1).
    cfg.INPUT.SIRST5K.GRID = 8
    # Noise bank: a region is kept when 0 < variance < MAX_VAR (sigma of eq. 1).
    cfg.INPUT.SIRST5K.MAX_VAR = 100.0
    # Noise bank: a region is kept when 0 < mean < MAX_MEAN (mu of eq. 1).
    cfg.INPUT.SIRST5K.MAX_MEAN = 100.0
    # Produce the rotated negative variants of each training frame (III-B).
    cfg.INPUT.SIRST5K.NEGATIVE = False
    # Side of the square patch rotated around each target (paper: 3; authors' code: 32).
    cfg.INPUT.SIRST5K.PATCH_SIZE = 3
    # Rotation angles in degrees of the negative augmentation (eq. 4).
    cfg.INPUT.SIRST5K.ANGLES = [0, 90, 180, 270]
    # "paper": rotate the image patch only, label unchanged; "code": the authors' public code.
    cfg.INPUT.SIRST5K.MODE = "paper"
    # True: 4z samples for z targets, each rotating one target (the paper's); False: 4 samples,
    # each rotating every target by the same angle (ir_d2 0.1).
    cfg.INPUT.SIRST5K.PER_TARGET = True


def _add_solver_config(cfg):
    """Optimizers detectron2 lacks (SGEM: Adam; SIRST-5K: Adagrad), and the CPU trainer's
    memory reuse."""
    # Optimizer: "SGD" (detectron2's), "Adam", "AdamW" or "Adagrad".
    cfg.SOLVER.OPTIMIZER = "SGD"
    # Adam/AdamW betas.
    cfg.SOLVER.BETAS = [0.9, 0.999]
    # Adam/AdamW/Adagrad epsilon; 0 takes the optimizer's own default (torch's: Adam/AdamW 1e-8,
    # Adagrad 1e-10), so a config that switches the optimizer never inherits another one's.
    cfg.SOLVER.EPS = 0.0
    # CPU training on Linux/glibc: malloc keeps freed memory (no page faults a step; same values).
    cfg.IR_CPU_KEEP_FREED_MEMORY = True


def _add_test_config(cfg):
    """Small-target evaluation (BasicIRSTD definitions)."""
    cfg.TEST.IRSTD = CN()
    # Probability threshold of the IoU, nIoU, Pd, Fa and F1 metrics (a detector scored by the
    # IRSTD metrics uses its MODEL.ROI_HEADS.SCORE_THRESH_TEST instead).
    cfg.TEST.IRSTD.THRESHOLD = 0.5
    # A predicted target matches a GT target when their centroids are closer than this (pixels).
    cfg.TEST.IRSTD.DISTANCE = 3.0
    # Extra thresholds for the Pd/Fa curve (ROC); [] computes none.
    cfg.TEST.IRSTD.ROC_THRESHOLDS = []
    # Tiled inference of the small-target nets (IRSTDSegmentor, IRPredictor, ExportedPredictor, the
    # demo, evaluation): 0 runs the whole frame; > 0, a frame larger than this in either side runs
    # tile by tile (tiles of this side), so peak memory follows the tile, not the frame.
    cfg.TEST.IRSTD.TILE_SIZE = 0
    # Pixels neighbouring tiles share at least (TILE_SIZE - TILE_OVERLAP >= SIZE_DIVISIBILITY); a
    # pixel comes from the tile where it is farthest from an inner border: a net whose receptive
    # field reaches at most TILE_OVERLAP / 2 pixels gives the whole-frame output.
    cfg.TEST.IRSTD.TILE_OVERLAP = 32
