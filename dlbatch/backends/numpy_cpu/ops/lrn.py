"""LRN across channels: y = x / (bias + alpha/size * sum_window x^2)^beta, window
[c - floor((size-1)/2), c + ceil((size-1)/2)]. Channel-major memory makes each channel shift
a slice of whole contiguous blocks; sums are `size` shifted adds (no cumsum cancellation)."""
from __future__ import annotations

import numpy as np

from ....core.onnx_attributes import lrn_window
from ..kernel import NumpyKernel
from ._util import cm, needs


def _window_sum(v, lo, hi):
    """out[c] = sum_{k=c-lo}^{c+hi} v[k] along axis 0 (zero outside)."""
    out = v.copy()
    c = v.shape[0]
    for off in range(1, lo + 1):
        if off < c:
            out[off:] += v[:c - off]
    for off in range(1, hi + 1):
        if off < c:
            out[:c - off] += v[off:]
    return out


class LRN(NumpyKernel):
    """Saves x and the denominator base d = bias + alpha/size * window sum."""

    op_type = "LRN"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        size, alpha, beta, bias, lo, hi = lrn_window(attrs)
        t = x.dtype.type
        xc = cm(x)
        d = _window_sum(np.square(xc), lo, hi)
        d *= t(alpha / size)
        d += t(bias)
        y = xc * np.power(d, t(-beta))
        return [cm(y)], (x, d)

    def backward(self, ctx, saved, grads, attrs):
        if not needs(ctx, 0):
            return [None]
        x, d = saved
        size, alpha, beta, bias, lo, hi = lrn_window(attrs)
        t = x.dtype.type
        xc, dyc = cm(x), cm(grads[0])
        p = np.power(d, t(-beta))
        dx = dyc * p
        # u[c'] = dy[c'] x[c'] d[c']^(-beta-1); channel c gets the sum over windows containing it
        u = dyc * xc
        u *= p
        u /= d
        s = _window_sum(u, hi, lo)
        s *= xc
        s *= t(2.0 * alpha * beta / size)
        dx -= s
        return [cm(dx)]
