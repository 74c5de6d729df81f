"""
Cost of the paper's losses (Wang & Ren 2025, sec. 3.3-3.4), measured in one run, as ratios:

* the compound mask loss BCE + Dice + 0.1 Lovasz-Softmax (eqs. 13-18; forward + backward) on
  512 ROIs of 28x28, against BCE alone and against the same loss computed ROI by ROI in a Python
  loop, as the reference Lovasz implementation's ``per_image=True`` mode does (goal: >= 10x faster
  than the loop), and against the milder mix of batched BCE + Dice with only the Lovasz term in
  that per-image loop; the Lovasz-Softmax alone against the reference loop (the reference's
  code); the softmax form against the Lovasz hinge (goal: about as fast); and the library's
  fused one-pass loss against the plain sum of its per-term functions through autograd (the
  reference kept in tests/reference_losses.py);
* its share of one whole training iteration of the final model (BNSA res3+res4, Focal-SIoU,
  BCE + Dice + 0.1 Lovasz) at 640x512 (goal: <= 3%);
* the focal_siou box loss against smooth L1 in ``IRFastRCNNOutputLayers.box_reg_loss``
  (decoding included) on 1024 sampled proposals, a quarter foreground.

    python3 benchmarks/bench_losses.py [--rois 512] [--images 2] [--repeat 7] [--threads 1]

Timings are interleaved (each repeat runs every variant once, after one warm-up run each, all in
the same process and thread count) and the median is printed; one thread by default, so that a
shared machine perturbs the variants alike.
"""

import argparse
import sys

import numpy as np
import torch
import torch.nn.functional as F
from _common import REPO_ROOT, ir_cfg, time_call
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

import ir_d2  # noqa: F401
from ir_d2.layers import dice_loss, ir_mask_loss, lovasz_hinge_loss, lovasz_softmax_loss
from ir_d2.modeling import IRFastRCNNOutputLayers
from ir_d2.utils.testing import random_instance_batch

FINAL = (
    "IR-InstanceSegmentation/"
    "mask_rcnn-focal_siou-bce_dice_lovasz_R_50_BNSA-C3C4_FPN_100e_ircoco.yaml"
)


# ----------------------------------------------------------------------------- reference loop
# The binary part of Berman et al.'s reference implementation (github.com/bermanmaxim/LovaszSoftmax,
# pytorch/lovasz_losses.py: lovasz_grad, lovasz_hinge_flat, flatten_binary_scores without
# ignore, mean), as it runs on current torch (``Variable`` is a no-op).
def _ref_lovasz_grad(gt_sorted):
    p = len(gt_sorted)
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.float().cumsum(0)
    union = gts + (1 - gt_sorted).float().cumsum(0)
    jaccard = 1.0 - intersection / union
    if p > 1:  # cover 1-pixel case
        jaccard[1:p] = jaccard[1:p] - jaccard[0:-1]
    return jaccard


def _ref_lovasz_hinge_flat(logits, labels):
    if len(labels) == 0:
        return logits.sum() * 0.0
    signs = 2.0 * labels.float() - 1.0
    errors = 1.0 - logits * signs
    errors_sorted, perm = torch.sort(errors, dim=0, descending=True)
    gt_sorted = labels[perm.data]
    grad = _ref_lovasz_grad(gt_sorted)
    return torch.dot(F.relu(errors_sorted), grad)


def _ref_lovasz_softmax_flat(probas, labels, classes="present"):
    """The reference's ``lovasz_softmax_flat`` (probas (P, C), labels (P,))."""
    losses = []
    for c in range(probas.size(1)):
        fg = (labels == c).float()
        if classes == "present" and fg.sum() == 0:
            continue
        errors = (fg - probas[:, c]).abs()
        errors_sorted, perm = torch.sort(errors, 0, descending=True)
        losses.append(torch.dot(errors_sorted, _ref_lovasz_grad(fg[perm.data])))
    return _ref_mean(losses)


def _ref_binary_probas(logits):
    """The (P, 2) [background, foreground] probabilities of one ROI's logits."""
    p = logits.reshape(-1).sigmoid()
    return torch.stack([1 - p, p], dim=1)


def _ref_flatten_binary_scores(scores, labels):
    return scores.view(-1), labels.view(-1)


