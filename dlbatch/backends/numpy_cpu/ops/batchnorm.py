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

Data-parallel with `batchnorm_sync` (ctx.collective set, core/collective.py), a training
forward normalises with the statistics of every rank's samples (SyncBatchNorm): the per-channel
sums, then the sums of squared deviations from the global mean, are all-reduced between the
passes; backward all-reduces sum(dy) and sum(dy * x_hat) for the input gradient, while the
scale and bias gradients stay this rank's share (the train step sums those over the ranks).
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


def train_block_forward(xb, hb, yb, sc, bi, eps, mean_out, var_out, inv_out) -> None:
    """Training statistics of a block of channel rows xb (c, m): writes x - mean into hb, the
    affine batch-norm output into yb (may be scratch) and mean, biased variance and 1/std into
    the *_out slices."""
    dt = xb.dtype.type
    m = xb.shape[1]
    mb = xb.sum(axis=1) / dt(m)
    np.subtract(xb, mb[:, None], out=hb)
    vb = np.vecdot(hb, hb) / dt(m)
    ib = (1.0 / np.sqrt(vb + dt(eps))).astype(xb.dtype, copy=False)
    np.multiply(hb, (sc * ib)[:, None], out=yb)
    yb += bi[:, None]
    mean_out[...], var_out[...], inv_out[...] = mb, vb, ib


def report_running_statistics(ctx, mean, var, bmean, bvar, m: int, synced: bool = False) -> None:
    """New running mean and (unbiased) variance through ctx.update_statistic (SPEC 1.5).
    `synced` says the statistics are over every rank; a kernel that computed them over its own
    batch while the step asks for synchronised ones is refused (it would silently differ)."""
    if ctx.collective is not None and not synced:
        from ....core.errors import DLBackendError
        raise DLBackendError("this fused batch-norm kernel computes its statistics per rank, but the model "
                             "parameter batchnorm_sync asks for statistics over every rank; set "
                             "batchnorm_sync to False, or use the torch backend")
    dt = bvar.dtype.type
    mom = float(ctx.bn_momentum)
    unbiased = bvar * dt(m / max(m - 1, 1))
    ctx.update_statistic(3, (mom * mean + (1.0 - mom) * bmean.astype(mean.dtype)).astype(mean.dtype))
    ctx.update_statistic(4, (mom * var + (1.0 - mom) * unbiased.astype(var.dtype)).astype(var.dtype))


def train_block_backward(g, hb, ib, k, dscale_out, dbias_out, dx_out) -> None:
    """Batch-norm gradients of a block of channel rows from the output gradient g and the saved
    x - mean (hb) and 1/std (ib); k = scale * ib. dx_out None skips the input gradient."""
    dt = hb.dtype.type
    m = hb.shape[1]
    gsum = g.sum(axis=1)
    ds = np.vecdot(g, hb) * ib  # sum(g * x_hat)
    dbias_out[...], dscale_out[...] = gsum, ds
    if dx_out is not None:
        # dx = scale*inv/m * (m*g - sum(g) - x_hat*sum(g*x_hat)), x_hat = centered*inv
        np.multiply(hb, (-ds * ib / dt(m))[:, None], out=dx_out)
        dx_out += g
        dx_out -= (gsum / dt(m))[:, None]
        dx_out *= k[:, None]


def train_backward_rows(ctx, centered, inv, k, block_grad):
    """Training-mode batch-norm gradients over threaded channel blocks: (dx as channel rows, or
    None when input 0 needs none; dscale; dbias), in centered's dtype. block_grad(a, z) gives
    the gradient at the batch norm's output for rows a:z, after the backward of an op fused
    behind it (Relu, an activation, a max pooling)."""
    c = centered.shape[0]
    dscale = np.empty(c, dtype=centered.dtype)
    dbias = np.empty(c, dtype=centered.dtype)
    need_x = needs(ctx, 0)
    dx = buffers.empty(centered.shape, centered.dtype) if need_x else None

    def block(r):
        a, z = r
        train_block_backward(block_grad(a, z), centered[a:z], inv[a:z], k[a:z], dscale[a:z], dbias[a:z],
                             dx[a:z] if need_x else None)

    parallel.run(block, row_blocks(c, centered.shape[1]))
    return dx, dscale, dbias


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
    if ctx.training and ctx.collective is not None:
        return _sync_forward(ctx, x, xr, y, sc, bi, mean, var, eps, relu, blocks, scale.dtype)
    if ctx.training:
        centered = buffers.empty(xr.shape, xr.dtype)  # x - mean; x_hat = centered * inv
        bmean = np.empty(c, dtype=x.dtype)
        bvar = np.empty(c, dtype=x.dtype)
        inv = np.empty(c, dtype=x.dtype)

        def block(r):
            a, z = r
            yb = y[a:z]
            train_block_forward(xr[a:z], centered[a:z], yb, sc[a:z], bi[a:z], eps,
                                bmean[a:z], bvar[a:z], inv[a:z])
            if relu:
                relu_(yb, yb)

        parallel.run(block, blocks)
        report_running_statistics(ctx, mean, var, bmean, bvar, m)
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
    if saved[0] == "sync":
        return _sync_backward(ctx, saved, dy, g_all, relu_out, blocks, (need_x, need_s, need_b))
    if saved[0] == "train":
        _, centered, inv, scale, shape, _ = saved
        k = (scale.astype(centered.dtype, copy=False) * inv)
        dx, dscale, dbias = train_backward_rows(ctx, centered, inv, k,
                                                lambda a, z: _through_relu(g_all[a:z], relu_out, a, z))
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


