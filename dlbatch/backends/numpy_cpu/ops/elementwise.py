"""Broadcasting binary arithmetic and variadic Sum. Backward reduces each gradient to its
input's shape (per-channel biases take the fast contiguous channel sum); Mul by per-(sample,
channel) factors runs in .channel_scale."""
from __future__ import annotations

import numpy as np

from ..kernel import NumpyKernel
from ._util import is_float, needs, unbroadcast
from .channel_scale import scale_backward, scale_forward, scale_operands


def _want(ctx, i, a) -> bool:
    return needs(ctx, i) and is_float(a)


class Add(NumpyKernel):
    op_type = "Add"

    def forward(self, ctx, inputs, attrs):
        a, b = inputs
        return [np.add(a, b)], (a.shape, b.shape, is_float(a), is_float(b))

    def backward(self, ctx, saved, grads, attrs):
        sa, sb, fa, fb = saved
        dy = grads[0]
        return [unbroadcast(dy, sa) if needs(ctx, 0) and fa else None,
                unbroadcast(dy, sb) if needs(ctx, 1) and fb else None]


class Sub(NumpyKernel):
    op_type = "Sub"

    def forward(self, ctx, inputs, attrs):
        a, b = inputs
        return [np.subtract(a, b)], (a.shape, b.shape, is_float(a), is_float(b))

    def backward(self, ctx, saved, grads, attrs):
        sa, sb, fa, fb = saved
        dy = grads[0]
        return [unbroadcast(dy, sa) if needs(ctx, 0) and fa else None,
                np.negative(unbroadcast(dy, sb)) if needs(ctx, 1) and fb else None]


class Mul(NumpyKernel):
    op_type = "Mul"

    def forward(self, ctx, inputs, attrs):
        a, b = inputs
        scaled = scale_operands(a, b)
        if scaled is not None:  # per-(sample, channel) factors: see .channel_scale
            return [scale_forward(scaled[0], scaled[1])], (a, b, scaled)
        return [np.multiply(a, b)], (a, b, None)

    def backward(self, ctx, saved, grads, attrs):
        a, b, scaled = saved
        dy = grads[0]
        if scaled is not None:
            x, s, i = scaled
            want_x, want_s = _want(ctx, i, x), _want(ctx, 1 - i, s)
            dx, ds = scale_backward(x, s, dy, want_x, want_s)
            return [dx, ds] if i == 0 else [ds, dx]
        return [unbroadcast(dy * b, a.shape) if _want(ctx, 0, a) else None,
                unbroadcast(dy * a, b.shape) if _want(ctx, 1, b) else None]


class Div(NumpyKernel):
    """Saves b and y: d/da = dy/b, d/db = -dy*y/b."""

    op_type = "Div"

    def forward(self, ctx, inputs, attrs):
        a, b = inputs
        if np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer):
            y = np.trunc(a / b).astype(np.result_type(a, b))  # ONNX integer division truncates
        else:
            y = np.divide(a, b)
        return [y], (a.shape, b, y, is_float(a))

    def backward(self, ctx, saved, grads, attrs):
        sa, b, y, fa = saved
        dy = grads[0]
        want_a, want_b = needs(ctx, 0) and fa, _want(ctx, 1, b)
        if not (want_a or want_b):
            return [None, None]
        q = dy / b
        return [unbroadcast(q, sa) if want_a else None,
                unbroadcast(np.negative(q * y), b.shape) if want_b else None]


class Sum(NumpyKernel):
    op_type = "Sum"

    def forward(self, ctx, inputs, attrs):
        y = inputs[0]
        for v in inputs[1:]:
            y = np.add(y, v)
        if len(inputs) == 1:
            y = y.copy()
        return [y], [(v.shape, is_float(v)) for v in inputs]

    def backward(self, ctx, saved, grads, attrs):
        dy = grads[0]
        return [unbroadcast(dy, s) if needs(ctx, i) and f else None for i, (s, f) in enumerate(saved)]
