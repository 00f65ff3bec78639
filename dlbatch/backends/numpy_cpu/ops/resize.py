"""Resize, separable: each resized axis is one 1-D operator applied along that axis.

nearest: a gather (np.take), or np.repeat when the index map is an integer upsampling;
linear: a small dense (out, in) interpolation matrix applied with matmul (BLAS, exact for the
two non-zeros per row). Backward applies the transposed operators (for `repeat`, a sum of
strided slices).
Coordinates follow the ONNX reference (edge clamping, output_width = scale * input_width).

4-D inputs resized along H and W only run channel-major (the backend's layout, kept for the
output) over blocks of channels on the kernel threads: W first as one GEMM (or copy) over all
rows of the block, then H as a batched GEMM (or row copies) written straight into the output.
"""
from __future__ import annotations

import numpy as np

from ....core.onnx_attributes import resize_axes, resize_operands, resize_shape, source_coordinates, text
from .. import buffers, parallel
from ..kernel import NumpyKernel
from ._util import cm, needs, row_blocks, scratch, unsupported

# the coordinate_transformation_modes implemented here (not tf_crop_and_resize)
CHANNEL_MAJOR = True  # H/W-only resizes of 4-D inputs: the channel-major blocked path

_CTM = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "half_pixel_symmetric")


def _nearest_index(x, mode, in_n):
    if mode == "round_prefer_floor":
        i = np.ceil(x - 0.5)
    elif mode == "round_prefer_ceil":
        i = np.floor(x + 0.5)
    elif mode == "floor":
        i = np.floor(x)
    else:
        i = np.ceil(x)
    return np.clip(i, 0, in_n - 1).astype(np.intp)


def _linear_matrix(x, in_n, dtype):
    x = np.clip(x, 0, in_n - 1)
    i0 = np.floor(x).astype(np.intp)
    i1 = np.minimum(i0 + 1, in_n - 1)
    w = x - i0
    a = np.zeros((len(x), in_n))
    rows = np.arange(len(x))
    np.add.at(a, (rows, i0), 1 - w)
    np.add.at(a, (rows, i1), w)
    return a.astype(dtype)


def _apply(a, v, axis):
    """Apply the (out, in) matrix `a` along `axis` of v."""
    if axis == v.ndim - 1:
        return v @ a.T
    if axis == v.ndim - 2:
        return np.matmul(a, v)
    return np.moveaxis(np.tensordot(a, v, axes=([1], [axis])), 0, axis)


def _spatial_only(steps, ndim) -> bool:
    return ndim == 4 and bool(steps) and all(a in (2, 3) for a, _, _ in steps)


def _one_hot(idx, n_in, dtype):
    m = np.zeros((len(idx), n_in), dtype=dtype)
    m[np.arange(len(idx)), idx] = 1
    return m


def _axis_forward(kind, data, v, out, axis):
    """Resize axis -1 or -2 (`axis`) of the contiguous array v into out."""
    if kind == "repeat":
        if axis == -1:
            out.reshape(out.shape[:-1] + (v.shape[-1], data))[...] = v[..., None]
        else:
            out.reshape(out.shape[:-2] + (v.shape[-2], data, v.shape[-1]))[...] = v[..., None, :]
    elif kind == "take":
        np.take(v, data, axis=axis, out=out)
    elif axis == -1:
        np.matmul(v, data.T, out=out)
    else:
        np.matmul(data, v, out=out)


def _axis_backward(kind, data, g, out, axis):
    """The adjoint of _axis_forward: g (n_out along `axis`) -> out (n_in along `axis`)."""
    if kind == "repeat":
        sl = [slice(None)] * g.ndim
        sl[axis] = slice(0, None, data)
        np.copyto(out, g[tuple(sl)])
        for r in range(1, data):
            sl[axis] = slice(r, None, data)
            out += g[tuple(sl)]
        return
    m = _one_hot(data, out.shape[axis], g.dtype) if kind == "take" else data
    if axis == -1:
        np.matmul(g, m, out=out)
    else:
        np.matmul(m.T, g, out=out)


def _channel_major_forward(x, steps, out_shape):
    """H/W resize of channel-major x; returns the logical (N, C, Ho, Wo) channel-major result."""
    n, c, h, w = x.shape
    ho, wo = out_shape[2:]
    xc = cm(x)
    if not xc.flags.c_contiguous:
        xc = np.ascontiguousarray(xc)
    y = buffers.empty((c, n, ho, wo), x.dtype)
    by_axis = {a: (kind, data) for a, kind, data in steps}

    def block(r):
        a, z = r
        rows = (z - a) * n
        v = xc[a:z].reshape(rows * h, w)
        if 3 in by_axis:
            t = scratch("rs_w", (rows * h, wo), x.dtype)
            _axis_forward(*by_axis[3], v, t, -1)
        else:
            t = v
        t = t.reshape(rows, h, wo)
        dst = y[a:z].reshape(rows, ho, wo)
        if 2 in by_axis:
            _axis_forward(*by_axis[2], t, dst, -2)
        else:
            np.copyto(dst, t)

    parallel.run(block, row_blocks(c, n * max(h * w, ho * wo)))
    return cm(y)


