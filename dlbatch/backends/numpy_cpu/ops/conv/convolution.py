"""The Conv kernel: groups == 1 through .gemm, grouped convolutions as a batched GEMM over
chunks of the batch, depthwise ones as per-tap broadcast multiplies."""
from __future__ import annotations

import numpy as np

from ...kernel import NumpyKernel
from .._util import check_4d, cm, needs, pad_cm, unsupported
from .columns import col2im_add, im2col
from .depthwise import depthwise_backward, depthwise_forward
from .geometry import conv_geom, is_pointwise
from .gemm import conv_backward, conv_forward
from . import kn2row
from .grouped import GROUP_LOOP_MAX, grouped_backward, grouped_forward
from .plan import batch_chunks


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
        g = conv_geom(self.op_type, attrs, x.shape, w.shape)
        ho, wo = g.out
        kh, kw = g.k
        xc = cm(x)
        if groups == c == o and w.shape[1] == 1 and not is_pointwise(g):
            y = depthwise_forward(xc, w, g)
        elif groups == 1:
            if kn2row.applies(x.shape, w.shape, g):
                return [cm(kn2row.kn2row_forward(xc, w, b, g))], (x, w, b is not None, groups, g)
            return [cm(conv_forward(x, w, b, g))], (x, w, b is not None, groups, g)
        elif groups <= GROUP_LOOP_MAX:
            return [cm(grouped_forward(xc, w, b, g, groups))], (x, w, b is not None, groups, g)
        else:
            xp = pad_cm(xc, g.pb, g.pe, g.hp, g.wp)
            wm = w.reshape(groups, o // groups, -1)
            parts = batch_chunks(n, c * kh * kw * ho * wo * x.itemsize)
            y = None if len(parts) == 1 else np.empty((o, n, ho, wo), dtype=x.dtype)
            for a, z in parts:
                cols = im2col(xp[:, a:z], kh, kw, g.d, g.s, ho, wo).reshape(groups, -1, (z - a) * ho * wo)
                yc = np.matmul(wm, cols).reshape(o, z - a, ho, wo)
                if y is None:
                    y = yc
                else:
                    y[:, a:z] = yc
        if b is not None:
            y += b.reshape(o, 1, 1, 1)
        return [cm(y)], (x, w, b is not None, groups, g)

    def backward(self, ctx, saved, grads, attrs):
        x, w, has_b, groups, g = saved
        dy = grads[0]
        n, c = x.shape[:2]
        o = w.shape[0]
        ho, wo = g.out
        kh, kw = g.k
        need_x, need_w = needs(ctx, 0), needs(ctx, 1)
        dyc = cm(dy)
        if not dyc.flags.c_contiguous:
            dyc = np.ascontiguousarray(dyc)  # (O, N, ho, wo)
        db = dyc.reshape(o, -1).sum(axis=1) if has_b and needs(ctx, 2) else None
        dx = dw = None
        xc = cm(x)
        if groups == c == o and w.shape[1] == 1 and not is_pointwise(g):
            dxc, dw = depthwise_backward(xc, w, dyc, g, need_x, need_w)
            dx = cm(dxc) if need_x else None
        elif groups == 1:
            dxc, dw = conv_backward(x, w, cm(dyc), g, need_x, need_w)
            dx = cm(dxc) if need_x else None
        elif groups <= GROUP_LOOP_MAX:
            dxc, dw = grouped_backward(xc, w, dyc, g, groups, need_x, need_w)
            dx = cm(dxc) if need_x else None
        else:
            xp = pad_cm(xc, g.pb, g.pe, g.hp, g.wp) if need_w else None
            dxp = np.zeros((c, n, g.hp, g.wp), dtype=x.dtype) if need_x else None
            wm = w.reshape(groups, o // groups, -1)
            dwm = np.zeros(wm.shape, dtype=w.dtype) if need_w else None
            for a, z in batch_chunks(n, c * kh * kw * ho * wo * x.itemsize):
                ln = (z - a) * ho * wo
                dyg = dyc[:, a:z].reshape(groups, o // groups, ln)
                if need_w:
                    cols = im2col(xp[:, a:z], kh, kw, g.d, g.s, ho, wo).reshape(groups, -1, ln)
                    dwm += np.matmul(dyg, cols.transpose(0, 2, 1))
                    del cols
                if need_x:
                    dcols = np.matmul(wm.transpose(0, 2, 1), dyg).reshape(c, kh, kw, z - a, ho, wo)
                    col2im_add(dxp[:, a:z], dcols, kh, kw, g.d, g.s, ho, wo)
            if need_w:
                dw = dwm.reshape(w.shape)
            if need_x:
                h, wd = x.shape[2:]
                dx = cm(dxp[:, :, g.pb[0]:g.pb[0] + h, g.pb[1]:g.pb[1] + wd])
        out = [dx if need_x else None, dw if need_w else None]
        if has_b:
            out.append(db)
        return out
