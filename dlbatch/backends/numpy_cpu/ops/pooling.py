"""MaxPool, AveragePool, GlobalAveragePool on channel-major (C, N, H, W) memory.

Windowed pools loop over kernel taps; each tap is a strided slice of the padded input, so every
step is one whole-array ufunc. MaxPool is separable (rows, then columns) and records the winning
tap of each pass, so backward needs neither the input nor a comparison pass.
"""
from __future__ import annotations

import numpy as np

from ..kernel import NumpyKernel
from ._util import check_4d, cm, cm_rows, int_list, needs, pad_cm, spatial_pads, tap, unsupported


def _geom(op, attrs, shape):
    k = int_list(attrs.get("kernel_shape"))
    if not k or len(k) != 2:
        raise unsupported(op, "kernel_shape", k, "two spatial sizes (2-D pooling)")
    s = int_list(attrs.get("strides")) or [1, 1]
    d = int_list(attrs.get("dilations")) or [1, 1]
    ceil = bool(int(attrs.get("ceil_mode", 0)))
    pb, pe, out = spatial_pads(op, attrs, shape[2:], k, s, d, ceil_mode=ceil)
    if min(pb + pe) < 0:
        raise unsupported(op, "pads", pb + pe, "non-negative pads")
    # padded extent: the declared pads, extended when ceil_mode windows run past the end
    hp = max(shape[2] + pb[0] + pe[0], (out[0] - 1) * s[0] + (k[0] - 1) * d[0] + 1)
    wp = max(shape[3] + pb[1] + pe[1], (out[1] - 1) * s[1] + (k[1] - 1) * d[1] + 1)
    return k, s, d, pb, pe, out, hp, wp


def _argmax_pass(src, k, d, s, n_out, axis):
    """Running max over k strided taps along `axis` (2 or 3) of `src`; returns the max and
    the winning tap (first maximum wins)."""
    def view(t):
        sl = [slice(None)] * 4
        sl[axis] = slice(t * d, t * d + s * (n_out - 1) + 1, s)
        return src[tuple(sl)]

    best = np.array(view(0), copy=True)
    at = np.uint8 if k < 256 else np.uint16
    arg = np.zeros(best.shape, dtype=at)
    m = np.empty(best.shape, dtype=bool)
    cand = np.empty(best.shape, dtype=at)
    for t in range(1, k):
        v = view(t)
        np.greater(v, best, out=m)
        np.maximum(best, v, out=best)
        # taps come in increasing order, so "last strict improvement" = max(arg, t * improved);
        # (masked copyto/where are several times slower than these two ufuncs)
        np.multiply(m, at(t), out=cand)
        np.maximum(arg, cand, out=arg)
    return best, arg


def _scatter_pass(g, arg, k, d, s, n_out, axis, out_shape):
    """Adjoint of _argmax_pass: route g to the winning tap of each output."""
    out = np.zeros(out_shape, dtype=g.dtype)
    tmp = np.empty(g.shape, dtype=g.dtype)
    for t in range(k):
        sl = [slice(None)] * 4
        sl[axis] = slice(t * d, t * d + s * (n_out - 1) + 1, s)
        np.multiply(g, arg == t, out=tmp)
        out[tuple(sl)] += tmp
    return out


class MaxPool(NumpyKernel):
    """Separable: a max over the kernel rows, then over the kernel columns, each recording its
    winning tap (uint8), so forward costs kh + kw passes instead of kh * kw and backward routes
    dy back through the two passes. Among equal maxima the first column (then first row)
    wins. Only the first output (Y) is produced."""

    op_type = "MaxPool"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        check_4d(self.op_type, x)
        if int(attrs.get("storage_order", 0)) != 0:
            raise unsupported(self.op_type, "storage_order", attrs["storage_order"], "0 (row major)")
        k, s, d, pb, pe, (ho, wo), hp, wp = _geom(self.op_type, attrs, x.shape)
        xp = pad_cm(cm(x), pb, pe, hp, wp, value=-np.inf)
        rows, arg_r = _argmax_pass(xp, k[0], d[0], s[0], ho, 2)
        y, arg_c = _argmax_pass(rows, k[1], d[1], s[1], wo, 3)
        return [cm(y)], (x.shape, arg_r, arg_c, (k, s, d, pb, ho, wo, hp, wp))

    def backward(self, ctx, saved, grads, attrs):
        if not needs(ctx, 0):
            return [None]
        shape, arg_r, arg_c, (k, s, d, pb, ho, wo, hp, wp) = saved
        n, c, h, w = shape
        g1 = _scatter_pass(cm(grads[0]), arg_c, k[1], d[1], s[1], wo, 3, arg_r.shape)
        dxp = _scatter_pass(g1, arg_r, k[0], d[0], s[0], ho, 2, (c, n, hp, wp))
        return [cm(dxp[:, :, pb[0]:pb[0] + h, pb[1]:pb[1] + w])]


