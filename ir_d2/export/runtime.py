"""
Running an exported small-target net without detectron2 (pure: numpy, and onnxruntime or torch):
:class:`ExportedNet` loads ``model.onnx`` (ONNX Runtime) or ``model.ts`` (TorchScript) and maps a
normalised, padded (1, C, H, W) float32 frame to its (1, 1, H, W) target-probability map.

The input, as :func:`ir_d2.modeling.meta_arch.irstd_input` makes it (and as the export's
``ir_d2_export.json`` records its constants): the 8-bit frame in ``input_format`` (BGR; gray
replicated to 3 channels), as float, minus ``pixel_mean``, divided by ``pixel_std`` (per channel;
a 1-channel net takes the channel mean first), padded with zeros at the bottom and right to a
multiple of ``size_divisibility``. Crop the output's padding off to get the frame's map.
"""

import json
import os
from typing import Optional

import numpy as np

__all__ = ["ExportedNet", "EXPORT_METADATA", "read_export_metadata", "FORMAT_SUFFIX"]

#: the file next to an exported model that records how to feed it
EXPORT_METADATA = "ir_d2_export.json"
#: file suffix of each export format
FORMAT_SUFFIX = {"onnx": ".onnx", "torchscript": ".ts"}


def read_export_metadata(model_file: str) -> Optional[dict]:
    """The ``ir_d2_export.json`` beside ``model_file``, or None when there is none."""
    path = os.path.join(os.path.dirname(os.path.abspath(model_file)), EXPORT_METADATA)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


class ExportedNet:
    """
    An exported small-target net: ``net(x)`` with ``x`` a (1, C, H, W) float32 array (or tensor)
    returns the (1, 1, H, W) float32 probability array. ``net.outputs(x)`` returns every output
    (an exported detector's flat tensors, for :func:`ir_d2.export.rcnn_outputs`).

    Args:
        model_file: ``*.onnx`` (run by ONNX Runtime, ``providers`` default CPU) or ``*.ts``
            (TorchScript, run by torch on the CPU).
        threads: intra-op threads of ONNX Runtime / torch (0: their default).
    """

    def __init__(self, model_file: str, threads: int = 0, providers=None):
        if not os.path.isfile(model_file):
            raise FileNotFoundError(f"exported model {model_file} does not exist")
        self.model_file = model_file
        if model_file.endswith(FORMAT_SUFFIX["onnx"]):
            try:
                import onnxruntime as ort
            except ImportError as e:
                raise ImportError(
                    f"running {model_file} needs onnxruntime (pip install onnxruntime): {e}"
                ) from None
            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
            self.session = ort.InferenceSession(
                model_file, options, providers=providers or ["CPUExecutionProvider"]
            )
            self.input_name = self.session.get_inputs()[0].name
            self.format = "onnx"
        elif model_file.endswith(FORMAT_SUFFIX["torchscript"]):
            import torch

            if threads:
                torch.set_num_threads(threads)
            self.module = torch.jit.load(model_file, map_location="cpu").eval()
            self.format = "torchscript"
        else:
            raise ValueError(
                f"{model_file}: an exported model ends with .onnx (ONNX Runtime) or .ts "
                "(TorchScript)"
            )

    def outputs(self, x) -> tuple:
        """Every output of the graph for the float32 input ``x`` (array or tensor), as arrays."""
        if hasattr(x, "detach"):
            x = x.detach().cpu().numpy()
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.format == "onnx":
            return tuple(self.session.run(None, {self.input_name: x}))
        import torch

        with torch.no_grad():
            out = self.module(torch.from_numpy(x))
        return tuple(o.numpy() for o in (out if isinstance(out, (tuple, list)) else [out]))

    def __call__(self, x) -> np.ndarray:
        """The first output (a small-target net's probability map)."""
        return self.outputs(x)[0]
