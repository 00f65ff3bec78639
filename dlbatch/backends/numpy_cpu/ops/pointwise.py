"""Pointwise math that exported transformers and ConvNeXt-style blocks use: Erf and Gelu
(exact GELU is x/2 (1 + erf(x/sqrt 2)); the default exporter writes Gelu, opset-13/17 files
spell it out with Erf, tanh-GELU with Tanh/Pow/Mul), Pow (LayerNorm spelled out at opset 13:
(x - mean)^2), Sqrt, Exp, Log, Neg, Reciprocal, Abs.

numpy has no erf. `erf` below is piecewise Chebyshev interpolation of math.erf on [0, 6)
(twelve intervals of width 0.5, degree 16), built once at import from math.erf values and
evaluated with Clenshaw's recurrence in float64: about 1e-16 absolute error, several times
faster than calling math.erf per element. Beyond 6, erf is +-1 in float64; below 0.25 the
Taylor series of erf(x)/x keeps the relative error near zero at rounding level.
"""
from __future__ import annotations

import math

import numpy as np

from ....core.onnx_attributes import text, unsupported
from .. import parallel
from ..kernel import NumpyKernel
from ._util import is_float, needs, scratch, unbroadcast

_WIDTH, _DEG, _LIMIT = 0.5, 16, 6.0


def _erf_tables() -> np.ndarray:
    """Chebyshev coefficients (interval, degree) of erf on [i*_WIDTH, (i+1)*_WIDTH)."""
    n = int(_LIMIT / _WIDTH)
    k = np.arange(_DEG + 1)
    nodes = np.cos(np.pi * (k + 0.5) / (_DEG + 1))  # Chebyshev points of the first kind
    table = np.empty((n, _DEG + 1))
    for i in range(n):
        lo = i * _WIDTH
        f = np.array([math.erf(lo + (t + 1.0) * _WIDTH / 2) for t in nodes])
        # c_j = 2/(n+1) sum_k f(t_k) T_j(t_k), c_0 halved
        c = (2.0 / (_DEG + 1)) * np.cos(np.outer(k, np.pi * (k + 0.5) / (_DEG + 1))) @ f
        c[0] /= 2
        table[i] = c
    return table


_ERF_TABLE = np.ascontiguousarray(_erf_tables().T)  # (degree, interval): one contiguous row per degree
_CHUNK = 1 << 13  # elements per task: the Clenshaw loop's eight temporaries stay in cache
_SMALL = 0.25  # below this, erf(x)/x as its Taylor series in x^2 (exact relative accuracy near 0)
_SERIES = [(-1) ** n / (math.factorial(n) * (2 * n + 1)) * 2 / math.sqrt(math.pi) for n in range(12)]


def _erf_chunk(x: np.ndarray, out: np.ndarray) -> None:
    """out = erf(x) for one 1-D chunk (any float type), computed in float64 with per-thread
    scratch buffers (no allocation inside the worker threads except for tiny arguments)."""
    n = x.size
    a, t, t2, tmp, b1, b2, c = (scratch(f"erf{k}", (n,), np.float64) for k in range(7))
    idx = scratch("erf_idx", (n,), np.intp)
    np.abs(x, out=a)
    np.multiply(a, 1.0 / _WIDTH, out=t)
    np.copyto(idx, t, casting="unsafe")  # truncation = floor for a >= 0
    np.minimum(idx, _ERF_TABLE.shape[1] - 1, out=idx)
    np.multiply(idx, _WIDTH, out=tmp)
    np.subtract(a, tmp, out=t)
    t *= 2.0 / _WIDTH
    t -= 1.0  # position inside the interval, in [-1, 1]
    np.multiply(t, 2.0, out=t2)
    b1.fill(0.0)
    b2.fill(0.0)
    for j in range(_DEG, 0, -1):  # Clenshaw: b_j = c_j + 2t b_{j+1} - b_{j+2}
        np.take(_ERF_TABLE[j], idx, out=c)
        np.multiply(t2, b1, out=tmp)
        c += tmp
        c -= b2
        b1, b2, c = c, b1, b2
    np.take(_ERF_TABLE[0], idx, out=c)
    np.multiply(t, b1, out=tmp)
    c += tmp
    c -= b2
    c[a >= _LIMIT] = 1.0
    small = a < _SMALL
    if small.any():
        s = a[small]
        z = s * s
        p = np.full_like(s, _SERIES[-1])
        for k in _SERIES[-2::-1]:
            p *= z
            p += k
        c[small] = s * p
    np.copysign(c, x, out=c)
    np.copyto(out, c, casting="unsafe")


def erf(x: np.ndarray) -> np.ndarray:
    """erf of any float array in its own dtype; chunks run on the numpy backend's threads
    (elementwise, so the result does not depend on the thread count)."""
    x = np.asarray(x)
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(flat)
    ranges = [(k, min(flat.size, k + _CHUNK)) for k in range(0, flat.size, _CHUNK)]
    parallel.run_sized(lambda r: _erf_chunk(flat[r[0]:r[1]], out[r[0]:r[1]]), ranges, flat.size)
    return out.reshape(x.shape)


_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


class Erf(NumpyKernel):
    """d erf(x)/dx = 2/sqrt(pi) exp(-x^2)."""

    op_type = "Erf"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        return [erf(x)], x

    def backward(self, ctx, saved, grads, attrs):
        if not needs(ctx, 0):
            return [None]
        x = saved
        t = x.dtype.type
        return [grads[0] * (np.exp(-np.square(x)) * t(_TWO_OVER_SQRT_PI))]


