"""
Export of a small-target net (the network of an :class:`ir_d2.modeling.IRSTDSegmentor`) to ONNX
(dynamic height and width) and TorchScript: the exported graph maps the normalised, padded frame
to the target-probability map (the sigmoid of the net's final output).
"""

import torch
from torch import nn

__all__ = ["IRSTDExportModule", "export_irstd_onnx", "export_irstd_torchscript", "ONNX_OPSET"]

#: ONNX opset of the exported small-target nets
ONNX_OPSET = 18


class IRSTDExportModule(nn.Module):
    """
    The exportable part of an ``IRSTDSegmentor``: its net, plus the sigmoid. (N, C, H, W)
    normalised frames (H, W multiples of the net's size divisibility) -> (N, 1, H, W)
    probabilities; with deep supervision only the final output is kept.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        if isinstance(out, (list, tuple)):
            out = out[-1]
        return torch.sigmoid(out)


def export_irstd_onnx(module: IRSTDExportModule, sample: torch.Tensor, path: str) -> None:
    """
    ``module`` to ONNX at ``path`` (one file, weights inside), captured by ``torch.export`` with
    height and width dynamic (any size from 16 to 8192 that the net takes, i.e. a multiple of its
    size divisibility) and the batch static at the sample's. Input ``image``, output ``prob``.
    """
    from torch.export import Dim

    dims = {"x": {2: Dim("height", min=16, max=8192), 3: Dim("width", min=16, max=8192)}}
    torch.onnx.export(
        module.eval(),
        (sample,),
        path,
        input_names=["image"],
        output_names=["prob"],
        dynamo=True,
        dynamic_shapes=dims,
        external_data=False,
        opset_version=ONNX_OPSET,
        verbose=False,
    )


def export_irstd_torchscript(module: IRSTDExportModule, sample: torch.Tensor, path: str) -> None:
    """``module`` traced (``torch.jit.trace``) on ``sample`` and saved at ``path``."""
    with torch.no_grad():
        traced = torch.jit.trace(module.eval(), (sample,), check_trace=False)
    traced.save(path)
