"""MaxPool, AveragePool, GlobalAveragePool on channel-major (C, N, H, W) memory.

Windowed pools loop over kernel taps; each tap is a strided slice of the padded input, so every
step is one whole-array ufunc. MaxPool is separable (rows, then columns) and records the winning
tap of each pass, so backward needs neither the input nor a comparison pass.
"""
from __future__ import annotations

import numpy as np

from ....core.errors import DLPluginError
from ....core.onnx_attributes import pool_kernel_shape, sliding_windows, spatial_ints
from .. import buffers, parallel
from ..kernel import NumpyKernel
from ._util import check_4d, cm, cm_rows, needs, pad_cm, scratch, tap, tap_range, unsupported


def _geom(op, attrs, shape):
    k = pool_kernel_shape(op, attrs)
    if len(k) != 2:
        raise unsupported(op, "kernel_shape", k, "two spatial sizes (2-D pooling)")
    s = spatial_ints(op, attrs, "strides", 2, 1)
    d = spatial_ints(op, attrs, "dilations", 2, 1)
    ceil = bool(int(attrs.get("ceil_mode", 0)))
    pb, pe, out = sliding_windows(op, attrs, shape[2:], k, s, d, ceil)
    if min(pb + pe) < 0:
        raise unsupported(op, "pads", pb + pe, "non-negative pads")
    # padded extent: the declared pads, extended when ceil_mode windows run past the end
    hp = max(shape[2] + pb[0] + pe[0], (out[0] - 1) * s[0] + (k[0] - 1) * d[0] + 1)
    wp = max(shape[3] + pb[1] + pe[1], (out[1] - 1) * s[1] + (k[1] - 1) * d[1] + 1)
    return k, s, d, pb, pe, out, hp, wp


def _view(src, t, d, s, n_out, axis):
    sl = [slice(None)] * 4
    sl[axis] = slice(t * d, t * d + s * (n_out - 1) + 1, s)
    return src[tuple(sl)]


def _argmax_pass(src, k, d, s, n_out, axis, best, arg):
    """Running max over k strided taps along `axis` (2 or 3) of `src` into `best`, the
    winning tap (first maximum wins) into `arg` (uint8/uint16)."""
    at = arg.dtype.type
    np.copyto(best, _view(src, 0, d, s, n_out, axis))
    arg.fill(0)
    m = scratch("mp_m", best.shape, bool)
    cand = scratch("mp_cand", best.shape, arg.dtype)
    for t in range(1, k):
        v = _view(src, t, d, s, n_out, axis)
        np.greater(v, best, out=m)
        np.maximum(best, v, out=best)
        # taps come in increasing order, so "last strict improvement" = max(arg, t * improved);
        # (masked copyto/where are several times slower than these two ufuncs)
        np.multiply(m, at(t), out=cand)
        np.maximum(arg, cand, out=arg)


def _scatter_pass(g, arg, k, d, s, n_out, axis, out):
    """Adjoint of _argmax_pass: route g to the winning tap of each output, into zeroed `out`."""
    tmp = scratch("mp_tmp", g.shape, g.dtype)
    for t in range(k):
        np.multiply(g, arg == t, out=tmp)
        _view(out, t, d, s, n_out, axis)[...] += tmp


def pool_geometry(attrs, shape):
    """The MaxPool geometry tuple for an (N, C, H, W) input (validates the attributes)."""
    if int(attrs.get("storage_order", 0)) != 0:
        raise unsupported("MaxPool", "storage_order", attrs["storage_order"], "0 (row major)")
    return _geom("MaxPool", attrs, shape)