_GELU_K = math.sqrt(2.0 / math.pi)
_GELU_C = 0.044715


class Gelu(NumpyKernel):
    """Gelu (opset 20): approximate="none" is x/2 (1 + erf(x/sqrt 2)), "tanh" is
    x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""

    op_type = "Gelu"

    def _mode(self, attrs):
        mode = text(attrs.get("approximate"), "none")
        if mode not in ("none", "tanh"):
            raise unsupported("Gelu", f"approximate={mode!r}", "'none', 'tanh'")
        return mode

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        t = x.dtype.type
        if self._mode(attrs) == "none":
            s = erf(x * t(1 / math.sqrt(2.0)))
        else:
            s = np.tanh((x + t(_GELU_C) * x * x * x) * t(_GELU_K))
        y = (s + t(1)) * x * t(0.5)
        return [y], (x, s)

    def backward(self, ctx, saved, grads, attrs):
        if not needs(ctx, 0):
            return [None]
        x, s = saved
        t = x.dtype.type
        if self._mode(attrs) == "none":
            # 1/2 (1 + erf(x/sqrt2)) + x phi(x)
            d = (s + t(1)) * t(0.5) + x * np.exp(np.square(x) * t(-0.5)) * t(1 / math.sqrt(2 * math.pi))
        else:
            du = (t(1) + t(3 * _GELU_C) * np.square(x)) * t(_GELU_K)
            d = (s + t(1)) * t(0.5) + x * t(0.5) * (t(1) - np.square(s)) * du
        return [grads[0] * d]


class Pow(NumpyKernel):
    """Y = A ** B (broadcasting; the output has A's type). Constant exponents 2, 0.5, 3 and 1
    take exact fast paths. Gradients: dA = dy * B * A^(B-1) (0 where B == 0), dB = dy * Y *
    log(A) (0 where A == 0 and B >= 0, as torch defines it; NaN for negative A)."""

    op_type = "Pow"

    def forward(self, ctx, inputs, attrs):
        a, b = inputs
        b_c = b.astype(a.dtype, copy=False) if is_float(a) else b
        fast = {2.0: np.square, 0.5: np.sqrt, 1.0: np.array, 3.0: lambda v: v * v * v}
        e = float(b_c.reshape(-1)[0]) if b_c.size == 1 and is_float(a) else None
        if e in fast:
            y = fast[e](a)
            shape = np.broadcast_shapes(a.shape, b.shape)
            if y.shape != shape:
                y = np.broadcast_to(y, shape).copy()
        else:
            y = np.power(a, b_c).astype(a.dtype, copy=False)
        return [y], (a, b, y)

    def backward(self, ctx, saved, grads, attrs):
        a, b, y = saved
        dy = grads[0]
        out = [None, None]
        bc = b.astype(a.dtype, copy=False)
        if needs(ctx, 0) and is_float(a):
            if bc.size == 1 and float(bc.reshape(-1)[0]) == 2.0:
                da = dy * (a * a.dtype.type(2))
            else:
                with np.errstate(divide="ignore", invalid="ignore"):
                    da = dy * np.where(bc == 0, 0, bc * np.power(a, bc - 1))
            out[0] = unbroadcast(da.astype(a.dtype, copy=False), a.shape)
        if needs(ctx, 1) and is_float(b):
            with np.errstate(divide="ignore", invalid="ignore"):
                db = dy * np.where((a == 0) & (bc >= 0), 0, y * np.log(a))
            out[1] = unbroadcast(db.astype(b.dtype, copy=False), b.shape)
        return out


class Sqrt(NumpyKernel):
    op_type = "Sqrt"

    def forward(self, ctx, inputs, attrs):
        y = np.sqrt(inputs[0])
        return [y], y

    def backward(self, ctx, saved, grads, attrs):
        if not needs(ctx, 0):
            return [None]
        with np.errstate(divide="ignore"):
            return [grads[0] / (saved * saved.dtype.type(2))]


class Exp(NumpyKernel):
    op_type = "Exp"

    def forward(self, ctx, inputs, attrs):
        y = np.exp(inputs[0])
        return [y], y

    def backward(self, ctx, saved, grads, attrs):
        return [grads[0] * saved if needs(ctx, 0) else None]


class Log(NumpyKernel):
    op_type = "Log"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            return [np.log(x)], x

    def backward(self, ctx, saved, grads, attrs):
        return [grads[0] / saved if needs(ctx, 0) else None]


class Neg(NumpyKernel):
    op_type = "Neg"

    def forward(self, ctx, inputs, attrs):
        return [np.negative(inputs[0])], is_float(inputs[0])

    def backward(self, ctx, saved, grads, attrs):
        return [np.negative(grads[0]) if needs(ctx, 0) and saved else None]


class Abs(NumpyKernel):
    """d|x|/dx = sign(x) (0 at 0, as torch)."""

    op_type = "Abs"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        return [np.abs(x)], x

    def backward(self, ctx, saved, grads, attrs):
        return [grads[0] * np.sign(saved) if needs(ctx, 0) and is_float(saved) else None]


class Reciprocal(NumpyKernel):
    op_type = "Reciprocal"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        with np.errstate(divide="ignore"):
            y = np.reciprocal(x)
        return [y], y

    def backward(self, ctx, saved, grads, attrs):
        return [np.negative(grads[0] * np.square(saved)) if needs(ctx, 0) else None]
