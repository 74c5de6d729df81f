"""
Export a trained ir_d2 model to one file that runs without detectron2, checked against the
PyTorch model before it is kept.

    python -m ir_d2.tools.export_model --config-file CFG --format onnx|torchscript --output DIR
        [--sample-image FILE] [--overwrite] [KEY VALUE ...]   (MODEL.WEIGHTS model_final.pth)

- small-target nets (``IRSTDSegmentor``: U-Net, SGEM U-Net, AFF U-Net, nested U-Net): ONNX
  (dynamic height and width) or TorchScript, ``DIR/model.onnx`` / ``DIR/model.ts``: a normalised,
  padded (1, C, H, W) float32 frame -> its (1, 1, H, W) target probability. Run it with
  ``ir_d2.engine.ExportedPredictor`` (or the demo with ``MODEL.WEIGHTS DIR/model.onnx``), or with
  ONNX Runtime alone, feeding it as ``DIR/ir_d2_export.json`` records.
- ``GeneralizedRCNN`` models (the BNSA Mask R-CNN with the IR heads): the graph traced through
  detectron2's ``TracingAdapter``, saved as TorchScript (``model.ts``; it needs torch and
  torchvision, not detectron2) or converted to ONNX by torch's TorchScript-based exporter with
  dynamic height and width (``model.onnx``, opset 16, runs on ONNX Runtime), as detectron2's own
  ``export_model.py --export-method tracing`` does. A failure is refused with torch's reason.

Before a file is kept, the exported model and the PyTorch model run on the sample frame
(``--sample-image``, else a synthetic IR frame) at three sizes: probability maps must agree within
1e-4, detections must have the same classes, boxes within 1e-3 px and masks with IoU > 0.99.
Otherwise nothing is written. ``DIR`` is created if needed; a file there that this tool did not
write is never replaced, and its own only with ``--overwrite`` (``ir_d2_export.json``, written
last, lists them; :class:`ir_d2.utils.fileio.OutputFolder`).
"""

import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import List, Tuple

import cv2
import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN, build_model
from detectron2.utils.logger import setup_logger

import ir_d2  # noqa: F401  (registration)
from ir_d2.data.io import read_ir_image
from ir_d2.engine.defaults import ensure_weights, setup_cfg
from ir_d2.engine.predictor import IRFrameInput
from ir_d2.export import (
    EXPORT_METADATA,
    FORMAT_SUFFIX,
    ExportedNet,
    IRSTDExportModule,
    export_irstd_onnx,
    export_irstd_torchscript,
    export_rcnn_onnx,
    export_rcnn_torchscript,
    rcnn_output_names,
    rcnn_outputs,
)
from ir_d2.modeling import IRSTDSegmentor
from ir_d2.modeling.meta_arch import irstd_input
from ir_d2.utils.cli import add_opts_arguments, collect_opts, one_line_errors, tool_parser
from ir_d2.utils.fileio import OutputFolder

__all__ = ["main", "export"]

TOOL = "ir_d2.tools.export_model"
logger = logging.getLogger("ir_d2.export")

#: probability maps of the exported net and of PyTorch agree within this
PROB_TOLERANCE = 1e-4


class ExportCheckError(ValueError):
    """The exported model does not give the PyTorch model's outputs."""


def get_parser():
    parser = tool_parser("ir_d2.tools.export_model", __doc__)
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--format", required=True, choices=sorted(FORMAT_SUFFIX))
    parser.add_argument("--output", required=True, metavar="DIR")
    parser.add_argument("--sample-image", metavar="FILE", help="frame the export is checked on")
    parser.add_argument("--overwrite", action="store_true", help="replace this tool's own export")
    add_opts_arguments(parser)
    return parser


def _older_export(out: Path) -> List[str]:
    """An older version's export in ``out`` (its ``ir_d2_export.json`` names this tool but lists
    no files): that record and the model file it names (``"file"``; both model files for a record
    without one). A model file of the other format there may be the user's."""
    try:
        meta = json.loads((out / EXPORT_METADATA).read_text())
    except (OSError, ValueError):
        return []
    if not (isinstance(meta, dict) and meta.get("tool") == TOOL):
        return []
    models = [f"model{suffix}" for suffix in FORMAT_SUFFIX.values()]
    return [EXPORT_METADATA, *([meta["file"]] if meta.get("file") in models else models)]


def output_folder(out, model_name: str, overwrite: bool = False) -> OutputFolder:
    """``out`` as this tool's :class:`OutputFolder` (its manifest: ``ir_d2_export.json``, the
    export's metadata), checked: files it did not write are refused, its own without
    ``overwrite``."""
    folder = OutputFolder(
        out,
        TOOL,
        manifest=EXPORT_METADATA,
        recognise=_older_export,
        overwrite=overwrite,
        who="this tool",
    )
    folder.check([model_name, EXPORT_METADATA])
    return folder


