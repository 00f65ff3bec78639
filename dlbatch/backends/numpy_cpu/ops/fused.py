"""Fused kernels the numpy program substitutes for op pairs whose intermediate value nobody
else uses (see ..program). They compute exactly what the pair computes, in fewer passes over
memory and without keeping the intermediate alive:

* BatchNormalization -> Relu: the Relu runs inside each cache-resident channel block of the
  batch norm; backward masks dy with the saved Relu output inside the same blocks.
* BatchNormalization -> Relu -> MaxPool (2x2, stride 2), training: each channel block is
  normalized into per-thread scratch and pooled there, so the full-size activation is never
  stored; backward routes the pooled gradient to the winners in scratch and runs the batch-norm
  backward on it in the same block. Other pool geometries run the two kernels one after the other.
* BatchNormalization -> Clip or HardSwish: see .bn_activation.
* Add -> Relu (residual connections): one pass each way, the sum never stored.
* Conv -> BatchNormalization (-> Relu (-> MaxPool)), inference only: the frozen batch norm is
  folded into the convolution's weights and bias, once per set of weights (kept while those
  arrays live, see .derived: the program passes model values, which are never modified in
  place), and the ReLU (and the max pooling) are applied to each output chunk in cache.

A fused kernel's `attrs` is a tuple of (node attributes, number of node inputs), one per node;
its inputs are the first node's inputs followed by the other nodes' inputs after the first.
"""
from __future__ import annotations

import numpy as np

from ....core.backend import OpContext
from ....core.errors import DLPluginError
from .. import buffers, parallel
from ..kernel import NumpyKernel
from ._util import cm, cm_rows, is_float, needs, parallel_ew, relu_, row_blocks, scratch, unbroadcast
from .activations import relu_mask_grad
from .bn_activation import FUSED_ACTIVATIONS
from .batchnorm import (bn_backward, bn_forward, report_running_statistics, train_backward_rows,
                        train_block_forward)
from .conv import conv_relu_forward
from .derived import derived
from .pooling import MaxPool, is_2x2, max2x2_backward, max2x2_forward, pool_geometry


class BatchNormRelu(NumpyKernel):
    op_type = "BatchNormalization+Relu"

    def forward(self, ctx, inputs, attrs):
        return bn_forward(ctx, inputs, attrs[0][0], relu=True)

    def backward(self, ctx, saved, grads, attrs):
        return bn_backward(ctx, saved, grads, attrs[0][0])


def _add_relu(o, a, b):
    np.add(a, b, out=o)
    relu_(o, o)


class AddRelu(NumpyKernel):
    op_type = "Add+Relu"

    def forward(self, ctx, inputs, attrs):
        a, b = inputs
        y = None
        if a.shape == b.shape and a.dtype == b.dtype:
            y = buffers.empty_like(a)
            if not parallel_ew(_add_relu, y, a, b):
                _add_relu(y, a, b)
        else:
            y = np.add(a, b)
            np.maximum(y, 0, out=y)
        return [y], (y, a.shape, b.shape, is_float(a), is_float(b))

    def backward(self, ctx, saved, grads, attrs):
        y, sa, sb, fa, fb = saved
        want_a, want_b = needs(ctx, 0) and fa, needs(ctx, 1) and fb
        if not (want_a or want_b):
            return [None, None]
        g = relu_mask_grad(grads[0], y)
        return [unbroadcast(g, sa) if want_a else None, unbroadcast(g, sb) if want_b else None]