def _max_pass(src, k, s, d, pb, n_out, axis, out) -> None:
    """out = the maximum over k strided taps along `axis` (2 or 3) of unpadded `src`, each tap
    only where it reads inside src (padding counts as -inf, so it is skipped, not copied in).
    Two taps that cover every output start it with one np.maximum; with none, -inf does."""
    n_in = src.shape[axis]
    full, part = [], []
    for t in range(k):
        lo, hi, off = tap_range(n_out, n_in, t, s, d, pb)
        if hi > lo:
            sl = [slice(None)] * 4
            sl[axis] = slice(lo * s + off, (hi - 1) * s + off + 1, s)
            (full if (lo, hi) == (0, n_out) else part).append((lo, hi, src[tuple(sl)]))
    if len(full) >= 2:
        np.maximum(full[0][2], full[1][2], out=out)
        rest = full[2:] + part
    elif full:
        np.copyto(out, full[0][2])
        rest = part
    else:
        out.fill(-np.inf)
        rest = part
    for lo, hi, v in rest:
        sl = [slice(None)] * 4
        sl[axis] = slice(lo, hi)
        dst = out[tuple(sl)]
        np.maximum(dst, v, out=dst)


def max_only(xb, geom, out):
    """Max pooling of a channel-major block (c, n, H, W) into `out` (c, n, ho, wo): separable
    maxima (rows, then columns) straight from the unpadded block, no winner tracking. The row
    maxima come from per-thread scratch."""
    k, s, d, pb, pe, (ho, wo), hp, wp = geom
    c, n, h, w = xb.shape
    rows = scratch("mp_rows", (c, n, ho, w), xb.dtype)
    _max_pass(xb, k[0], s[0], d[0], pb[0], ho, 2, rows)
    _max_pass(rows, k[1], s[1], d[1], pb[1], wo, 3, out)


def is_2x2(geom, shape) -> bool:
    """Whether a MaxPool geometry is the 2x2 window with stride 2 tiling the input exactly."""
    k, s, d, pb, pe, (ho, wo), hp, wp = geom
    return (k == [2, 2] and s == [2, 2] and d == [1, 1] and max(pb + pe) == 0
            and shape[2] == 2 * ho and shape[3] == 2 * wo)


def max2x2_forward(xb, rmask, cmask, out) -> None:
    """2x2/2 max pooling of a channel-major block (c, n, 2*ho, 2*wo) into `out` (c, n, ho, wo):
    a max over row pairs (winner per column into rmask, True = bottom), then over column pairs
    (cmask, True = right). Ties go to the top row, then the left column."""
    c, n, h, w = xb.shape
    ho, wo = h // 2, w // 2
    top, bot = _view(xb, 0, 1, 2, ho, 2), _view(xb, 1, 1, 2, ho, 2)
    rows = scratch("mp_rows", (c, n, ho, w), xb.dtype)
    np.greater(bot, top, out=rmask)
    np.maximum(top, bot, out=rows)
    left, right = _view(rows, 0, 1, 2, wo, 3), _view(rows, 1, 1, 2, wo, 3)
    np.greater(right, left, out=cmask)
    np.maximum(left, right, out=out)


def max2x2_backward(g, rmask, cmask, out) -> None:
    """Adjoint of max2x2_forward: g (c, n, ho, wo) routed to each window's winner in `out`
    (c, n, 2*ho, 2*wo), zeros elsewhere (every element of `out` is written)."""
    c, n, ho, wo = g.shape
    gr = scratch("mp_gr", (c, n, ho, 2 * wo), g.dtype)
    gl, grr = _view(gr, 0, 1, 2, wo, 3), _view(gr, 1, 1, 2, wo, 3)
    np.multiply(g, cmask, out=grr)
    np.subtract(g, grr, out=gl)  # exact: g - g*1 = 0, g - g*0 = g
    top, bot = _view(out, 0, 1, 2, ho, 2), _view(out, 1, 1, 2, ho, 2)
    np.multiply(gr, rmask, out=bot)
    np.subtract(gr, bot, out=top)


def _pool_blocks(c, per_channel):
    from ._util import row_blocks
    return row_blocks(c, per_channel)


