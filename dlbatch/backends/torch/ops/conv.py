"""Conv and ConvTranspose (1-3 spatial axes; strides, pads, dilations, group, auto_pad,
output_padding, output_shape)."""
from __future__ import annotations

import torch.nn.functional as F

from ....core.onnx_attributes import conv_kernel_shape, conv_transpose_windows, sliding_windows, spatial_ints
from ..kernel import TorchKernel
from ._util import torch_pads, unsupported

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _spatial(op: str, x) -> int:
    n = x.dim() - 2
    if n not in _CONV:
        raise unsupported(op, f"a rank-{x.dim()} input", "rank 3, 4 or 5 (N, C, 1 to 3 spatial axes)")
    return n


def _kernel_strides_dilations(op: str, attrs, w, n: int):
    kernel = tuple(conv_kernel_shape(op, attrs, w.shape[2:]))
    strides = tuple(spatial_ints(op, attrs, "strides", n, 1))
    dilations = tuple(spatial_ints(op, attrs, "dilations", n, 1))
    return kernel, strides, dilations


class Conv(TorchKernel):
    op_type = "Conv"

    def forward(self, ctx, inputs, attrs):
        x, w = inputs[0], inputs[1]
        b = inputs[2] if len(inputs) > 2 else None
        plan = getattr(ctx, "plan", None)
        key = (tuple(x.shape), tuple(w.shape))
        call = plan.get(key) if plan is not None else None
        if call is None:
            call = self._plan(x, w, attrs)
            if plan is not None:
                plan[key] = call
        n, pads, strides, padding, dilations, group = call
        if pads is not None:
            x = F.pad(x, pads)
        return [_CONV[n](x, w, b, strides, padding, dilations, group)]

    @staticmethod
    def _plan(x, w, attrs):
        """(spatial rank, explicit pads or None, strides, padding, dilations, group) of a call."""
        n = _spatial("Conv", x)
        kernel, strides, dilations = _kernel_strides_dilations("Conv", attrs, w, n)
        group = int(attrs.get("group", 1))
        begins, ends, _ = sliding_windows("Conv", attrs, x.shape[2:], kernel, strides, dilations)
        if begins == ends:
            return n, None, strides, tuple(begins), dilations, group
        return n, torch_pads(begins, ends), strides, 0, dilations, group


class ConvTranspose(TorchKernel):
    op_type = "ConvTranspose"

    def forward(self, ctx, inputs, attrs):
        x, w = inputs[0], inputs[1]
        b = inputs[2] if len(inputs) > 2 else None
        n = _spatial("ConvTranspose", x)
        kernel, strides, dilations = _kernel_strides_dilations("ConvTranspose", attrs, w, n)
        group = int(attrs.get("group", 1))
        begins, ends, _, out_pad = conv_transpose_windows("ConvTranspose", attrs, x.shape[2:], kernel, strides,
                                                         dilations)
        simple = (begins == ends and min(begins, default=0) >= 0
                  and all(op < max(s, d) for op, s, d in zip(out_pad, strides, dilations)))
        if simple:
            return [_CONV_T[n](x, w, b, strides, tuple(begins), tuple(out_pad), group, dilations)]
        y = _CONV_T[n](x, w, None, strides, 0, 0, group, dilations)
        y = F.pad(y, torch_pads([-p for p in begins], [op - e for op, e in zip(out_pad, ends)]))
        if b is not None:
            y = y + b.reshape((1, -1) + (1,) * n)
        return [y]
