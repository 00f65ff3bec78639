"""BatchNormalization over (N, C, ...) inputs, computed as one contiguous row per channel.

Statistics are two-pass (mean, then sum of squared deviations) and every sum runs along the
contiguous last axis: the mean and sum(dy) as numpy's pairwise sums (a naive float32
accumulation over N*224*224 values per channel gave 1e-2 gradient errors), the squared
deviations and sum(dy * x_hat) as dot products (np.vecdot: BLAS with many partial sums, about
1e-6 relative at 400k float32 values, and 3x faster than a square-then-sum). Training keeps
the centred input x - mean rather than x_hat, so no pass scales it. Training reports the new running statistics
through ctx.update_statistic (unbiased variance, SPEC 1.5); the ONNX `momentum` attribute is
ignored in favour of ctx.bn_momentum.

Every pass of a channel block runs while the block is in cache, and the blocks run on the
kernel threads. Per-channel results do not depend on the blocking, so they are the same for any
thread count. `bn_forward`/`bn_backward` with relu=True are also the fused
BatchNormalization+Relu of the numpy program (one pass less each way, no BN output kept).
"""
from __future__ import annotations

import numpy as np

from .. import buffers, parallel
from ..kernel import NumpyKernel
from ._util import cm, cm_rows, needs, relu_, row_blocks, scratch


def _through_relu(g, relu_out, a, z):
    """Rows a:z of the upstream gradient, masked by a fused ReLU's output (if any)."""
    if relu_out is None:
        return g
    mask = np.greater(relu_out[a:z], 0, out=scratch("bn_m", g.shape, bool))
    return np.multiply(g, mask, out=scratch("bn0", g.shape, g.dtype))


def _from_rows(rows, like):
    """(C, N*...) rows -> logical (N, C, ...) view with channel-major memory."""
    c = like.shape[1]
    return cm(rows.reshape((c, like.shape[0]) + like.shape[2:]))


def bn_forward(ctx, inputs, attrs, relu: bool = False):
    """BatchNormalization (then Relu when relu=True) forward; returns (outputs, saved)."""
    x, scale, bias, mean, var = inputs[:5]
    eps = float(attrs.get("epsilon", 1e-5))
    dt = x.dtype.type
    c = x.shape[1]
    xr = cm_rows(x)
    m = xr.shape[1]
    sc = scale.astype(x.dtype, copy=False)
    bi = bias.astype(x.dtype, copy=False)
    y = buffers.empty(xr.shape, xr.dtype)
    blocks = row_blocks(c, m)
    if ctx.training:
        centered = buffers.empty(xr.shape, xr.dtype)  # x - mean; x_hat = centered * inv
        bmean = np.empty(c, dtype=x.dtype)
        bvar = np.empty(c, dtype=x.dtype)
        inv = np.empty(c, dtype=x.dtype)

        def block(r):
            a, z = r
            xb, hb, yb = xr[a:z], centered[a:z], y[a:z]
            mb = xb.sum(axis=1) / dt(m)
            np.subtract(xb, mb[:, None], out=hb)
            vb = np.vecdot(hb, hb) / dt(m)
            ib = (1.0 / np.sqrt(vb + dt(eps))).astype(x.dtype, copy=False)
            np.multiply(hb, (sc[a:z] * ib)[:, None], out=yb)
            yb += bi[a:z, None]
            if relu:
                relu_(yb, yb)
            bmean[a:z], bvar[a:z], inv[a:z] = mb, vb, ib

        parallel.run(block, blocks)
        mom = float(ctx.bn_momentum)
        unbiased = bvar * dt(m / max(m - 1, 1))
        ctx.update_statistic(3, (mom * mean + (1.0 - mom) * bmean.astype(mean.dtype)).astype(mean.dtype))
        ctx.update_statistic(4, (mom * var + (1.0 - mom) * unbiased.astype(var.dtype)).astype(var.dtype))
        out = _from_rows(y, x)
        return [out], ("train", centered, inv, scale, x.shape, y if relu else None)
    inv = (1.0 / np.sqrt(var.astype(x.dtype) + dt(eps))).astype(x.dtype, copy=False)
    ka = sc * inv
    kb = bi - mean.astype(x.dtype) * ka

    def block(r):
        a, z = r
        yb = y[a:z]
        np.multiply(xr[a:z], ka[a:z, None], out=yb)
        yb += kb[a:z, None]
        if relu:
            np.maximum(yb, 0, out=yb)

    parallel.run(block, blocks)
    out = _from_rows(y, x)
    return [out], ("infer", x, mean.astype(x.dtype), inv, scale, x.shape, y if relu else None)