def _sample_frames(path, semantic: bool) -> List[np.ndarray]:
    """The sample frame (or a synthetic one) at three sizes: as it is, and two resizes with
    other aspect ratios (sizes that are not multiples of the net's stride)."""
    if path:
        frame = read_ir_image(path, normalize="minmax")
    else:
        from ir_d2.data.ir_datasets.synthetic import make_synthetic_frame

        h, w = (256, 256) if semantic else (512, 640)
        frame, _, _ = make_synthetic_frame(np.random.default_rng(0), h, w, empty_prob=0.0)
    h, w = frame.shape[:2]
    sizes = [(h, w), (max(16, int(h * 0.75) + 3), max(16, int(w * 1.2) + 5))]
    sizes.append((max(16, int(h * 1.25) + 1), max(16, int(w * 0.8) + 7)))
    return [frame if s == (h, w) else cv2.resize(frame, s[::-1]) for s in sizes]


def _model_inputs(cfg, frames) -> List[dict]:
    """Each frame as the predictors give it to the model (:class:`IRFrameInput`)."""
    prep = IRFrameInput(cfg)
    return [prep.model_input(prep.prepare(frame)[0]) for frame in frames]


def _irstd_inputs(model: IRSTDSegmentor, inputs) -> List[Tuple[torch.Tensor, tuple]]:
    """The net's padded input tensor for each model input, as the segmentor builds it."""
    out = []
    for x in inputs:
        batch = irstd_input(
            [x["image"]], model.pixel_mean, model.pixel_std, model.size_divisibility
        )
        out.append((batch.tensor, tuple(batch.tensor.shape[-2:])))
    return out


def _check_irstd(module, exported_file, inputs) -> List[dict]:
    net = ExportedNet(exported_file)
    checks = []
    for x, size in inputs:
        with torch.no_grad():
            expected = module(x).numpy()
        got = net(x)
        diff = float(np.abs(expected - got).max())
        checks.append({"size": list(size), "max_abs_diff": diff})
        if not diff <= PROB_TOLERANCE:
            raise ExportCheckError(
                f"the exported model differs from PyTorch by {diff:.2e} (> {PROB_TOLERANCE}) on a "
                f"{size[0]}x{size[1]} input; nothing was written"
            )
    return checks


def _mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    inter = (a & b).sum().item()
    union = (a | b).sum().item()
    return 1.0 if union == 0 else inter / union


def _check_rcnn(model, schema, exported_file, inputs) -> List[dict]:
    model.eval()  # torch's TorchScript-based ONNX exporter may leave it in training mode
    net = ExportedNet(exported_file)
    checks = []
    for x in inputs:
        h, w = x["height"], x["width"]
        with torch.no_grad():
            expected = model([x])[0]["instances"]
        flat = tuple(torch.from_numpy(o) for o in net.outputs(x["image"]))
        got = rcnn_outputs(schema, flat, h, w)
        check = {"size": [h, w], "instances": len(expected)}
        if len(got) != len(expected) or not torch.equal(got.pred_classes, expected.pred_classes):
            raise ExportCheckError(
                f"the exported model found {len(got)} instances and PyTorch {len(expected)} (or "
                f"other classes) on a {h}x{w} frame; nothing was written"
            )
        box_diff = (
            (got.pred_boxes.tensor - expected.pred_boxes.tensor).abs().max().item()
            if len(got)
            else 0.0
        )
        ious = (
            [_mask_iou(a, b) for a, b in zip(got.pred_masks, expected.pred_masks)]
            if got.has("pred_masks")
            else []
        )
        check.update(max_box_diff=box_diff, min_mask_iou=min(ious) if ious else 1.0)
        if box_diff > 1e-3 or (ious and min(ious) <= 0.99):
            raise ExportCheckError(
                f"the exported model's boxes differ by {box_diff:.2e} px (masks: IoU "
                f"{min(ious) if ious else 1.0:.4f}) from PyTorch's on a {h}x{w} frame; nothing was "
                "written"
            )
        checks.append(check)
    return checks


@contextlib.contextmanager
def _export_errors(fmt: str, what: str, alternative: str = ""):
    """A failure inside torch's exporters (many exception types, long messages) as one line."""
    try:
        yield
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0]
        raise ValueError(
            f"{fmt} export of {what} failed with torch {torch.__version__}: "
            f"{type(e).__name__}: {first}"
            + (f"; {alternative} works for this model" if alternative and fmt == "onnx" else "")
        ) from None