def _channel_major_backward(g, steps, in_shape):
    n, c, h, w = in_shape
    ho, wo = g.shape[2:]
    gc = cm(g)
    if not gc.flags.c_contiguous:
        gc = np.ascontiguousarray(gc)
    dx = buffers.empty((c, n, h, w), g.dtype)
    by_axis = {a: (kind, data) for a, kind, data in steps}

    def block(r):
        a, z = r
        rows = (z - a) * n
        v = gc[a:z].reshape(rows, ho, wo)
        if 2 in by_axis:
            t = scratch("rs_h", (rows, h, wo), g.dtype)
            _axis_backward(*by_axis[2], v, t, -2)
        else:
            t = v
        dst = dx[a:z].reshape(rows * h, w)
        if 3 in by_axis:
            _axis_backward(*by_axis[3], t.reshape(rows * h, wo), dst, -1)
        else:
            np.copyto(dst, t.reshape(rows * h, w))

    parallel.run(block, row_blocks(c, n * max(h * w, ho * wo)))
    return cm(dx)


class Resize(NumpyKernel):
    """Modes nearest and linear; coordinate modes half_pixel, pytorch_half_pixel,
    align_corners, asymmetric, half_pixel_symmetric. Opset 10 (inputs X, scales) uses
    asymmetric coordinates and floor rounding, as its Upsample ancestor did."""

    op_type = "Resize"

    def _plan(self, ctx, inputs, attrs, x):
        op = self.op_type
        mode = text(attrs.get("mode"), "nearest")
        if mode not in ("nearest", "linear"):
            raise unsupported(op, "mode", mode, "nearest, linear")
        operands = resize_operands(ctx.opset, attrs, inputs)
        ctm, nmode = operands.coordinate_mode, operands.nearest_mode
        if ctm not in _CTM:
            raise unsupported(op, "coordinate_transformation_mode", ctm, ", ".join(_CTM))
        if int(attrs.get("antialias", 0)):
            raise unsupported(op, "antialias", 1, "0")
        policy = text(attrs.get("keep_aspect_ratio_policy"), "stretch")
        if policy != "stretch":
            raise unsupported(op, "keep_aspect_ratio_policy", policy, "stretch")
        nd = x.ndim
        scale, out = resize_shape(x.shape, resize_axes(attrs, nd), operands.scales, operands.sizes)
        steps = []
        for a in range(nd):
            n_in, n_out = x.shape[a], out[a]
            if n_in == n_out and scale[a] == 1.0:
                continue
            src = source_coordinates(ctm, np.arange(n_out, dtype=np.float64), scale[a], n_in, n_out)
            if mode == "nearest":
                idx = _nearest_index(src, nmode, n_in)
                f = n_out // n_in if n_in and n_out % n_in == 0 else 0
                if f >= 1 and np.array_equal(idx, np.arange(n_out) // f):
                    steps.append((a, "repeat", f))
                else:
                    steps.append((a, "take", idx))
            else:
                steps.append((a, "mat", _linear_matrix(src, n_in, x.dtype)))
        return steps

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        steps = self._plan(ctx, inputs, attrs, x)
        if _spatial_only(steps, x.ndim) and CHANNEL_MAJOR:
            out_shape = list(x.shape)
            for a, kind, data in steps:
                out_shape[a] = x.shape[a] * data if kind == "repeat" else len(data)
            return [_channel_major_forward(x, steps, out_shape)], (x.shape, steps)
        y = x
        for a, kind, data in steps:
            if kind == "repeat":
                y = np.repeat(y, data, axis=a) if data > 1 else y
            elif kind == "take":
                y = np.take(y, data, axis=a)
            else:
                y = _apply(data, y, a)
        if y is x:
            y = x.copy()
        return [y], (x.shape, steps)

    def backward(self, ctx, saved, grads, attrs):
        out = [None] * 4
        if not needs(ctx, 0):
            return out
        shape, steps = saved
        g = grads[0]
        if _spatial_only(steps, len(shape)) and CHANNEL_MAJOR:
            out[0] = _channel_major_backward(g, steps, shape)
            return out
        for a, kind, data in reversed(steps):
            if kind == "repeat":
                if data > 1:  # sum of `data` strided slices: much faster than a reshape-sum
                    sl = [slice(None)] * g.ndim
                    sl[a] = slice(0, None, data)
                    acc = np.array(g[tuple(sl)], copy=True)
                    for r in range(1, data):
                        sl[a] = slice(r, None, data)
                        acc += g[tuple(sl)]
                    g = acc
            elif kind == "take":
                m = np.zeros((len(data), shape[a]), dtype=g.dtype)
                m[np.arange(len(data)), data] = 1
                g = _apply(m.T, g, a)
            else:
                g = _apply(data.T, g, a)
        out[0] = g
        return out