def _ref_mean(values):
    values = iter(values)
    n, acc = 1, next(values)
    for n, v in enumerate(values, 2):  # noqa: B007 (the reference counts this way)
        acc += v
    return acc if n == 1 else acc / n


def _ref_lovasz_flat(f, y, kind):
    if kind == "hinge":
        return _ref_lovasz_hinge_flat(f.reshape(-1), y.reshape(-1))
    return _ref_lovasz_softmax_flat(_ref_binary_probas(f), y.reshape(-1).long())


def lovasz_loop(logits, targets, kind="softmax"):
    """The reference's per-image mode (``lovasz_softmax(probas, labels, per_image=True)`` with the
    binary [1 - p, p] probabilities, or ``lovasz_hinge(logits, labels, per_image=True)``): one flat
    loss per ROI, averaged by its ``mean``, which accumulates in Python."""
    return _ref_mean(_ref_lovasz_flat(f, y, kind) for f, y in zip(logits, targets))


def compound_loop(logits, targets, smooth=1.0, kind="softmax"):
    """BCE + Dice + 0.1 Lovasz computed ROI by ROI in a Python loop (per-image mode), averaged as
    the reference's ``mean``; the mean of the per-ROI BCEs equals the BCE over all pixels, as every
    ROI has the same size."""

    def per_roi(f, y):
        f, y = f.reshape(-1), y.reshape(-1)
        p = f.sigmoid()
        dice = 1 - (2 * (p * y).sum() + smooth) / (p.sum() + y.sum() + smooth)
        bce = F.binary_cross_entropy_with_logits(f, y)
        return bce + dice + 0.1 * _ref_lovasz_flat(f, y, kind)

    return _ref_mean(per_roi(f, y) for f, y in zip(logits, targets))


def compound_batched_loop(logits, targets, kind="softmax"):
    """The milder baseline: BCE and Dice batched over ROIs, only the Lovasz term in the
    reference's per-image loop."""
    bce = F.binary_cross_entropy_with_logits(logits, targets)
    return bce + dice_loss(logits, targets) + 0.1 * lovasz_loop(logits, targets, kind)


def _plain_mask_loss():
    """``ir_mask_loss_plain`` of tests/reference_losses.py: eq. 18 as the sum of the per-term
    functions, the path that the library's fused pass replaced."""
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from reference_losses import ir_mask_loss_plain

    return ir_mask_loss_plain


# ----------------------------------------------------------------------------- inputs
def _masks(n, side, device, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side]
    cy, cx, r = rng.uniform(6, side - 6, (3, n, 1, 1))
    masks = (yy - cy) ** 2 + (xx - cx) ** 2 < (r + 2) ** 2
    return torch.from_numpy(masks).float().to(device)


