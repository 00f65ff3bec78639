"""Pointwise activations. Plain ufuncs keep the input's memory order (channel-major stays
channel-major); masks are applied as `dy * (cond)` which is much faster than np.where."""
from __future__ import annotations

import numpy as np

from ....core.onnx_attributes import clip_bounds
from .. import buffers
from ..kernel import NumpyKernel
from ._util import needs, parallel_ew, relu_, scratch


def relu_mask_grad(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dy * (y > 0), split over the kernel threads when dy and y share a layout."""
    out = buffers.empty_like(y) if y.dtype == dy.dtype else None
    def part(o, g, v):
        np.multiply(g, np.greater(v, 0, out=scratch("relu_mask", v.shape, bool)), out=o)

    if out is not None and parallel_ew(part, out, dy, y):
        return out
    return dy * (y > 0)


class Relu(NumpyKernel):
    """Saves the output: y > 0 iff x > 0, and y is usually kept alive by the next op anyway."""

    op_type = "Relu"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        y = buffers.empty_like(x)
        if not parallel_ew(lambda o, v: relu_(v, o), y, x):
            y = np.maximum(x, 0)
        return [y], y

    def backward(self, ctx, saved, grads, attrs):
        return [relu_mask_grad(grads[0], saved) if needs(ctx, 0) else None]


class LeakyRelu(NumpyKernel):
    op_type = "LeakyRelu"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        alpha = float(attrs.get("alpha", 0.01))
        if 0.0 <= alpha <= 1.0:
            y = np.maximum(x, x * x.dtype.type(alpha))
        else:
            y = np.where(x > 0, x, x * x.dtype.type(alpha))
        return [y], x

    def backward(self, ctx, saved, grads, attrs):
        if not needs(ctx, 0):
            return [None]
        alpha = float(attrs.get("alpha", 0.01))
        dy = grads[0]
        return [np.where(saved > 0, dy, dy * dy.dtype.type(alpha))]


class Clip(NumpyKernel):
    """min/max are attributes before opset 11 and optional inputs from 11 on."""

    op_type = "Clip"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        lo, hi = clip_bounds(ctx.opset, attrs, inputs)
        y = x
        if lo is not None:
            y = np.maximum(y, np.asarray(lo, dtype=x.dtype))
        if hi is not None:
            y = np.minimum(y, np.asarray(hi, dtype=x.dtype))
        if y is x:
            y = x.copy()
        return [y], (x, lo, hi)

    def backward(self, ctx, saved, grads, attrs):
        x, lo, hi = saved
        out = [None] * 3
        if needs(ctx, 0):
            dy = grads[0]
            mask = None
            if lo is not None:
                mask = x >= np.asarray(lo, dtype=x.dtype)
            if hi is not None:
                m2 = x <= np.asarray(hi, dtype=x.dtype)
                mask = m2 if mask is None else (mask & m2)
            out[0] = dy * mask if mask is not None else dy
        return out


class Sigmoid(NumpyKernel):
    """0.5 * tanh(x/2) + 0.5: one stable ufunc, no overflow warnings for large |x|."""

    op_type = "Sigmoid"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        h = x.dtype.type(0.5)
        y = np.tanh(x * h)
        y *= h
        y += h
        return [y], y

    def backward(self, ctx, saved, grads, attrs):
        if not needs(ctx, 0):
            return [None]
        y = saved
        return [grads[0] * (y * (1 - y))]


class Tanh(NumpyKernel):
    op_type = "Tanh"

    def forward(self, ctx, inputs, attrs):
        y = np.tanh(inputs[0])
        return [y], y

    def backward(self, ctx, saved, grads, attrs):
        if not needs(ctx, 0):
            return [None]
        return [grads[0] * (1 - np.square(saved))]


class HardSigmoid(NumpyKernel):
    op_type = "HardSigmoid"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        t = x.dtype.type
        alpha, beta = float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5))
        z = x * t(alpha)
        z += t(beta)
        y = np.clip(z, t(0), t(1))
        return [y], z

    def backward(self, ctx, saved, grads, attrs):
        if not needs(ctx, 0):
            return [None]
        z = saved
        alpha = float(attrs.get("alpha", 0.2))
        dy = grads[0]
        return [(dy * dy.dtype.type(alpha)) * ((z > 0) & (z < 1))]


class HardSwish(NumpyKernel):
    """x * clip(x/6 + 1/2, 0, 1); derivative (2x+3)/6 inside (-3, 3), 0 below, 1 above."""

    op_type = "HardSwish"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        t = x.dtype.type
        g = x * t(1.0 / 6.0)
        g += t(0.5)
        np.clip(g, t(0), t(1), out=g)
        return [x * g], x

    def backward(self, ctx, saved, grads, attrs):
        if not needs(ctx, 0):
            return [None]
        x = saved
        t = x.dtype.type
        d = x * t(1.0 / 3.0)
        d += t(0.5)
        d *= (x > -3)
        np.putmask(d, x >= 3, t(1))
        return [grads[0] * d]
