"""
Export of a detectron2 ``GeneralizedRCNN`` (the BNSA Mask R-CNN with the IR heads among them)
through detectron2's ``TracingAdapter``, as detectron2's ``tools/deploy/export_model.py``
(``--export-method tracing``) does: the traced graph runs ``model.inference(...,
do_postprocess=False)`` on one (3, H, W) image in the model's input format and size (after the
test-time resize) and returns flat tensors (boxes, classes, mask probabilities of the ROI grid,
scores), which :func:`rcnn_outputs` turns back into ``Instances`` at the original size.
"""

from typing import Callable, Dict, List

import torch
from detectron2.export import TracingAdapter
from detectron2.modeling import GeneralizedRCNN
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Instances

__all__ = [
    "rcnn_tracing_adapter",
    "rcnn_schema",
    "rcnn_output_names",
    "export_rcnn_torchscript",
    "export_rcnn_onnx",
    "rcnn_outputs",
]


def _inference(model: GeneralizedRCNN, inputs: List[Dict]) -> List[Dict]:
    return [{"instances": model.inference(inputs, do_postprocess=False)[0]}]


def rcnn_tracing_adapter(model: GeneralizedRCNN, image: torch.Tensor) -> TracingAdapter:
    """detectron2's ``TracingAdapter`` of ``model`` on one (3, H, W) image."""
    if not isinstance(model, GeneralizedRCNN):
        raise TypeError(f"{type(model).__name__} is not a GeneralizedRCNN")
    return TracingAdapter(model.eval(), [{"image": image}], _inference)


def rcnn_schema(model: GeneralizedRCNN, image: torch.Tensor) -> Callable:
    """The ``outputs_schema`` of ``model``'s traced graph (what :func:`rcnn_outputs` needs to
    read a loaded ``model.ts``'s flat outputs): the adapter run once on ``image``."""
    adapter = rcnn_tracing_adapter(model, image)
    with torch.no_grad():
        adapter(*adapter.flattened_inputs)
    return adapter.outputs_schema


def rcnn_output_names(schema) -> List[str]:
    """The names of the flat outputs, in order (the Instances fields sorted, then the image
    size), e.g. ``["pred_boxes", "pred_classes", "pred_masks", "scores", "image_size"]``."""
    instances = schema.schemas[0].schemas[0]  # [{"instances": Instances}]
    return [*instances.keys, "image_size"]


def export_rcnn_torchscript(model: GeneralizedRCNN, image: torch.Tensor, path: str) -> Callable:
    """Trace ``model`` on ``image``, save the TorchScript module at ``path`` and return the
    adapter's ``outputs_schema`` (flat tensors -> ``[{"instances": Instances}]``)."""
    adapter = rcnn_tracing_adapter(model, image)
    with torch.no_grad():
        traced = torch.jit.trace(adapter, adapter.flattened_inputs, check_trace=False)
    traced.save(path)
    return adapter.outputs_schema


def export_rcnn_onnx(model: GeneralizedRCNN, image: torch.Tensor, path: str, opset: int = 16):
    """The same traced graph to ONNX with torch's TorchScript-based exporter (the path of
    detectron2's ``export_model.py --format onnx``), the image's height and width dynamic (input
    ``image``); returns the ``outputs_schema``. Runs on ONNX Runtime; the check of
    ``export_model`` compares it with PyTorch at three sizes."""
    adapter = rcnn_tracing_adapter(model, image)
    with torch.no_grad():
        torch.onnx.export(
            adapter,
            adapter.flattened_inputs,
            path,
            dynamo=False,
            opset_version=opset,
            do_constant_folding=True,
            input_names=["image"],
            dynamic_axes={"image": {1: "height", 2: "width"}},
        )
    return adapter.outputs_schema


def rcnn_outputs(schema: Callable, flat, height: int, width: int) -> Instances:
    """The flat outputs of the exported graph as ``Instances`` at the original ``height`` x
    ``width`` (boxes rescaled, ROI masks pasted), as ``GeneralizedRCNN`` returns them."""
    instances = schema(flat)[0]["instances"]
    return detector_postprocess(instances, height, width)
