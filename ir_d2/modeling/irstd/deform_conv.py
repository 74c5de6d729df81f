"""
The modulated deformable convolution of ISNet's TOAA block (:mod:`.isnet`), pure torch:
torchvision's kernel, or plain sampling ops that export to ONNX.

Paper: Zhu, Hu, Lin & Dai, "Deformable ConvNets v2: More Deformable, Better Results", CVPR 2019,
eq. 3 (DCNv2), as ISNet's authors' code uses it (github.com/RuiZhang97/ISNet: ``model/DCNv2``).
"""

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DEFORM_IMPLS", "ModulatedDeformConv2d", "modulated_deform_conv2d_sampling"]

#: How :class:`ModulatedDeformConv2d` computes: "torchvision" (``torchvision.ops.
#: deform_conv2d``), "sampling" (:func:`modulated_deform_conv2d_sampling`, exportable) or "auto"
#: (torchvision, and sampling while exporting or tracing).
DEFORM_IMPLS = ("auto", "torchvision", "sampling")


def _is_exporting() -> bool:
    return (
        torch.compiler.is_exporting()
        or torch.onnx.is_in_onnx_export()
        or torch.jit.is_tracing()
        or torch.jit.is_scripting()
    )


def modulated_deform_conv2d_sampling(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    padding: Sequence[int],
) -> torch.Tensor:
    """
    Modulated deformable convolution (DCNv2; Zhu et al., "Deformable ConvNets v2", CVPR 2019,
    eq. 3) of stride 1, dilation 1, one group and one offset group, in plain torch ops (bilinear
    ``grid_sample`` and a 1x1 convolution), so that it exports to ONNX opset 18, which has no
    ``DeformConv``::

        y(p) = b + sum_k w_k * m_k(p) * x(p + p_k + dp_k(p))

    ``x(.)`` is bilinear with zeros outside the frame, as ``torchvision.ops.deform_conv2d``
    (same values up to float rounding). ``offset``: (N, 2K, H', W'), (dy, dx) per tap, taps in
    row-major order; ``mask``: (N, K, H', W') (after its sigmoid); ``weight``: (O, C, kh, kw).
    """
    h, w = x.shape[-2:]
    kh, kw = (int(k) for k in weight.shape[-2:])  # python ints under jit tracing too
    ph, pw = padding
    h_out, w_out = offset.shape[-2:]
    rows = torch.arange(h_out, device=x.device, dtype=x.dtype).view(1, -1, 1)
    cols = torch.arange(w_out, device=x.device, dtype=x.dtype).view(1, 1, -1)
    taps = []
    for k in range(kh * kw):
        i, j = divmod(k, kw)
        py = rows + (i - ph) + offset[:, 2 * k]
        px = cols + (j - pw) + offset[:, 2 * k + 1]
        # pixel index -> grid_sample's [-1, 1] with align_corners=False: (2 i + 1) / size - 1
        grid = torch.stack([(2 * px + 1) / w - 1, (2 * py + 1) / h - 1], dim=-1)
        sampled = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        taps.append(sampled * mask[:, k : k + 1])
    # one 1x1 conv over the taps stacked tap-major: (N, K C, H', W') by (O, K C)
    w_taps = weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1, 1, 1)
    return F.conv2d(torch.cat(taps, dim=1), w_taps, bias)


class ModulatedDeformConv2d(nn.Module):
    """
    The deformable convolution of ISNet's TOAA block: a modulated deformable conv (DCNv2, Zhu et
    al. 2019, eq. 3) whose offsets and modulation come from the input itself (the code's
    ``DCN`` from ``dcn_v2``)::

        [dy, dx, m] = conv_offset_mask(x)        # same kernel and padding, with bias, zero init
        y = deform_conv(x, (dy, dx), sigmoid(m); weight, bias)

    ``weight`` starts uniform in +-1/sqrt(C kh kw), ``bias`` at 0 (the code's ``DCNv2``). The
    offset channels are taken as the first 2K of the offset conv's output and the modulation as
    the last K (the code's chunk-and-concatenate gives that order).

    ``impl`` (``MODEL.IRSTD.ISNET.DEFORM_IMPL``): "torchvision" (``torchvision.ops.
    deform_conv2d``, CPU and CUDA kernels), "sampling" (:func:`modulated_deform_conv2d_sampling`)
    or "auto": torchvision, except while exporting or tracing (ONNX, TorchScript, fvcore), where
    the sampling form gives an ONNX opset-18 graph and a TorchScript file without torchvision's
    ops. Both give the same output.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, impl: str = "auto"):
        super().__init__()
        if impl not in DEFORM_IMPLS:
            raise ValueError(
                f"MODEL.IRSTD.ISNET.DEFORM_IMPL must be one of {DEFORM_IMPLS}, got {impl!r}."
            )
        kh, kw = kernel_size
        self.kernel_size = (kh, kw)
        self.padding = (kh // 2, kw // 2)
        self.impl = impl
        bound = 1.0 / math.sqrt(in_channels * kh * kw)
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels, kh, kw).uniform_(-bound, bound)
        )
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.conv_offset_mask = nn.Conv2d(
            in_channels, 3 * kh * kw, (kh, kw), padding=self.padding, bias=True
        )
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        om = self.conv_offset_mask(x)
        taps = self.kernel_size[0] * self.kernel_size[1]
        offset, mask = om[:, : 2 * taps], torch.sigmoid(om[:, 2 * taps :])
        if self.impl == "sampling" or (self.impl == "auto" and _is_exporting()):
            return modulated_deform_conv2d_sampling(
                x, offset, mask, self.weight, self.bias, self.padding
            )
        from torchvision.ops import deform_conv2d

        return deform_conv2d(x, offset, self.weight, self.bias, padding=self.padding, mask=mask)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, padding={self.padding}, impl={self.impl!r}"