def bn_backward(ctx, saved, grads, attrs):
    """Gradients of BatchNormalization (or of the fused BatchNormalization+Relu: then the
    saved Relu output masks dy first)."""
    dy = grads[0]
    g_all = cm_rows(dy)
    c, m = g_all.shape
    relu_out = saved[-1]
    need_x, need_s, need_b = needs(ctx, 0), needs(ctx, 1), needs(ctx, 2)
    blocks = row_blocks(c, m)
    if saved[0] == "train":
        _, centered, inv, scale, shape, _ = saved
        dt = centered.dtype.type
        k = (scale.astype(centered.dtype, copy=False) * inv)
        dscale = np.empty(c, dtype=centered.dtype)
        dbias = np.empty(c, dtype=centered.dtype)
        dx = buffers.empty(centered.shape, centered.dtype) if need_x else None

        def block(r):
            a, z = r
            g = g_all[a:z]
            g = _through_relu(g, relu_out, a, z)
            hb, ib = centered[a:z], inv[a:z]
            gsum = g.sum(axis=1)
            ds = np.vecdot(g, hb) * ib  # sum(g * x_hat)
            dbias[a:z], dscale[a:z] = gsum, ds
            if need_x:
                # dx = scale*inv/m * (m*g - sum(g) - x_hat*sum(g*x_hat)), x_hat = centered*inv
                d = dx[a:z]
                np.multiply(hb, (-ds * ib / dt(m))[:, None], out=d)
                d += g
                d -= (gsum / dt(m))[:, None]
                d *= k[a:z, None]

        parallel.run(block, blocks)
        return [_from_rows(dx, dy) if need_x else None, dscale.astype(scale.dtype) if need_s else None,
                dbias.astype(scale.dtype) if need_b else None, None, None]
    _, x, mean, inv, scale, shape, _ = saved
    xr = cm_rows(x) if need_s else None
    k = scale.astype(x.dtype, copy=False) * inv
    dscale = np.empty(c, dtype=x.dtype)
    dbias = np.empty(c, dtype=x.dtype)
    dx = buffers.empty((c, m), x.dtype) if need_x else None

    def block(r):
        a, z = r
        g = g_all[a:z]
        g = _through_relu(g, relu_out, a, z)
        dbias[a:z] = g.sum(axis=1)
        if need_s:
            hb = np.subtract(xr[a:z], mean[a:z, None], out=scratch("bn1", g.shape, g.dtype))
            hb *= inv[a:z, None]
            hb *= g
            dscale[a:z] = hb.sum(axis=1)
        if need_x:
            np.multiply(g, k[a:z, None], out=dx[a:z])

    parallel.run(block, blocks)
    return [_from_rows(dx, dy) if need_x else None, dscale.astype(scale.dtype) if need_s else None,
            dbias.astype(scale.dtype) if need_b else None, None, None]


class BatchNormalization(NumpyKernel):
    """Training saves x - mean and 1/std (backward needs nothing else); inference saves x and the
    statistics so that a frozen-statistics backward can rebuild x_hat."""

    op_type = "BatchNormalization"

    def forward(self, ctx, inputs, attrs):
        return bn_forward(ctx, inputs, attrs)

    def backward(self, ctx, saved, grads, attrs):
        return bn_backward(ctx, saved, grads, attrs)