def _sync_forward(ctx, x, xr, y, sc, bi, mean, var, eps, relu, blocks, param_dtype):
    """Training forward with mean and biased variance over every rank's samples (two passes,
    each followed by one all-reduce); saves what _sync_backward needs."""
    coll = ctx.collective
    dt = x.dtype.type
    c, m = xr.shape
    total = coll.all_reduce_floats([m])[0]  # samples x pixels per channel over all ranks
    sums = np.empty(c, dtype=x.dtype)

    def sum_block(r):
        a, z = r
        sums[a:z] = xr[a:z].sum(axis=1)

    parallel.run(sum_block, blocks)
    (sums,) = coll.all_reduce_sum([sums])
    gmean = (sums / dt(total)).astype(x.dtype, copy=False)
    centered = buffers.empty(xr.shape, xr.dtype)
    squares = np.empty(c, dtype=x.dtype)

    def centre_block(r):
        a, z = r
        np.subtract(xr[a:z], gmean[a:z, None], out=centered[a:z])
        squares[a:z] = np.vecdot(centered[a:z], centered[a:z])

    parallel.run(centre_block, blocks)
    (squares,) = coll.all_reduce_sum([squares])
    gvar = (squares / dt(total)).astype(x.dtype, copy=False)
    inv = (1.0 / np.sqrt(gvar + dt(eps))).astype(x.dtype, copy=False)

    def normalise_block(r):
        a, z = r
        yb = y[a:z]
        np.multiply(centered[a:z], (sc[a:z] * inv[a:z])[:, None], out=yb)
        yb += bi[a:z, None]
        if relu:
            relu_(yb, yb)

    parallel.run(normalise_block, blocks)
    report_running_statistics(ctx, mean, var, gmean, gvar, int(total), synced=True)
    return [_from_rows(y, x)], ("sync", centered, inv, sc, param_dtype, dt(total), y if relu else None)


def _sync_backward(ctx, saved, dy, g_all, relu_out, blocks, need):
    """SyncBatchNorm backward: dx from sum(dy) and sum(dy * x_hat) over every rank; the scale
    and bias gradients are this rank's sums."""
    _, centered, inv, sc, param_dtype, total, _ = saved
    need_x, need_s, need_b = need
    c = centered.shape[0]
    gsum = np.empty(c, dtype=centered.dtype)
    ds = np.empty(c, dtype=centered.dtype)

    def sum_block(r):
        a, z = r
        g = _through_relu(g_all[a:z], relu_out, a, z)
        gsum[a:z] = g.sum(axis=1)
        ds[a:z] = np.vecdot(g, centered[a:z]) * inv[a:z]  # sum(g * x_hat)

    parallel.run(sum_block, blocks)
    dx = None
    if need_x:
        gsum_all, ds_all = ctx.collective.all_reduce_sum([gsum, ds])
        k = sc * inv
        dx = buffers.empty(centered.shape, centered.dtype)

        def dx_block(r):
            a, z = r
            g = _through_relu(g_all[a:z], relu_out, a, z)
            # dx = scale*inv/M * (M*g - sum(g) - x_hat*sum(g*x_hat)), sums over all ranks
            np.multiply(centered[a:z], (-ds_all[a:z] * inv[a:z] / total)[:, None], out=dx[a:z])
            dx[a:z] += g
            dx[a:z] -= (gsum_all[a:z] / total)[:, None]
            dx[a:z] *= k[a:z, None]

        parallel.run(dx_block, blocks)
    return [_from_rows(dx, dy) if need_x else None, ds.astype(param_dtype) if need_s else None,
            gsum.astype(param_dtype) if need_b else None, None, None]


class BatchNormalization(NumpyKernel):
    """Training saves x - mean and 1/std (backward needs nothing else); inference saves x and the
    statistics so that a frozen-statistics backward can rebuild x_hat."""

    op_type = "BatchNormalization"

    def forward(self, ctx, inputs, attrs):
        return bn_forward(ctx, inputs, attrs)

    def backward(self, ctx, saved, grads, attrs):
        return bn_backward(ctx, saved, grads, attrs)
