"""The ConvTranspose kernel: the adjoint of Conv (GEMM then col2im forward, im2col then GEMM
backward), over chunks of the batch."""
from __future__ import annotations

import numpy as np

from .....core.onnx_attributes import conv_transpose_windows
from ...kernel import NumpyKernel
from .._util import channel_sum, check_4d, cm, needs, pad_cm, unsupported
from .columns import col2im_add, im2col
from .geometry import kernel_geom
from .plan import batch_chunks


class ConvTranspose(NumpyKernel):
    """The adjoint of Conv: forward is Conv's data-backward (GEMM then col2im), backward is
    a Conv forward (im2col of dy then GEMM). W has shape (C, O/group, kh, kw)."""

    op_type = "ConvTranspose"

    def _geom(self, attrs, x_shape, w_shape, groups):
        op = self.op_type
        g = kernel_geom(op, attrs, w_shape)
        in_sp = x_shape[2:]
        g.pb, g.pe, g.out, _ = conv_transpose_windows(op, attrs, in_sp, g.k, g.s, g.d)
        if min(g.pb + g.pe) < 0:
            raise unsupported(op, "pads", g.pb + g.pe, "non-negative pads")
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
        for a, z in batch_chunks(n, o * kh * kw * h * wd * x.itemsize):
            xg = np.ascontiguousarray(xc[:, a:z]).reshape(groups, c // groups, -1)
            cols = np.matmul(wt, xg).reshape(o, kh, kw, z - a, h, wd)
            col2im_add(full[:, a:z], cols, kh, kw, g.d, g.s, h, wd)
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
        for a, z in batch_chunks(n, o * kh * kw * h * wd * x.itemsize):
            ln = (z - a) * h * wd
            cols = im2col(dyp[:, a:z], kh, kw, g.d, g.s, h, wd).reshape(groups, -1, ln)
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
