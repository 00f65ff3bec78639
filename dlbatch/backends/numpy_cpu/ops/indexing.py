"""Indexing and broadcasting of float activations: Gather (the class-token pick `x[:, 0]`,
embedding lookups), Slice and Split (qkv chunks), Expand (a parameter broadcast over the
batch) and Where (attention masks). Each backward sends the gradient back to the elements
the forward read: Gather scatter-adds (repeated indices add up), Slice and Split write into
zeros, Expand sums over the broadcast axes, Where splits the gradient between its branches.

Integer and bool operands (indices, conditions, shape tensors) never get a gradient, and
integer data flows through these kernels unchanged, so shape computations left in a graph run
here too.
"""
from __future__ import annotations

import numpy as np

from ....core.onnx_attributes.indexing import (check_gather_indices, expand_shape, gather_axis, slice_specs,
                                               split_sizes)
from ..kernel import NumpyKernel
from ._util import is_float, needs, unbroadcast


class Gather(NumpyKernel):
    """Y = take(data, indices, axis); negative indices count from the end."""

    op_type = "Gather"

    def forward(self, ctx, inputs, attrs):
        data, idx = inputs
        axis = gather_axis(attrs, data.ndim)
        size = data.shape[axis]
        idx = np.asarray(idx).astype(np.int64, copy=False)
        if idx.size:
            check_gather_indices(int(idx.min()), int(idx.max()), size)
        idx = np.where(idx < 0, idx + size, idx)
        y = np.take(data, idx, axis=axis)
        return [y], (data.shape, data.dtype, idx, axis, is_float(data))

    def backward(self, ctx, saved, grads, attrs):
        shape, dtype, idx, axis, fl = saved
        if not (needs(ctx, 0) and fl):
            return [None, None]
        dy = grads[0]
        pre = int(np.prod(shape[:axis], dtype=np.int64))
        post = int(np.prod(shape[axis + 1:], dtype=np.int64))
        dx = np.zeros((pre, shape[axis], post), dtype=dy.dtype)
        np.add.at(dx, (slice(None), idx.reshape(-1)), dy.reshape(pre, idx.size, post))
        return [dx.reshape(shape), None]


class Slice(NumpyKernel):
    """Basic slicing (see core.onnx_attributes.indexing.slice_specs); backward writes the
    gradient into zeros at the sliced positions."""

    op_type = "Slice"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        sl = slice_specs(ctx.opset, attrs, inputs, x.shape)
        return [x[sl].copy()], (x.shape, sl, is_float(x))

    def backward(self, ctx, saved, grads, attrs):
        shape, sl, fl = saved
        out = [None] * 5
        if needs(ctx, 0) and fl:
            dx = np.zeros(shape, dtype=grads[0].dtype)
            dx[sl] = grads[0]
            out[0] = dx
        return out


class Split(NumpyKernel):
    """Consecutive parts along `axis`; backward concatenates the parts' gradients (zeros for
    parts nobody used)."""

    op_type = "Split"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        axis, sizes = split_sizes(ctx.opset, attrs, inputs, x.shape, _num_outputs(ctx, attrs))
        bounds = np.cumsum([0] + sizes)
        outs = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            sl = [slice(None)] * x.ndim
            sl[axis] = slice(int(a), int(b))
            outs.append(x[tuple(sl)].copy())
        return outs, (x.shape, axis, sizes, is_float(x))

    def backward(self, ctx, saved, grads, attrs):
        shape, axis, sizes, fl = saved
        if not (needs(ctx, 0) and fl):
            return [None, None]
        dtype = next(g.dtype for g in grads if g is not None)
        parts = []
        for s, g in zip(sizes, grads):
            part_shape = shape[:axis] + (s,) + shape[axis + 1:]
            parts.append(g if g is not None else np.zeros(part_shape, dtype=dtype))
        return [np.concatenate(parts, axis=axis), None]


def _num_outputs(ctx, attrs) -> int:
    """The part count of a Split without sizes: `num_outputs` (opset 18), else the node's
    output count where the context carries it (0 = unknown: split_sizes then needs sizes)."""
    return int(attrs.get("num_outputs", 0)) or int(ctx.num_outputs)


class Expand(NumpyKernel):
    """Broadcast to the target shape (a 1 in the target keeps the input's size); backward sums
    the gradient over the broadcast axes. The output is a copy: later kernels may write to
    their own outputs, never to a read-only broadcast view."""

    op_type = "Expand"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        shape = expand_shape(x.shape, inputs[1])
        return [np.broadcast_to(x, shape).copy()], (x.shape, is_float(x))

    def backward(self, ctx, saved, grads, attrs):
        shape, fl = saved
        return [unbroadcast(grads[0], shape) if needs(ctx, 0) and fl else None, None]


class Where(NumpyKernel):
    """Y = X where the (bool) condition holds, else Y; broadcasting over all three."""

    op_type = "Where"

    def forward(self, ctx, inputs, attrs):
        c, x, y = inputs
        c = c.astype(bool, copy=False)
        return [np.where(c, x, y)], (c, x.shape, y.shape, is_float(x), is_float(y))

    def backward(self, ctx, saved, grads, attrs):
        c, sx, sy, fx, fy = saved
        dy = grads[0]
        out = [None, None, None]
        if needs(ctx, 1) and fx:
            out[1] = unbroadcast(np.where(c, dy, dy.dtype.type(0)), sx)
        if needs(ctx, 2) and fy:
            out[2] = unbroadcast(np.where(c, dy.dtype.type(0), dy), sy)
        return out
