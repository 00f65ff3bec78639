"""Softmax. Before opset 13 the input is flattened to 2-D at `axis` (default 1) and normalized
over the second dimension; from 13 on it is normalized along `axis` (default -1)."""
from __future__ import annotations

import numpy as np

from ....core.onnx_attributes import softmax_axis
from ..kernel import NumpyKernel
from ._util import needs


class Softmax(NumpyKernel):
    op_type = "Softmax"

    def _view(self, ctx, attrs, x):
        """(array to normalize along `ax`, ax)."""
        axis, as_2d = softmax_axis(ctx.opset, attrs, x.ndim)
        if as_2d:
            lead = int(np.prod(x.shape[:axis])) if axis else 1
            return x.reshape(lead, -1), 1
        return x, axis

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        v, ax = self._view(ctx, attrs, x)
        y = v - v.max(axis=ax, keepdims=True)
        np.exp(y, out=y)
        y /= y.sum(axis=ax, keepdims=True)
        y = y.reshape(x.shape)
        return [y], y

    def backward(self, ctx, saved, grads, attrs):
        if not needs(ctx, 0):
            return [None]
        y = saved
        yv, ax = self._view(ctx, attrs, y)
        gv, _ = self._view(ctx, attrs, grads[0])
        dx = gv * yv
        dx -= yv * dx.sum(axis=ax, keepdims=True)
        return [dx.reshape(y.shape)]
