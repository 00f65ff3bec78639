"""Shape computations: Shape, ConstantOfShape, Range, Cast, Equal, Mod. The importer folds
most of them at read time; what stays in a graph (a batch size read with Shape, a mask built
with Equal/Where) runs here. Their outputs are int64 or bool and carry no gradient; the float
paths of Cast and Mod pass gradients like torch does.
"""
from __future__ import annotations

import numpy as np

from ....core.onnx_attributes.indexing import FLOAT_TYPES, cast_target, constant_of_shape_value, range_length, \
    shape_range
from ..kernel import NumpyKernel
from ._util import is_float, needs, unbroadcast


class Shape(NumpyKernel):
    """The input's dimensions [start:end] (opset 15 attributes) as int64."""

    op_type = "Shape"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        start, end = shape_range(attrs, x.ndim)
        return [np.array(x.shape[start:end], dtype=np.int64)], None

    def backward(self, ctx, saved, grads, attrs):
        return [None]


class ConstantOfShape(NumpyKernel):
    """A tensor of the given (int64) shape filled with `value` (float32 0 by default), in the
    value's type."""

    op_type = "ConstantOfShape"

    def forward(self, ctx, inputs, attrs):
        shape = [int(v) for v in np.asarray(inputs[0]).reshape(-1)]
        value = constant_of_shape_value(attrs)
        value = np.zeros(1, np.float32) if value is None else np.asarray(value)
        return [np.full(shape, value.reshape(-1)[0], dtype=value.dtype)], None

    def backward(self, ctx, saved, grads, attrs):
        return [None]


class Range(NumpyKernel):
    """start, start + delta, ... below limit (scalars), in start's type."""

    op_type = "Range"

    def forward(self, ctx, inputs, attrs):
        start, limit, delta = (np.asarray(v).reshape(()) for v in inputs)
        n = range_length(float(start), float(limit), float(delta))
        y = (start + np.arange(n, dtype=np.result_type(start, delta)) * delta).astype(start.dtype, copy=False)
        return [y], None

    def backward(self, ctx, saved, grads, attrs):
        return [None, None, None]


class Cast(NumpyKernel):
    """To an integer or bool type: a plain conversion (no gradient). To a float type: float
    inputs keep the model's precision (and pass the gradient), integer/bool inputs become
    the requested float type."""

    op_type = "Cast"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        to = cast_target(attrs)
        if to in FLOAT_TYPES and is_float(x):
            return [x], True
        if to == "bfloat16":
            to = "float32"  # numpy has no bfloat16; the value is exact in float32
        return [x.astype(to)], False

    def backward(self, ctx, saved, grads, attrs):
        return [grads[0] if saved and needs(ctx, 0) else None]


class Equal(NumpyKernel):
    op_type = "Equal"

    def forward(self, ctx, inputs, attrs):
        a, b = inputs
        return [np.equal(a, b)], None

    def backward(self, ctx, saved, grads, attrs):
        return [None, None]


class Mod(NumpyKernel):
    """fmod=0: the remainder takes the divisor's sign (integers only, per ONNX); fmod=1: the
    dividend's sign (C fmod). Float gradients: da = dy, db = -dy * q with q the rounded
    quotient (floor or truncation), as torch defines them."""

    op_type = "Mod"

    def forward(self, ctx, inputs, attrs):
        a, b = inputs
        fmod = int(attrs.get("fmod", 0))
        y = np.fmod(a, b) if fmod else np.mod(a, b)
        return [y], (a, b, fmod)

    def backward(self, ctx, saved, grads, attrs):
        a, b, fmod = saved
        dy = grads[0]
        out = [None, None]
        if needs(ctx, 0) and is_float(a):
            out[0] = unbroadcast(dy, a.shape)
        if needs(ctx, 1) and is_float(b):
            q = np.trunc(a / b) if fmod else np.floor(a / b)
            out[1] = unbroadcast(np.negative(dy * q), b.shape)
        return out