class BatchNormReluMaxPool(NumpyKernel):
    """BatchNormalization -> Relu -> MaxPool. Only the pooled output and the batch norm's x - mean
    are stored. The pooling runs on the batch-norm output before the ReLU: max and ReLU commute,
    and a window whose maximum is not positive passes no gradient either way, so outputs and
    gradients equal those of the three nodes (ties go to the same winner as MaxPool's)."""

    op_type = "BatchNormalization+Relu+MaxPool"
    _pool = MaxPool()

    def forward(self, ctx, inputs, attrs):
        battrs, pattrs = attrs[0][0], attrs[2][0]
        x = inputs[0]
        geom = pool_geometry(pattrs, x.shape) if x.ndim == 4 else None
        synced = ctx.collective is not None  # batch statistics over every rank
        if synced or not (ctx.training and geom is not None and is_2x2(geom, x.shape)):
            return self._composed_forward(ctx, inputs, battrs, pattrs)
        n, c, h, w = x.shape
        ho, wo = geom[5]
        xr = cm_rows(x)
        m = xr.shape[1]
        sc = inputs[1].astype(x.dtype, copy=False)
        bi = inputs[2].astype(x.dtype, copy=False)
        eps = float(battrs.get("epsilon", 1e-5))
        centered = buffers.empty(xr.shape, x.dtype)
        y = buffers.empty((c, n, ho, wo), x.dtype)
        rmask = buffers.empty((c, n, ho, w), bool)
        cmask = buffers.empty((c, n, ho, wo), bool)
        bmean, bvar, inv = (np.empty(c, dtype=x.dtype) for _ in range(3))

        def block(r):
            a, z = r
            pre = scratch("bnp_pre", (z - a, m), x.dtype)  # batch-norm output, before the ReLU
            train_block_forward(xr[a:z], centered[a:z], pre, sc[a:z], bi[a:z], eps,
                                bmean[a:z], bvar[a:z], inv[a:z])
            yb = y[a:z]
            max2x2_forward(pre.reshape(z - a, n, h, w), rmask[a:z], cmask[a:z], yb)
            relu_(yb, yb)

        parallel.run(block, row_blocks(c, m))
        report_running_statistics(ctx, inputs[3], inputs[4], bmean, bvar, m)
        return [cm(y)], ("2x2", centered, inv, inputs[1], y, rmask, cmask, x.shape)

    def backward(self, ctx, saved, grads, attrs):
        if saved[0] == "composed":
            return self._composed_backward(ctx, saved, grads, attrs)
        _, centered, inv, scale, y, rmask, cmask, (n, c, h, w) = saved
        dyc = cm(grads[0])
        m = centered.shape[1]
        k = scale.astype(centered.dtype, copy=False) * inv

        def through_relu_and_pool(a, z):
            yb = y[a:z]
            mask = np.greater(yb, 0, out=scratch("bnp_m", yb.shape, bool))  # the ReLU's
            gp = np.multiply(dyc[a:z], mask, out=scratch("bnp_gp", yb.shape, y.dtype))
            g = scratch("bnp_g", (z - a, n, h, w), y.dtype)
            max2x2_backward(gp, rmask[a:z], cmask[a:z], g)
            return g.reshape(z - a, m)

        dx, dscale, dbias = train_backward_rows(ctx, centered, inv, k, through_relu_and_pool)
        dxo = cm(dx.reshape(c, n, h, w)) if dx is not None else None
        return [dxo, dscale.astype(scale.dtype) if needs(ctx, 1) else None,
                dbias.astype(scale.dtype) if needs(ctx, 2) else None, None, None]

    def _composed_forward(self, ctx, inputs, battrs, pattrs):
        (y,), bn_saved = bn_forward(ctx, inputs, battrs, relu=True)
        pctx = OpContext(training=ctx.training, bn_momentum=ctx.bn_momentum,
                         needs_input_grad=(any(ctx.needs_input_grad) if ctx.needs_input_grad else True,),
                         rng=ctx.rng, opset=ctx.opset)
        (out,), pool_saved = self._pool.forward(pctx, [y], pattrs)
        return [out], ("composed", bn_saved, pctx, pool_saved)

    def _composed_backward(self, ctx, saved, grads, attrs):
        _, bn_saved, pctx, pool_saved = saved
        (g,) = self._pool.backward(pctx, pool_saved, grads, attrs[2][0])
        return bn_backward(ctx, bn_saved, [g], attrs[0][0])


class ConvBatchNorm(NumpyKernel):
    """Inference only (the program never puts it into a training plan)."""

    op_type = "Conv+BatchNormalization"
    relu = False

    def forward(self, ctx, inputs, attrs):
        (cattrs, nconv), (battrs, _) = attrs[0], attrs[1]
        if ctx.training:
            raise DLPluginError(f"{self.op_type} is an inference-only fusion")
        x, w = inputs[0], inputs[1]
        cb = inputs[2] if nconv > 2 else None
        scale, bias, mean, var = inputs[nconv:nconv + 4]
        dt = x.dtype
        eps = float(battrs.get("epsilon", 1e-5))

        def fold():
            """[W * a | bias - mean * a (+ conv bias * a)], a = scale / std: the GEMM's weights."""
            a = (scale.astype(dt) / np.sqrt(var.astype(dt) + dt.type(eps))).astype(dt, copy=False)
            bf = bias.astype(dt) - mean.astype(dt) * a
            if cb is not None:
                bf = bf + cb.astype(dt) * a
            wb = np.empty((w.shape[0], w[0].size + 1), dtype=dt)
            np.multiply(w.reshape(w.shape[0], -1).astype(dt, copy=False), a[:, None], out=wb[:, :-1])
            wb[:, -1] = bf
            return wb

        # the same weights and statistics give the same folded matrix: fold once, not per call
        sources = (w, scale, bias, mean, var) + ((cb,) if cb is not None else ())
        wb = derived(("conv_bn_fold", dt.char, eps), sources, fold)
        pool_attrs = attrs[3][0] if len(attrs) > 3 else None
        return [conv_relu_forward(x, wb, w.shape, cattrs, self.relu, pool_attrs)], None

    def backward(self, ctx, saved, grads, attrs):
        raise DLPluginError(f"{self.op_type} has no backward (inference only)")


class ConvBatchNormRelu(ConvBatchNorm):
    op_type = "Conv+BatchNormalization+Relu"
    relu = True


class ConvBatchNormReluMaxPool(ConvBatchNorm):
    """Each output chunk (whole samples) is pooled while in cache: the full-size activation
    is never stored."""

    op_type = "Conv+BatchNormalization+Relu+MaxPool"
    relu = True


FUSED = {**FUSED_ACTIVATIONS, ("BatchNormalization", "Relu"): BatchNormRelu(), ("Add", "Relu"): AddRelu(),
         ("BatchNormalization", "Relu", "MaxPool"): BatchNormReluMaxPool(),
         ("Conv", "BatchNormalization"): ConvBatchNorm(),
         ("Conv", "BatchNormalization", "Relu"): ConvBatchNormRelu(),
         ("Conv", "BatchNormalization", "Relu", "MaxPool"): ConvBatchNormReluMaxPool()}