def export(cfg, fmt: str, out: Path, sample_image=None, overwrite: bool = False) -> dict:
    """Export the model of ``cfg`` (weights from ``MODEL.WEIGHTS``) to ``out``; returns the
    metadata written beside it."""
    model_name = "model" + FORMAT_SUFFIX[fmt]
    folder = output_folder(out, model_name, overwrite)
    arch = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)
    if not issubclass(arch, (IRSTDSegmentor, GeneralizedRCNN)):
        raise ValueError(
            f"MODEL.META_ARCHITECTURE {cfg.MODEL.META_ARCHITECTURE!r} cannot be exported: "
            "export_model handles IRSTDSegmentor and GeneralizedRCNN models"
        )
    semantic = issubclass(arch, IRSTDSegmentor)
    model = build_model(cfg).eval()
    DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    if not cfg.MODEL.WEIGHTS:
        logger.warning("MODEL.WEIGHTS is empty: exporting randomly initialised weights")
    inputs = _model_inputs(cfg, _sample_frames(sample_image, semantic))
    start = time.perf_counter()
    meta = {
        "tool": TOOL,
        "format": fmt,
        "file": model_name,
        "config": cfg.dump(),
        "weights": cfg.MODEL.WEIGHTS,
        "meta_architecture": cfg.MODEL.META_ARCHITECTURE,
        "torch": torch.__version__,
        "input_format": cfg.INPUT.FORMAT,
    }
    with folder.write(model_name, mode=None) as tmp:
        tmp = str(tmp)
        if semantic:
            module = IRSTDExportModule(model.net).eval()
            net_inputs = _irstd_inputs(model, inputs)
            exporter = export_irstd_onnx if fmt == "onnx" else export_irstd_torchscript
            with _export_errors(fmt, cfg.MODEL.IRSTD.NET):
                exporter(module, net_inputs[0][0], tmp)
            meta["checks"] = _check_irstd(module, tmp, net_inputs)
            meta.update(
                net=cfg.MODEL.IRSTD.NET,
                pixel_mean=[float(v) for v in model.pixel_mean.flatten()],
                pixel_std=[float(v) for v in model.pixel_std.flatten()],
                size_divisibility=int(model.size_divisibility),
                in_channels=int(model.in_channels),
                threshold=float(cfg.MODEL.IRSTD.THRESHOLD),
                input="image: (1, C, H, W) float32, (frame in input_format - pixel_mean) / "
                "pixel_std, zero-padded at the bottom and right to multiples of size_divisibility",
                output="prob: (1, 1, H, W) float32 target probability (crop the padding)",
            )
        else:
            exporter = export_rcnn_onnx if fmt == "onnx" else export_rcnn_torchscript
            with _export_errors(fmt, cfg.MODEL.META_ARCHITECTURE, "--format torchscript"):
                schema = exporter(model, inputs[0]["image"], tmp)
            meta["checks"] = _check_rcnn(model, schema, tmp, inputs)
            meta["outputs"] = rcnn_output_names(schema)
            meta.update(
                input="image: (3, H, W) float32 in INPUT.FORMAT after the test-time resize "
                "(INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST)",
                output="the tensors named by 'outputs': boxes (N, 4) at the input's size, "
                "classes, ROI mask probabilities (N, 1, M, M), scores, the input's size; "
                "ir_d2.export.rcnn_outputs (detectron2's detector_postprocess) pastes the masks "
                "into the frame",
                runtime="torch.jit.load after import torchvision (ROIAlign, NMS)",
            )
        meta["seconds"] = round(time.perf_counter() - start, 1)
        meta["megabytes"] = round(os.path.getsize(tmp) / 2**20, 2)
        folder.info = meta  # ir_d2_export.json, written once the model file is in place
    folder.finish()
    return meta


def main(argv=None) -> dict:
    args = get_parser().parse_args(argv)
    setup_logger(name="ir_d2")
    with one_line_errors("export_model", (ValueError, OSError, KeyError, ImportError)):
        cfg = setup_cfg(args.config_file, collect_opts(args), freeze=False)
        cfg.MODEL.DEVICE = "cpu"  # exported files are traced on the CPU and run anywhere
        ensure_weights(cfg.MODEL.WEIGHTS)
        cfg.freeze()
        meta = export(cfg, args.format, Path(args.output), args.sample_image, args.overwrite)
    sizes = ", ".join(f"{c['size'][0]}x{c['size'][1]}" for c in meta["checks"])
    logger.info(
        f"exported {meta['meta_architecture']} to {Path(args.output) / meta['file']} "
        f"({meta['megabytes']} MB, {meta['seconds']} s); checked against PyTorch at {sizes}"
    )
    return meta


if __name__ == "__main__":
    main()
