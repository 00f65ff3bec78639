"""LayerNormalization and InstanceNormalization (what torch exports for LayerNorm, and for
GroupNorm as Reshape -> InstanceNormalization -> Reshape -> Mul -> Add).

Both normalise rows of a 2-D view: LayerNormalization the trailing axes from `axis` on (rows
= the leading axes), InstanceNormalization the spatial axes of each (sample, channel). The
statistics are two-pass (mean, then the mean of squared deviations) along the contiguous last
axis, so numpy sums pairwise and float32 stays accurate. Backward is the usual normalisation
gradient over each row, from the saved x_hat and 1/std:

    dx = inv * (d - mean(d) - x_hat * mean(d * x_hat)),   d = dy * scale
"""
from __future__ import annotations

import numpy as np

from ....core.errors import DLPluginError
from ....core.onnx_attributes.normalization import instance_norm_epsilon, layer_norm_spec
from ..kernel import NumpyKernel
from ._util import is_float, needs, unbroadcast


def _row_stats(rows: np.ndarray, eps: float):
    """(x_hat, mean, 1/std) of a (R, D) array, row by row."""
    dt = rows.dtype.type
    d = rows.shape[1]
    mean = rows.sum(axis=1, keepdims=True) / dt(d)
    xc = rows - mean
    var = np.vecdot(xc, xc)[:, None] / dt(d)
    inv = (dt(1) / np.sqrt(var + dt(eps))).astype(rows.dtype, copy=False)
    xc *= inv
    return xc, mean, inv


def _row_grad(d: np.ndarray, xhat: np.ndarray, inv: np.ndarray) -> np.ndarray:
    """Gradient of x_hat = (x - mean) * inv w.r.t. x, row by row, given d = dL/dx_hat."""
    dt = d.dtype.type
    n = d.shape[1]
    m1 = d.sum(axis=1, keepdims=True) / dt(n)
    m2 = np.vecdot(d, xhat)[:, None] / dt(n)
    dx = d - m1
    dx -= xhat * m2
    dx *= inv
    return dx


class LayerNormalization(NumpyKernel):
    """Y = x_hat * Scale (+ B) over axes axis..rank-1; Scale and B broadcast to those axes.
    The optional Mean and InvStdDev outputs are computed (keepdims shape) but carry no
    gradient: exporters never feed them to the rest of the network."""

    op_type = "LayerNormalization"

    def forward(self, ctx, inputs, attrs):
        x, scale = inputs[0], inputs[1]
        bias = inputs[2] if len(inputs) > 2 else None
        axis, eps = layer_norm_spec(attrs, x.ndim)
        lead = x.shape[:axis]
        rows = x.reshape(int(np.prod(lead, dtype=np.int64)), -1)
        xhat, mean, inv = _row_stats(rows, eps)
        xhat = xhat.reshape(x.shape)
        y = xhat * scale.astype(x.dtype, copy=False)
        if bias is not None:
            y += bias.astype(x.dtype, copy=False)
        kshape = lead + (1,) * (x.ndim - axis)
        outs = [y, mean.reshape(kshape), inv.reshape(kshape)]
        saved = (xhat, inv, scale, None if bias is None else bias.shape, is_float(scale), is_float(bias))
        return outs, saved

    def backward(self, ctx, saved, grads, attrs):
        xhat, inv, scale, bshape, fs, fb = saved
        if any(g is not None for g in grads[1:]):
            raise DLPluginError("LayerNormalization: gradients through the Mean/InvStdDev outputs are not "
                                "supported by the numpy backend; use only output Y in the trained network")
        dy = grads[0]
        out = [None, None, None]
        if needs(ctx, 1) and fs:
            out[1] = unbroadcast(dy * xhat, scale.shape).astype(scale.dtype, copy=False)
        if bshape is not None and needs(ctx, 2) and fb:
            out[2] = unbroadcast(dy, bshape).astype(dy.dtype, copy=False)
        if needs(ctx, 0):
            d = dy * scale.astype(dy.dtype, copy=False)
            rows = inv.shape[0]
            dx = _row_grad(d.reshape(rows, -1), xhat.reshape(rows, -1), inv)
            out[0] = dx.reshape(xhat.shape)
        return out


class InstanceNormalization(NumpyKernel):
    """Per (sample, channel) statistics over the spatial axes; scale and B are per channel."""

    op_type = "InstanceNormalization"

    def forward(self, ctx, inputs, attrs):
        x, scale, bias = inputs[0], inputs[1], inputs[2]
        eps = instance_norm_epsilon(attrs, x.ndim)
        n, c = x.shape[0], x.shape[1]
        if scale.shape != (c,) or bias.shape != (c,):
            raise DLPluginError(f"InstanceNormalization: scale {scale.shape} and B {bias.shape} must both have "
                                f"shape ({c},), one value per channel of the input {x.shape}")
        xhat, _, inv = _row_stats(x.reshape(n * c, -1), eps)
        xhat = xhat.reshape(x.shape)
        cshape = (1, c) + (1,) * (x.ndim - 2)
        y = xhat * scale.astype(x.dtype, copy=False).reshape(cshape)
        y += bias.astype(x.dtype, copy=False).reshape(cshape)
        return [y], (xhat, inv, scale)

    def backward(self, ctx, saved, grads, attrs):
        xhat, inv, scale = saved
        dy = grads[0]
        n, c = xhat.shape[0], xhat.shape[1]
        out = [None, None, None]
        if needs(ctx, 1) and is_float(scale):
            out[1] = np.vecdot(dy.reshape(n, c, -1), xhat.reshape(n, c, -1)).sum(axis=0).astype(scale.dtype, copy=False)
        if needs(ctx, 2):
            out[2] = dy.reshape(n, c, -1).sum(axis=2).sum(axis=0).astype(scale.dtype, copy=False)
        if needs(ctx, 0):
            d = dy * scale.astype(dy.dtype, copy=False).reshape((1, c) + (1,) * (dy.ndim - 2))
            out[0] = _row_grad(d.reshape(n * c, -1), xhat.reshape(n * c, -1), inv).reshape(xhat.shape)
        return out
