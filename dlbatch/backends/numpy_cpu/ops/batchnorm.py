"""BatchNormalization over (N, C, ...) inputs, computed as one contiguous row per channel.

Statistics are two-pass (mean, then sum of squared deviations) and every sum runs along the
contiguous last axis, where numpy sums pairwise: a naive float32 accumulation over N*224*224
values per channel gave 1e-2 gradient errors. Training reports the new running statistics
through ctx.update_statistic (unbiased variance, SPEC 1.5); the ONNX `momentum` attribute is
ignored in favour of ctx.bn_momentum.
"""
from __future__ import annotations

import numpy as np

from ..kernel import NumpyKernel
from ._util import cm, cm_rows, needs


def _from_rows(rows, like):
    """(C, N*...) rows -> logical (N, C, ...) view with channel-major memory."""
    c = like.shape[1]
    return cm(rows.reshape((c, like.shape[0]) + like.shape[2:]))


class BatchNormalization(NumpyKernel):
    """Training saves x_hat and 1/std (backward needs nothing else); inference saves x and the
    statistics so that a frozen-statistics backward can rebuild x_hat."""

    op_type = "BatchNormalization"

    def forward(self, ctx, inputs, attrs):
        x, scale, bias, mean, var = inputs[:5]
        eps = float(attrs.get("epsilon", 1e-5))
        dt = x.dtype.type
        c = x.shape[1]
        xr = cm_rows(x)
        if ctx.training:
            m = xr.shape[1]
            bmean = xr.sum(axis=1) / dt(m)
            xhat = xr - bmean[:, None]
            bvar = np.square(xhat).sum(axis=1) / dt(m)
            inv = (1.0 / np.sqrt(bvar + dt(eps))).astype(x.dtype, copy=False)
            xhat *= inv[:, None]
            y = xhat * scale.reshape(c, 1)
            y += bias.reshape(c, 1)
            mom = float(ctx.bn_momentum)
            unbiased = bvar * dt(m / max(m - 1, 1))
            ctx.update_statistic(3, (mom * mean + (1.0 - mom) * bmean.astype(mean.dtype)).astype(mean.dtype))
            ctx.update_statistic(4, (mom * var + (1.0 - mom) * unbiased.astype(var.dtype)).astype(var.dtype))
            return [_from_rows(y, x)], ("train", xhat, inv, scale, x.shape)
        inv = (1.0 / np.sqrt(var.astype(x.dtype) + dt(eps))).astype(x.dtype, copy=False)
        a = scale.astype(x.dtype) * inv
        b = bias.astype(x.dtype) - mean.astype(x.dtype) * a
        y = xr * a[:, None]
        y += b[:, None]
        return [_from_rows(y, x)], ("infer", x, mean.astype(x.dtype), inv, scale, x.shape)

    def backward(self, ctx, saved, grads, attrs):
        dy = grads[0]
        g = cm_rows(dy)
        db = g.sum(axis=1) if needs(ctx, 2) else None
        if saved[0] == "train":
            _, xhat, inv, scale, shape = saved
            m = xhat.shape[1]
            dscale = (g * xhat).sum(axis=1)
            dx = None
            if needs(ctx, 0):
                gsum = db if db is not None else g.sum(axis=1)
                dt = xhat.dtype.type
                # dx = scale*inv/m * (m*g - sum(g) - xhat*sum(g*xhat))
                dx = xhat * (-dscale / dt(m))[:, None]
                dx += g
                dx -= (gsum / dt(m))[:, None]
                dx *= (scale * inv)[:, None]
                dx = _from_rows(dx, dy)
            return [dx, dscale.astype(scale.dtype) if needs(ctx, 1) else None,
                    db.astype(scale.dtype) if db is not None else None, None, None]
        _, x, mean, inv, scale, shape = saved
        dscale = None
        if needs(ctx, 1):
            xhat = cm_rows(x) - mean[:, None]
            xhat *= inv[:, None]
            dscale = (g * xhat).sum(axis=1).astype(scale.dtype)
        dx = _from_rows(g * (scale * inv)[:, None], dy) if needs(ctx, 0) else None
        return [dx, dscale, db.astype(scale.dtype) if db is not None else None, None, None]
