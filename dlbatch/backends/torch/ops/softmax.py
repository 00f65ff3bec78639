"""Softmax: before opset 13 the input is flattened to 2-D at `axis` (default 1) and normalized
over everything after it; from 13 on it is normalized along `axis` (default -1)."""
from __future__ import annotations

import math

import torch

from ..kernel import TorchKernel
from ._util import norm_axis


class Softmax(TorchKernel):
    op_type = "Softmax"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        if x.dim() == 0:
            return [torch.ones_like(x)]
        if ctx.opset >= 13:
            return [torch.softmax(x, dim=norm_axis(int(attrs.get("axis", -1)), x.dim(), "Softmax"))]
        axis = int(attrs.get("axis", 1))
        axis = axis + x.dim() if axis < 0 else axis
        shape = tuple(x.shape)
        flat = x.reshape(math.prod(shape[:axis]), math.prod(shape[axis:]))
        return [torch.softmax(flat, dim=1).reshape(shape)]
