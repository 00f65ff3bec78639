"""ReduceMean. `axes` is an attribute before opset 18 and an optional input from 18 on
(where noop_with_empty_axes=1 with no axes makes it the identity)."""
from __future__ import annotations

import numpy as np

from ....core.onnx_attributes import reduce_axes
from ..kernel import NumpyKernel
from ._util import needs


class ReduceMean(NumpyKernel):
    op_type = "ReduceMean"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        axes = reduce_axes(self.op_type, ctx.opset, attrs, inputs, x.ndim)
        keep = bool(int(attrs.get("keepdims", 1)))
        if axes is None:  # noop_with_empty_axes
            return [x], None
        cnt = int(np.prod([x.shape[a] for a in axes]))
        y = x.sum(axis=axes, keepdims=keep) / x.dtype.type(cnt)
        return [y], (x.shape, axes, cnt)

    def backward(self, ctx, saved, grads, attrs):
        out = [None, None]
        if not needs(ctx, 0):
            return out
        dy = grads[0]
        if saved is None:
            out[0] = dy
            return out
        shape, axes, cnt = saved
        kshape = tuple(1 if i in axes else s for i, s in enumerate(shape))
        g = np.empty(shape, dtype=dy.dtype)
        g[...] = dy.reshape(kshape) / dy.dtype.type(cnt)
        out[0] = g
        return out