def _batch(n, h, w, device, seed=0):
    return random_instance_batch(
        n, h, w, boxes_per_image=4, min_side=20, max_side=80, seed=seed, device=device
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rois", type=int, default=512)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch threads; 0 keeps torch's")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = ir_cfg(FINAL)
    device = torch.device(cfg.MODEL.DEVICE)

    # --- mask losses on R ROIs of 28x28
    logits0 = torch.randn(args.rois, 28, 28, device=device) * 3
    targets = _masks(args.rois, 28, device)

    def run(fn):
        logits = logits0.clone().requires_grad_()
        fn(logits).backward()

    plain = _plain_mask_loss()
    mask_fns = {
        "BCE alone": lambda x: F.binary_cross_entropy_with_logits(x, targets),
        "BCE+Dice+0.1 Lovasz (ours)": lambda x: ir_mask_loss(x, targets)[0],
        "same, per-ROI Python loop": lambda x: compound_loop(x, targets),
        "same, only Lovasz per ROI": lambda x: compound_batched_loop(x, targets),
        "Lovasz alone (ours)": lambda x: lovasz_softmax_loss(x, targets),
        "Lovasz alone, per-ROI loop": lambda x: lovasz_loop(x, targets),
        "hinge: BCE+Dice+0.1 Lovasz": lambda x: ir_mask_loss(x, targets, lovasz="hinge")[0],
        "hinge: Lovasz alone": lambda x: lovasz_hinge_loss(x, targets),
        "same, sum of per-term losses": lambda x: plain(x, targets)[0],
    }
    ours = ir_mask_loss(logits0, targets)[0]
    for a, b in [
        (ours, plain(logits0, targets)[0]),
        (ours, compound_loop(logits0, targets)),
        (ours, compound_batched_loop(logits0, targets)),
        (lovasz_softmax_loss(logits0, targets), lovasz_loop(logits0, targets)),
        (lovasz_hinge_loss(logits0, targets), lovasz_loop(logits0, targets, "hinge")),
    ]:
        assert abs(a.item() - b.item()) < 1e-4 * max(1.0, abs(b.item())), (a, b)
    mask_t = _interleaved({k: (lambda f=f: run(f)) for k, f in mask_fns.items()}, args.repeat)

    # --- box losses in the box predictor
    proposals, gt, classes, deltas0, preds = _box_inputs(cfg, device)

    def box_step(pred):
        deltas = deltas0.clone().requires_grad_()
        pred.box_reg_loss(proposals, gt, deltas, classes).backward()

    box_t = _interleaved({k: (lambda p=p: box_step(p)) for k, p in preds.items()}, args.repeat)

    # --- one training iteration of the final model
    model = build_model(cfg).train()
    batch = _batch(args.images, args.height, args.width, device)

    def train_step():
        model.zero_grad(set_to_none=True)
        with EventStorage():
            sum(model(batch).values()).backward()

    iter_t = time_call(train_step, warmup=1, repeat=max(2, args.repeat // 2))

    bce, ours, loop, batched_loop, lov, lov_loop, hinge_all, hinge, summed = mask_t.values()
    print(f"device: {device}, torch threads {torch.get_num_threads()}, median of {args.repeat}")
    print(f"mask loss, {args.rois} ROIs of 28x28, forward + backward:")
    for name, t in mask_t.items():
        print(f"  {name:<30} {t * 1e3:8.2f} ms")
    print(f"  compound / BCE alone:          {ours / bce:8.2f}x")
    print(f"  per-ROI loop / compound:       {loop / ours:8.2f}x faster (goal >= 10)")
    print(f"  only-Lovasz-loop / compound:   {batched_loop / ours:8.2f}x faster")
    print(f"  Lovasz per-ROI loop / ours:    {lov_loop / lov:8.2f}x faster")
    print(f"  softmax / hinge, compound:     {ours / hinge_all:8.2f}x (goal: about 1)")
    print(f"  softmax / hinge, Lovasz alone: {lov / hinge:8.2f}x")
    print(f"  per-term sum / compound:       {summed / ours:8.2f}x slower")
    print(f"training iteration, {args.images} images {args.width}x{args.height}: {iter_t:.2f} s")
    print(f"  compound mask loss ({args.rois} ROIs) share: {ours / iter_t * 100:.2f}% (goal <= 3%)")
    print(f"box loss in box_reg_loss, {len(proposals)} proposals, forward + backward:")
    for name, t in box_t.items():
        print(f"  {name:<30} {t * 1e3:8.2f} ms")
    print(f"  focal_siou / smooth_l1:        {box_t['focal_siou'] / box_t['smooth_l1']:8.2f}x")


def _interleaved(fns, repeat):
    """Median time of each of ``fns`` (name -> callable), run round-robin."""
    times = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(repeat):
        for name, fn in fns.items():
            times[name].append(time_call(fn, warmup=0, repeat=1))
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def _box_inputs(cfg, device, n=1024, num_classes=4):
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(n, 2, generator=g) * 500
    gt = torch.cat([xy, xy + 10 + torch.rand(n, 2, generator=g) * 100], dim=1)
    proposals = gt + torch.randn(n, 4, generator=g) * 4
    proposals[:, 2:] = torch.max(proposals[:, 2:], proposals[:, :2] + 1)
    classes = torch.randint(0, num_classes, (n,), generator=g)
    classes[torch.rand(n, generator=g) < 0.75] = num_classes
    deltas = torch.randn(n, 4 * num_classes, generator=g) * 0.1
    preds = {}
    for loss_type in ("smooth_l1", "focal_siou"):
        c = cfg.clone()
        c.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE = loss_type
        preds[loss_type] = IRFastRCNNOutputLayers(c, ShapeSpec(channels=1024)).to(device)
    to = [t.to(device) for t in (proposals, gt, classes, deltas)]
    return (*to, preds)


if __name__ == "__main__":
    main()
