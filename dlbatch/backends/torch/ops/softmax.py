"""Softmax: before opset 13 the input is flattened to 2-D at `axis` (default 1) and normalized
over everything after it; from 13 on it is normalized along `axis` (default -1)."""
from __future__ import annotations

import math

import torch

from ....core.onnx_attributes import softmax_axis
from ..kernel import TorchKernel


class Softmax(TorchKernel):
    op_type = "Softmax"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        if x.dim() == 0:
            return [torch.ones_like(x)]
        axis, as_2d = softmax_axis(ctx.opset, attrs, x.dim())
        if not as_2d:
            return [torch.softmax(x, dim=axis)]
        shape = tuple(x.shape)
        flat = x.reshape(math.prod(shape[:axis]), math.prod(shape[axis:]))
        return [torch.softmax(flat, dim=1).reshape(shape)]
