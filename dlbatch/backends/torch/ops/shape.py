"""Shape and layout ops: Concat, Flatten, Reshape, Transpose, Identity, Unsqueeze, Squeeze, Pad.
Constant inputs (shape, axes, pads) are read as Python ints (they arrive on the host)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ....core.onnx_attributes import (concat_axis, flatten_axis, pad_spec, reshape_target, squeeze_axes,
                                      transpose_perm, unsqueeze_axes)
from ..kernel import TorchKernel
from ._util import torch_pads


class Identity(TorchKernel):
    op_type = "Identity"

    def forward(self, ctx, inputs, attrs):
        return [inputs[0]]


class Concat(TorchKernel):
    op_type = "Concat"

    def forward(self, ctx, inputs, attrs):
        ts = [t for t in inputs if t is not None]
        axis = concat_axis(ctx.opset, attrs, ts[0].dim())
        return [torch.cat(ts, dim=axis)]


class Flatten(TorchKernel):
    op_type = "Flatten"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        axis = flatten_axis(attrs, x.dim())
        shape = tuple(x.shape)
        return [x.reshape(math.prod(shape[:axis]), math.prod(shape[axis:]))]


class Reshape(TorchKernel):
    """opset < 5: `shape` attribute; later: input 1. 0 copies the input dimension unless
    allowzero=1 (opset 14); -1 is inferred."""

    op_type = "Reshape"
    host_inputs = (1,)

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        return [x.reshape(reshape_target(ctx.opset, attrs, inputs, x.shape))]


class Transpose(TorchKernel):
    op_type = "Transpose"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        perm = transpose_perm(attrs, x.dim())
        return [x.permute(perm)]


class Unsqueeze(TorchKernel):
    op_type = "Unsqueeze"
    host_inputs = (1,)

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        axes = unsqueeze_axes(ctx.opset, attrs, inputs, x.dim())
        shape = list(x.shape)
        for a in axes:
            shape.insert(a, 1)
        return [x.reshape(shape)]


class Squeeze(TorchKernel):
    op_type = "Squeeze"
    host_inputs = (1,)

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        axes = squeeze_axes(ctx.opset, attrs, inputs, x.shape)
        return [x.reshape([s for i, s in enumerate(x.shape) if i not in axes])]


def _index_pad(x, axis: int, begin: int, end: int, mode: str):
    """edge / reflect / wrap padding along one axis by gathering indices (any rank)."""
    size = x.shape[axis]
    idx = []
    for j in range(-begin, size + end):
        if mode == "edge":
            k = min(max(j, 0), size - 1)
        elif mode == "wrap":
            k = j % size
        else:  # reflect, without repeating the border
            if size == 1:
                k = 0
            else:
                period = 2 * (size - 1)
                k = j % period
                k = period - k if k >= size else k
        idx.append(k)
    return x.index_select(axis, torch.tensor(idx, dtype=torch.long, device=x.device))


class Pad(TorchKernel):
    """Modes constant, reflect, edge, wrap (opset 19); pads as attribute (opset < 11) or input 1,
    constant value as attribute `value` or input 2, `axes` input 3 (opset 18). Negative pads
    crop."""

    op_type = "Pad"
    host_inputs = (1, 2, 3)

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        r = x.dim()
        mode, begins, ends, value = pad_spec(ctx.opset, attrs, inputs, r)
        if mode == "constant":
            if not any(begins) and not any(ends):
                return [x]
            return [F.pad(x, torch_pads(begins, ends), value=value)]
        for a in range(r):  # crop first, then pad by gathering
            b, e = begins[a], ends[a]
            if b < 0 or e < 0:
                start, stop = max(-b, 0), x.shape[a] - max(-e, 0)
                x = x.narrow(a, start, stop - start)
            if b > 0 or e > 0:
                x = _index_pad(x, a, max(b, 0), max(e, 0), mode)
        return [x]