class MaxPool(NumpyKernel):
    """Channel blocks on the kernel threads. 2x2 windows with stride 2 (no padding, even
    sizes) take a max over row pairs (contiguous rows), then over column pairs, keeping one
    winner mask per pass; other windows are
    separable: a max over the kernel rows, then over the kernel columns, each recording its
    winning tap (uint8), so forward costs kh + kw passes instead of kh * kw and backward routes
    dy back through the two passes. Among equal maxima the first row (per column), then the
    first column wins. Only the first output (Y) is produced."""

    op_type = "MaxPool"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        check_4d(self.op_type, x)
        if int(attrs.get("storage_order", 0)) != 0:
            raise unsupported(self.op_type, "storage_order", attrs["storage_order"], "0 (row major)")
        geom = _geom(self.op_type, attrs, x.shape)
        k, s, d, pb, pe, (ho, wo), hp, wp = geom
        n, c, h, w = x.shape
        xc = cm(x)
        y = buffers.empty((c, n, ho, wo), x.dtype)
        if is_2x2(geom, x.shape) and needs(ctx, 0):
            rmask = buffers.empty((c, n, ho, w), bool)  # bottom row wins (per column)
            cmask = buffers.empty((c, n, ho, wo), bool)  # right column wins
            parallel.run(lambda r: max2x2_forward(xc[r[0]:r[1]], rmask[r[0]:r[1]], cmask[r[0]:r[1]],
                                                  y[r[0]:r[1]]), _pool_blocks(c, n * h * w))
            return [cm(y)], ("2x2", x.shape, rmask, cmask)
        if not needs(ctx, 0):
            # no gradient will be routed back: maxima only, no winner tracking
            parallel.run(lambda r: max_only(xc[r[0]:r[1]], geom, y[r[0]:r[1]]), _pool_blocks(c, n * hp * wp))
            return [cm(y)], ("none", x.shape)
        at = np.uint8 if max(k) < 256 else np.uint16
        arg_r = buffers.empty((c, n, ho, wp), at)
        arg_c = buffers.empty((c, n, ho, wo), at)

        def block(r):
            a, z = r
            xb = xc[a:z]
            xp = xb
            if max(pb + pe) > 0 or hp != h or wp != w:
                xp = scratch("mp_pad", (z - a, n, hp, wp), x.dtype)
                xp.fill(-np.inf)
                xp[:, :, pb[0]:pb[0] + h, pb[1]:pb[1] + w] = xb
            rows = scratch("mp_rows", (z - a, n, ho, wp), x.dtype)
            _argmax_pass(xp, k[0], d[0], s[0], ho, 2, rows, arg_r[a:z])
            _argmax_pass(rows, k[1], d[1], s[1], wo, 3, y[a:z], arg_c[a:z])

        parallel.run(block, _pool_blocks(c, n * hp * wp))
        return [cm(y)], ("sep", x.shape, arg_r, arg_c, geom)

    def backward(self, ctx, saved, grads, attrs):
        if not needs(ctx, 0):
            return [None]
        n, c, h, w = saved[1]
        if saved[0] == "none":
            raise DLPluginError("MaxPool: no backward for a forward whose ctx.needs_input_grad was False")
        dyc = cm(grads[0])
        if saved[0] == "2x2":
            rmask, cmask = saved[2], saved[3]
            dx = buffers.empty((c, n, h, w), dyc.dtype)

            parallel.run(lambda r: max2x2_backward(dyc[r[0]:r[1]], rmask[r[0]:r[1]], cmask[r[0]:r[1]],
                                                   dx[r[0]:r[1]]), _pool_blocks(c, n * h * w))
            return [cm(dx)]
        _, shape, arg_r, arg_c, (k, s, d, pb, pe, (ho, wo), hp, wp) = saved
        dx = buffers.empty((c, n, h, w), dyc.dtype)

        def block(r):
            a, z = r
            g1 = scratch("mp_g1", (z - a, n, ho, wp), dyc.dtype)
            g1.fill(0)
            _scatter_pass(dyc[a:z], arg_c[a:z], k[1], d[1], s[1], wo, 3, g1)
            dxp = scratch("mp_dxp", (z - a, n, hp, wp), dyc.dtype)
            dxp.fill(0)
            _scatter_pass(g1, arg_r[a:z], k[0], d[0], s[0], ho, 2, dxp)
            dx[a:z] = dxp[:, :, pb[0]:pb[0] + h, pb[1]:pb[1] + w]

        parallel.run(block, _pool_blocks(c, n * hp * wp))
        return [cm(dx)]


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

