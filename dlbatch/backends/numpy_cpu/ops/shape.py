"""Data movement: Concat, Flatten, Reshape, Transpose, Identity, Squeeze, Unsqueeze, Pad.
Forward returns views where numpy can; backward gradients may be views of dy (the program
only ever adds gradients out of place)."""
from __future__ import annotations

import numpy as np

from ....core.onnx_attributes import (concat_axis, flatten_axis, pad_spec, reshape_target, squeeze_axes,
                                      transpose_perm, unsqueeze_axes)
from ..kernel import NumpyKernel
from ._util import is_float, needs


class Identity(NumpyKernel):
    op_type = "Identity"

    def forward(self, ctx, inputs, attrs):
        return [inputs[0]], None

    def backward(self, ctx, saved, grads, attrs):
        return [grads[0] if needs(ctx, 0) else None]


class Concat(NumpyKernel):
    op_type = "Concat"

    def forward(self, ctx, inputs, attrs):
        xs = [v for v in inputs if v is not None]
        axis = concat_axis(ctx.opset, attrs, xs[0].ndim)
        return [np.concatenate(xs, axis=axis)], (axis, [v.shape[axis] if v is not None else None for v in inputs],
                                                    [is_float(v) for v in inputs])

    def backward(self, ctx, saved, grads, attrs):
        axis, sizes, floats = saved
        dy = grads[0]
        out, start = [], 0
        for i, (sz, f) in enumerate(zip(sizes, floats)):
            if sz is None:
                out.append(None)
                continue
            sl = [slice(None)] * dy.ndim
            sl[axis] = slice(start, start + sz)
            out.append(dy[tuple(sl)] if needs(ctx, i) and f else None)
            start += sz
        return out


class Flatten(NumpyKernel):
    op_type = "Flatten"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        axis = flatten_axis(attrs, x.ndim)
        lead = int(np.prod(x.shape[:axis])) if axis else 1
        return [x.reshape(lead, -1) if x.size else x.reshape(lead, int(np.prod(x.shape[axis:])))], x.shape

    def backward(self, ctx, saved, grads, attrs):
        return [grads[0].reshape(saved) if needs(ctx, 0) else None]


class Reshape(NumpyKernel):
    """0 copies the input dimension (unless allowzero=1), -1 is inferred."""

    op_type = "Reshape"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        shape = reshape_target(ctx.opset, attrs, inputs, x.shape)
        return [x.reshape(shape)], x.shape

    def backward(self, ctx, saved, grads, attrs):
        return [grads[0].reshape(saved) if needs(ctx, 0) else None, None]


class Transpose(NumpyKernel):
    op_type = "Transpose"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        perm = transpose_perm(attrs, x.ndim)
        return [x.transpose(perm)], perm

    def backward(self, ctx, saved, grads, attrs):
        return [grads[0].transpose(np.argsort(saved)) if needs(ctx, 0) else None]


class Squeeze(NumpyKernel):
    """axes: attribute before opset 13, optional input from 13; absent = every size-1 axis."""

    op_type = "Squeeze"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        axes = squeeze_axes(ctx.opset, attrs, inputs, x.shape)
        return [np.squeeze(x, axis=tuple(axes))], x.shape

    def backward(self, ctx, saved, grads, attrs):
        return [grads[0].reshape(saved) if needs(ctx, 0) else None, None]


class Unsqueeze(NumpyKernel):
    """axes: attribute before opset 13, input from 13; negative axes count in the output."""

    op_type = "Unsqueeze"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        axes = unsqueeze_axes(ctx.opset, attrs, inputs, x.ndim)
        return [np.expand_dims(x, tuple(axes))], x.shape

    def backward(self, ctx, saved, grads, attrs):
        return [grads[0].reshape(saved) if needs(ctx, 0) else None, None]


class Pad(NumpyKernel):
    """Modes constant, reflect, edge (and wrap); negative pads crop (operands: see
    core.onnx_attributes.pad_spec). Backward folds every padded
    position back onto the source element it copies, via np.pad of an index ramp."""

    op_type = "Pad"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        mode, pb, pe, value = pad_spec(ctx.opset, attrs, inputs, x.ndim)
        # crop first (negative pads), then pad
        crop = tuple(slice(max(0, -b), x.shape[i] - max(0, -e)) for i, (b, e) in enumerate(zip(pb, pe)))
        xc = x[crop]
        widths = [(max(0, b), max(0, e)) for b, e in zip(pb, pe)]
        if mode == "constant":
            y = np.pad(xc, widths, mode="constant", constant_values=np.asarray(value, dtype=x.dtype))
        else:
            y = np.pad(xc, widths, mode=mode)
        return [y], (x.shape, crop, widths, mode)

    def backward(self, ctx, saved, grads, attrs):
        out = [None] * 4
        if not needs(ctx, 0):
            return out
        shape, crop, widths, mode = saved
        g = grads[0]
        for ax, (b, e) in enumerate(widths):
            if b == 0 and e == 0:
                continue
            n = g.shape[ax] - b - e
            if mode == "constant":
                sl = [slice(None)] * g.ndim
                sl[ax] = slice(b, b + n)
                g = g[tuple(sl)]
                continue
            src = np.pad(np.arange(n), (b, e), mode=mode)
            gm = np.moveaxis(g, ax, 0)
            acc = np.array(gm[b:b + n], copy=True)
            for pos in list(range(b)) + list(range(b + n, b + n + e)):
                acc[src[pos]] += gm[pos]
            g = np.moveaxis(acc, 0, ax)
        if any(s != slice(0, d) for s, d in zip(crop, shape)):
            full = np.zeros(shape, dtype=g.dtype)
            full[crop] = g
            g = full
        out[0] = g
        return out