class AveragePool(NumpyKernel):
    """count_include_pad=0 divides by the in-image part of each window; =1 by the part inside
    image + declared pads (windows that ceil_mode runs past the pads count only what they
    cover, as in PyTorch)."""

    op_type = "AveragePool"

    def _divisor(self, attrs, geom, shape, dtype):
        k, s, d, pb, pe, (ho, wo), hp, wp = geom
        h, w = shape[2:]
        inc = bool(int(attrs.get("count_include_pad", 0)))
        mask = np.zeros((1, 1, hp, wp), dtype=dtype)
        if inc:
            mask[:, :, :h + pb[0] + pe[0], :w + pb[1] + pe[1]] = 1
        else:
            mask[:, :, pb[0]:pb[0] + h, pb[1]:pb[1] + w] = 1
        cnt = np.zeros((1, 1, ho, wo), dtype=dtype)
        for i in range(k[0]):
            for j in range(k[1]):
                cnt += tap(mask, i, j, d, s, ho, wo)
        return (1 / cnt)[0, 0]

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        check_4d(self.op_type, x)
        geom = _geom(self.op_type, attrs, x.shape)
        k, s, d, pb, pe, (ho, wo), hp, wp = geom
        xp = pad_cm(cm(x), pb, pe, hp, wp)
        y = None
        for i in range(k[0]):
            for j in range(k[1]):
                v = tap(xp, i, j, d, s, ho, wo)
                if y is None:
                    y = np.array(v, copy=True)
                else:
                    y += v
        inv = self._divisor(attrs, geom, x.shape, x.dtype)
        y *= inv
        return [cm(y)], (x.shape, geom, inv)

    def backward(self, ctx, saved, grads, attrs):
        if not needs(ctx, 0):
            return [None]
        shape, geom, inv = saved
        k, s, d, pb, pe, (ho, wo), hp, wp = geom
        n, c, h, w = shape
        g = cm(grads[0]) * inv
        dxp = np.zeros((c, n, hp, wp), dtype=g.dtype)
        for i in range(k[0]):
            for j in range(k[1]):
                tap(dxp, i, j, d, s, ho, wo)[...] += g
        return [cm(dxp[:, :, pb[0]:pb[0] + h, pb[1]:pb[1] + w])]


class GlobalAveragePool(NumpyKernel):
    """Mean over all spatial axes, summed along whichever axis is contiguous in memory."""

    op_type = "GlobalAveragePool"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        n, c = x.shape[:2]
        sp = x.shape[2:]
        cnt = int(np.prod(sp)) if sp else 1
        t = x.dtype.type
        if x.flags.c_contiguous:
            y = x.reshape(n, c, -1).sum(axis=2) / t(cnt)
        else:
            y = (cm_rows(x).reshape(c, n, -1).sum(axis=2) / t(cnt)).T
        return [y.reshape((n, c) + (1,) * len(sp))], x.shape

    def backward(self, ctx, saved, grads, attrs):
        if not needs(ctx, 0):
            return [None]
        shape = saved
        n, c = shape[:2]
        cnt = int(np.prod(shape[2:])) if len(shape) > 2 else 1
        g = grads[0].reshape(n, c) / grads[0].dtype.type(cnt)
        # channel-major memory, matching what the spatial kernels produce
        out = np.empty((c, n, cnt), dtype=g.dtype)
        out[...] = g.T[:, :, None]
        return [cm(out.reshape((c, n) + tuple(shape[2:])))]

