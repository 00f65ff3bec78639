"""ReduceMean. `axes` is an attribute before opset 18 and an optional input from 18 on
(where noop_with_empty_axes=1 with no axes makes it the identity)."""
from __future__ import annotations

import numpy as np

from ..kernel import NumpyKernel
from ._util import attr_or_input, int_list, needs


class ReduceMean(NumpyKernel):
    op_type = "ReduceMean"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        axes = int_list(attr_or_input(ctx, attrs, inputs, "axes", 1, 18))
        keep = bool(int(attrs.get("keepdims", 1)))
        if not axes:
            if ctx.opset >= 18 and int(attrs.get("noop_with_empty_axes", 0)):
                return [x], None
            axes = list(range(x.ndim))
        axes = tuple(sorted(a % x.ndim for a in axes))
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
