"""ReduceMean, ReduceSum, ReduceMax. `axes` is an attribute before opset 18 (ReduceSum: 13)
and an optional input from then on, where noop_with_empty_axes=1 with no axes makes the op
the identity (see core.onnx_attributes.reduce_axes). ReduceMax sends the gradient to the
maxima, split evenly between ties (torch.amax's rule)."""
from __future__ import annotations

import numpy as np

from ....core.onnx_attributes import reduce_axes
from ..kernel import NumpyKernel
from ._util import is_float, needs


def _spread(dy, shape, axes):
    """dy broadcast back over the reduced axes (shape of the input)."""
    kshape = tuple(1 if i in axes else s for i, s in enumerate(shape))
    g = np.empty(shape, dtype=dy.dtype)
    g[...] = dy.reshape(kshape)
    return g


class _Reduce(NumpyKernel):
    def _axes(self, ctx, attrs, inputs, x):
        return reduce_axes(self.op_type, ctx.opset, attrs, inputs, x.ndim), bool(int(attrs.get("keepdims", 1)))


class ReduceMean(_Reduce):
    op_type = "ReduceMean"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        axes, keep = self._axes(ctx, attrs, inputs, x)
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
        g = _spread(dy, shape, axes)
        g /= dy.dtype.type(cnt)
        out[0] = g
        return out


class ReduceSum(_Reduce):
    op_type = "ReduceSum"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        axes, keep = self._axes(ctx, attrs, inputs, x)
        if axes is None:
            return [x], None
        return [x.sum(axis=axes, keepdims=keep)], (x.shape, axes, is_float(x))

    def backward(self, ctx, saved, grads, attrs):
        out = [None, None]
        if not needs(ctx, 0) or (saved is not None and not saved[2]):
            return out
        dy = grads[0]
        out[0] = dy if saved is None else _spread(dy, saved[0], saved[1])
        return out


class ReduceMax(_Reduce):
    op_type = "ReduceMax"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        axes, keep = self._axes(ctx, attrs, inputs, x)
        if axes is None:
            return [x], None
        if any(x.shape[a] == 0 for a in axes):  # the maximum of an empty set: the lowest value
            low = False if x.dtype == bool else (-np.inf if is_float(x) else np.iinfo(x.dtype).min)
            kshape = tuple(1 if i in axes else s for i, s in enumerate(x.shape))
            y = np.full(kshape, low, dtype=x.dtype)
            return [y if keep else y.reshape([s for i, s in enumerate(x.shape) if i not in axes])], None
        ymax = x.max(axis=axes, keepdims=True)
        y = ymax if keep else ymax.reshape([s for i, s in enumerate(x.shape) if i not in axes])
        return [y], (x, axes, ymax)

    def backward(self, ctx, saved, grads, attrs):
        out = [None, None]
        if not needs(ctx, 0):
            return out
        dy = grads[0]
        if saved is None:
            out[0] = dy
            return out
        x, axes, ymax = saved
        if not is_float(x):
            return out
        mask = (x == ymax).astype(dy.dtype)
        mask /= mask.sum(axis=axes, keepdims=True)
        out[0] = mask * dy.reshape(ymax.shape)
        return out
