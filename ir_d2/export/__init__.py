"""
Export of ir_d2 models for deployment: small-target nets to ONNX and TorchScript (:mod:`.irstd`),
GeneralizedRCNN models through detectron2's TracingAdapter (:mod:`.rcnn`), and the runtime that
runs an exported small-target net without detectron2 (:mod:`.runtime`).
"""

from .irstd import IRSTDExportModule, export_irstd_onnx, export_irstd_torchscript
from .rcnn import (
    export_rcnn_onnx,
    export_rcnn_torchscript,
    rcnn_output_names,
    rcnn_outputs,
    rcnn_schema,
    rcnn_tracing_adapter,
)
from .runtime import EXPORT_METADATA, FORMAT_SUFFIX, ExportedNet, read_export_metadata

__all__ = [
    "EXPORT_METADATA",
    "ExportedNet",
    "FORMAT_SUFFIX",
    "IRSTDExportModule",
    "export_irstd_onnx",
    "export_irstd_torchscript",
    "export_rcnn_onnx",
    "export_rcnn_torchscript",
    "rcnn_output_names",
    "rcnn_outputs",
    "rcnn_schema",
    "rcnn_tracing_adapter",
    "read_export_metadata",
]
