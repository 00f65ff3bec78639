"""Dropout: in training a Bernoulli keep-mask from ctx.rng scales kept values by 1/(1-ratio);
inference (and ratio 0) is the identity. Backward reuses the saved boolean mask. Training is
decided by ctx.training (the optional training_mode input is not consulted); only the first
output (the data) is produced."""
from __future__ import annotations

import numpy as np

from ....core.errors import DLPluginError
from ....core.onnx_attributes import dropout_ratio
from ..kernel import NumpyKernel
from ._util import needs, unsupported


class Dropout(NumpyKernel):
    op_type = "Dropout"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        ratio = dropout_ratio(ctx.opset, attrs, inputs)
        if not ctx.training or ratio == 0.0:
            return [x], None
        if not 0.0 <= ratio < 1.0:
            raise unsupported(self.op_type, "ratio", ratio, "0 <= ratio < 1")
        if ctx.rng is None:
            raise DLPluginError("Dropout: a training forward needs ctx.rng (a numpy Generator) for the mask")
        rdt = x.dtype if x.dtype in (np.float32, np.float64) else np.float32
        keep = ctx.rng.random(x.shape, dtype=rdt) >= ratio
        scale = x.dtype.type(1.0 / (1.0 - ratio))
        y = x * keep
        y *= scale
        return [y], (keep, scale)

    def backward(self, ctx, saved, grads, attrs):
        out = [None] * 3
        if not needs(ctx, 0):
            return out
        dy = grads[0]
        if saved is None:
            out[0] = dy
        else:
            keep, scale = saved
            g = dy * keep
            g *= scale
            out[0] = g
        return out
