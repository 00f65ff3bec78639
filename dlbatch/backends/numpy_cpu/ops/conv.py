"""Conv and ConvTranspose (2-D spatial) as im2col + one GEMM, computed channel-major.

The padded input is (C, N, Hp, Wp); each kernel tap is a strided slice of it, so the column
matrix (C*kh*kw, N*Ho*Wo) is built with kh*kw slice copies and `W.reshape(O, -1) @ cols` lands
directly in channel-major output memory. Backward: dW = dy @ cols.T, dcols = W.T @ dy, col2im
adds the tap slices back. The batch is processed in chunks so the column matrix stays under
COLS_BUDGET bytes (peak memory), and backward recomputes the columns from the saved input
instead of keeping them (they are kh*kw times the input size).
"""
from __future__ import annotations

import numpy as np

from ..kernel import NumpyKernel
from ._util import (as_str, channel_blocks, check_4d, channel_sum, cm, int_list, needs, pad_cm, spatial_pads,
                    tap, unsupported)

COLS_BUDGET = 64 << 20  # bytes of im2col matrix per chunk


def _ints(attrs, name, default):
    v = int_list(attrs.get(name))
    return v if v else list(default)


def _chunks(n: int, per_sample_bytes: int):
    step = max(1, min(n, COLS_BUDGET // max(1, per_sample_bytes)))
    return [(a, min(n, a + step)) for a in range(0, n, step)]


def _im2col(xp, kh, kw, d, s, ho, wo):
    """(C, n, Hp, Wp) -> (C, kh, kw, n, ho, wo), one slice copy per tap."""
    c, n = xp.shape[:2]
    cols = np.empty((c, kh, kw, n, ho, wo), dtype=xp.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, i, j] = tap(xp, i, j, d, s, ho, wo)
    return cols


def _col2im_add(dst, cols, kh, kw, d, s, ho, wo):
    """Inverse of _im2col: add each tap's (C, n, ho, wo) block into padded `dst`."""
    for i in range(kh):
        for j in range(kw):
            tap(dst, i, j, d, s, ho, wo)[...] += cols[:, i, j]


class _Geom:
    __slots__ = ("k", "s", "d", "pb", "pe", "out", "hp", "wp")


def _conv_geom(op, attrs, x_shape, w_shape) -> _Geom:
    g = _Geom()
    g.k = _ints(attrs, "kernel_shape", w_shape[2:])
    if list(g.k) != list(w_shape[2:]):
        raise unsupported(op, "kernel_shape", g.k, f"the weight's spatial shape {list(w_shape[2:])}")
    g.s = _ints(attrs, "strides", (1, 1))
    g.d = _ints(attrs, "dilations", (1, 1))
    g.pb, g.pe, g.out = spatial_pads(op, attrs, x_shape[2:], g.k, g.s, g.d)
    if min(g.pb + g.pe) < 0:
        raise unsupported(op, "pads", g.pb + g.pe, "non-negative pads")
    g.hp = x_shape[2] + g.pb[0] + g.pe[0]
    g.wp = x_shape[3] + g.pb[1] + g.pe[1]
    return g


def _is_pointwise(g: _Geom) -> bool:
    return g.k == [1, 1] and g.s == [1, 1] and max(g.pb + g.pe) == 0


class Conv(NumpyKernel):
    """Saves the input (not the columns); groups use a batched GEMM, depthwise (groups == C ==
    O) a sum of per-tap broadcast multiplies (beats many tiny GEMMs), run over channel blocks
    that stay in cache."""

    op_type = "Conv"

    def forward(self, ctx, inputs, attrs):
        x, w = inputs[0], inputs[1]
        b = inputs[2] if len(inputs) > 2 else None
        check_4d(self.op_type, x)
        groups = int(attrs.get("group", 1))
        n, c = x.shape[:2]
        o = w.shape[0]
        if c % groups or o % groups or w.shape[1] * groups != c:
            raise unsupported(self.op_type, "group", groups,
                              f"a group count dividing C={c} and O={o} with W.shape[1]*group == C")
        g = _conv_geom(self.op_type, attrs, x.shape, w.shape)
        ho, wo = g.out
        kh, kw = g.k
        xc = cm(x)
        if groups == c == o and w.shape[1] == 1 and not _is_pointwise(g):
            y = self._depthwise(xc, w, g)
        elif _is_pointwise(g) and groups == 1:
            y = (w.reshape(o, c) @ np.ascontiguousarray(xc).reshape(c, -1)).reshape(o, n, ho, wo)
        else:
            xp = pad_cm(xc, g.pb, g.pe, g.hp, g.wp)
            wm = w.reshape(groups, o // groups, -1)
            parts = _chunks(n, c * kh * kw * ho * wo * x.itemsize)
            y = None if len(parts) == 1 else np.empty((o, n, ho, wo), dtype=x.dtype)
            for a, z in parts:
                cols = _im2col(xp[:, a:z], kh, kw, g.d, g.s, ho, wo).reshape(groups, -1, (z - a) * ho * wo)
                yc = np.matmul(wm, cols).reshape(o, z - a, ho, wo)
                if y is None:
                    y = yc
                else:
                    y[:, a:z] = yc
        if b is not None:
            y += b.reshape(o, 1, 1, 1)
        return [cm(y)], (x, w, b is not None, groups, g)

    @staticmethod
    def _depthwise(xc, w, g):
        ho, wo = g.out
        xp = pad_cm(xc, g.pb, g.pe, g.hp, g.wp)
        kh, kw = g.k
        c, n = xc.shape[:2]
        y = np.empty((c, n, ho, wo), dtype=xc.dtype)
        for a, z in channel_blocks(c, n * g.hp * g.wp):
            xb, yb = xp[a:z], y[a:z]
            tmp = np.empty_like(yb)
            for i in range(kh):
                for j in range(kw):
                    wt = w[a:z, 0, i, j].reshape(-1, 1, 1, 1)
                    if i == j == 0:
                        np.multiply(tap(xb, i, j, g.d, g.s, ho, wo), wt, out=yb)
                    else:
                        np.multiply(tap(xb, i, j, g.d, g.s, ho, wo), wt, out=tmp)
                        yb += tmp
        return y

    def backward(self, ctx, saved, grads, attrs):
        x, w, has_b, groups, g = saved
        dy = grads[0]
        n, c = x.shape[:2]
        o = w.shape[0]
        ho, wo = g.out
        kh, kw = g.k
        dyc = np.ascontiguousarray(cm(dy))  # (O, N, ho, wo)
        need_x, need_w = needs(ctx, 0), needs(ctx, 1)
        db = dyc.reshape(o, -1).sum(axis=1) if has_b and needs(ctx, 2) else None
        dx = dw = None
        xc = cm(x)
        if groups == c == o and w.shape[1] == 1 and not _is_pointwise(g):
            dx, dw = self._depthwise_backward(xc, w, dyc, g, need_x, need_w)
        elif _is_pointwise(g) and groups == 1:
            dy2 = dyc.reshape(o, -1)
            if need_w:
                dw = (dy2 @ np.ascontiguousarray(xc).reshape(c, -1).T).reshape(w.shape)
            if need_x:
                dx = cm((w.reshape(o, c).T @ dy2).reshape(c, n, *x.shape[2:]))
        else:
            xp = pad_cm(xc, g.pb, g.pe, g.hp, g.wp) if need_w else None
            dxp = np.zeros((c, n, g.hp, g.wp), dtype=x.dtype) if need_x else None
            wm = w.reshape(groups, o // groups, -1)
            dwm = np.zeros(wm.shape, dtype=w.dtype) if need_w else None
            for a, z in _chunks(n, c * kh * kw * ho * wo * x.itemsize):
                ln = (z - a) * ho * wo
                dyg = dyc[:, a:z].reshape(groups, o // groups, ln)
                if need_w:
                    cols = _im2col(xp[:, a:z], kh, kw, g.d, g.s, ho, wo).reshape(groups, -1, ln)
                    dwm += np.matmul(dyg, cols.transpose(0, 2, 1))
                    del cols
                if need_x:
                    dcols = np.matmul(wm.transpose(0, 2, 1), dyg).reshape(c, kh, kw, z - a, ho, wo)
                    _col2im_add(dxp[:, a:z], dcols, kh, kw, g.d, g.s, ho, wo)
            if need_w:
                dw = dwm.reshape(w.shape)
            if need_x:
                h, wd = x.shape[2:]
                dx = cm(dxp[:, :, g.pb[0]:g.pb[0] + h, g.pb[1]:g.pb[1] + wd])
        out = [dx if need_x else None, dw if need_w else None]
        if has_b:
            out.append(db)
        return out

    @staticmethod
    def _depthwise_backward(xc, w, dyc, g, need_x, need_w):
        ho, wo = g.out
        kh, kw = g.k
        c, n, h, wd = xc.shape
        xp = pad_cm(xc, g.pb, g.pe, g.hp, g.wp) if need_w else None
        dxp = np.zeros((c, n, g.hp, g.wp), dtype=xc.dtype) if need_x else None
        dw = np.empty(w.shape, dtype=w.dtype) if need_w else None
        for a, z in channel_blocks(c, n * g.hp * g.wp):
            dyb = dyc[a:z]
            tmp = np.empty_like(dyb)
            for i in range(kh):
                for j in range(kw):
                    if need_w:
                        np.multiply(dyb, tap(xp[a:z], i, j, g.d, g.s, ho, wo), out=tmp)
                        dw[a:z, 0, i, j] = tmp.reshape(z - a, -1).sum(axis=1)
                    if need_x:
                        np.multiply(dyb, w[a:z, 0, i, j].reshape(-1, 1, 1, 1), out=tmp)
                        tap(dxp[a:z], i, j, g.d, g.s, ho, wo)[...] += tmp
        dx = cm(dxp[:, :, g.pb[0]:g.pb[0] + h, g.pb[1]:g.pb[1] + wd]) if need_x else None
        return dx, dw


class ConvTranspose(NumpyKernel):
    """The adjoint of Conv: forward is Conv's data-backward (GEMM then col2im), backward is
    a Conv forward (im2col of dy then GEMM). W has shape (C, O/group, kh, kw)."""

    op_type = "ConvTranspose"

    def _geom(self, attrs, x_shape, w_shape, groups):
        op = self.op_type
        g = _Geom()
        g.k = _ints(attrs, "kernel_shape", w_shape[2:])
        if list(g.k) != list(w_shape[2:]):
            raise unsupported(op, "kernel_shape", g.k, f"the weight's spatial shape {list(w_shape[2:])}")
        g.s = _ints(attrs, "strides", (1, 1))
        g.d = _ints(attrs, "dilations", (1, 1))
        opad = _ints(attrs, "output_padding", (0, 0))
        in_sp = x_shape[2:]
        full = [g.s[i] * (in_sp[i] - 1) + opad[i] + (g.k[i] - 1) * g.d[i] + 1 for i in range(2)]
        out_shape = int_list(attrs.get("output_shape"))
        auto_pad = as_str(attrs.get("auto_pad"), "NOTSET")
        if auto_pad not in ("NOTSET", "", "VALID", "SAME_UPPER", "SAME_LOWER"):
            raise unsupported(op, "auto_pad", auto_pad, "NOTSET, VALID, SAME_UPPER, SAME_LOWER")
        if out_shape is None and auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            out_shape = [in_sp[i] * g.s[i] for i in range(2)]
        if out_shape is not None:
            out_shape = out_shape[-2:]
            g.pb, g.pe = [], []
            for i in range(2):
                total = full[i] - out_shape[i]
                if auto_pad == "SAME_UPPER":
                    g.pb.append(total // 2); g.pe.append(total - total // 2)
                else:
                    g.pb.append(total - total // 2); g.pe.append(total // 2)
        elif auto_pad == "VALID":
            g.pb, g.pe = [0, 0], [0, 0]
        else:
            pads = int_list(attrs.get("pads")) or [0, 0, 0, 0]
            g.pb, g.pe = pads[:2], pads[2:]
        if min(g.pb + g.pe) < 0:
            raise unsupported(op, "pads", g.pb + g.pe, "non-negative pads")
        g.out = [full[i] - g.pb[i] - g.pe[i] for i in range(2)]
        # the buffer the taps scatter into: covers every tap and the cropped output window
        g.hp = max(g.s[0] * (in_sp[0] - 1) + (g.k[0] - 1) * g.d[0] + 1, g.pb[0] + g.out[0])
        g.wp = max(g.s[1] * (in_sp[1] - 1) + (g.k[1] - 1) * g.d[1] + 1, g.pb[1] + g.out[1])
        return g

    def forward(self, ctx, inputs, attrs):
        x, w = inputs[0], inputs[1]
        b = inputs[2] if len(inputs) > 2 else None
        check_4d(self.op_type, x)
        groups = int(attrs.get("group", 1))
        n, c, h, wd = x.shape
        if w.shape[0] != c or c % groups:
            raise unsupported(self.op_type, "group", groups,
                              f"W.shape[0] == C={c} and a group count dividing C")
        o = w.shape[1] * groups
        g = self._geom(attrs, x.shape, w.shape, groups)
        kh, kw = g.k
        xc = cm(x)
        wt = w.reshape(groups, c // groups, -1).transpose(0, 2, 1)  # (g, Og*kk, Cg)
        full = np.zeros((o, n, g.hp, g.wp), dtype=x.dtype)
        for a, z in _chunks(n, o * kh * kw * h * wd * x.itemsize):
            xg = np.ascontiguousarray(xc[:, a:z]).reshape(groups, c // groups, -1)
            cols = np.matmul(wt, xg).reshape(o, kh, kw, z - a, h, wd)
            _col2im_add(full[:, a:z], cols, kh, kw, g.d, g.s, h, wd)
            del cols
        y = full[:, :, g.pb[0]:g.pb[0] + g.out[0], g.pb[1]:g.pb[1] + g.out[1]]
        if b is not None:
            y += b.reshape(o, 1, 1, 1)
        return [cm(y)], (x, w, b is not None, groups, g)

    def backward(self, ctx, saved, grads, attrs):
        x, w, has_b, groups, g = saved
        dy = grads[0]
        n, c, h, wd = x.shape
        o = w.shape[1] * groups
        kh, kw = g.k
        need_x, need_w = needs(ctx, 0), needs(ctx, 1)
        dyc = cm(dy)
        dyp = pad_cm(dyc, g.pb, [0, 0], g.hp, g.wp)
        if dyp is dyc:
            dyp = np.ascontiguousarray(dyc)
        wm = w.reshape(groups, c // groups, -1)  # (g, Cg, Og*kk)
        dx = np.empty((c, n, h, wd), dtype=x.dtype) if need_x else None
        dwm = np.zeros(wm.shape, dtype=w.dtype) if need_w else None
        xc = cm(x)
        for a, z in _chunks(n, o * kh * kw * h * wd * x.itemsize):
            ln = (z - a) * h * wd
            cols = _im2col(dyp[:, a:z], kh, kw, g.d, g.s, h, wd).reshape(groups, -1, ln)
            if need_x:
                dx[:, a:z] = np.matmul(wm, cols).reshape(c, z - a, h, wd)
            if need_w:
                xg = np.ascontiguousarray(xc[:, a:z]).reshape(groups, c // groups, ln)
                dwm += np.matmul(xg, cols.transpose(0, 2, 1))
            del cols
        out = [cm(dx) if need_x else None, dwm.reshape(w.shape) if need_w else None]
        if has_b:
            out.append(channel_sum(dy) if needs(ctx, 2) else None)
        return out
