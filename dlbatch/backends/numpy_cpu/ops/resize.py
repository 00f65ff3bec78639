"""Resize, separable: each resized axis is one 1-D operator applied along that axis.

nearest: a gather (np.take), or np.repeat when the index map is an integer upsampling;
linear: a small dense (out, in) interpolation matrix applied with matmul (BLAS, exact for the
two non-zeros per row). Backward applies the transposed operators (for `repeat`, a sum of
strided slices).
Coordinates follow the ONNX reference (edge clamping, output_width = scale * input_width).
"""
from __future__ import annotations

import numpy as np

from ....core.onnx_attributes import resize_axes, resize_operands, resize_shape, source_coordinates, text
from ..kernel import NumpyKernel
from ._util import needs, unsupported

# the coordinate_transformation_modes implemented here (not tf_crop_and_resize)
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
