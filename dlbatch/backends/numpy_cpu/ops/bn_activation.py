"""BatchNormalization followed by a clipped activation (Clip, e.g. ReLU6, or HardSwish), fused
for training: each cache-resident channel block is normalised and activated in one parallel
task, and the backward recomputes the block's pre-activation from the saved x - mean (the same
arithmetic as the forward, so the same bits) to apply the activation's derivative before the
batch-norm backward of that block. Neither the batch-norm output nor the activation's input is
stored, and the activation runs on the kernel threads instead of as separate whole-array passes.

Inference and synchronised batch statistics run the two kernels one after the other (the
composed path), so results always equal the unfused nodes'.
"""
from __future__ import annotations

import numpy as np

from ....core.backend import OpContext
from ....core.onnx_attributes import clip_bounds
from .. import buffers, parallel
from ..kernel import NumpyKernel
from ._util import cm, cm_rows, needs, row_blocks, scratch
from .activations import Clip, HardSwish
from .batchnorm import (bn_backward, bn_forward, report_running_statistics, train_backward_rows,
                        train_block_forward)


class _ClipAct:
    """y = min(max(x, lo), hi); dy passes where lo <= x <= hi (as the Clip kernel)."""

    kernel = Clip()

    def __init__(self, ctx, inputs, attrs, dtype):
        lo, hi = clip_bounds(ctx.opset, attrs, [None] + list(inputs))
        self.lo = None if lo is None else np.asarray(lo, dtype=dtype)
        self.hi = None if hi is None else np.asarray(hi, dtype=dtype)

    def forward(self, pre, out):
        src = pre
        if self.lo is not None:
            np.maximum(src, self.lo, out=out)
            src = out
        if self.hi is not None:
            np.minimum(src, self.hi, out=out)
            src = out
        if src is pre:
            np.copyto(out, pre)

    def grad(self, g, pre, out):
        """out = g * act'(pre) (out may not be g)."""
        mask = scratch("bna_mask", pre.shape, bool)
        if self.lo is None and self.hi is None:
            np.copyto(out, g)
            return
        if self.lo is not None:
            np.greater_equal(pre, self.lo, out=mask)
            if self.hi is not None:
                mask &= np.less_equal(pre, self.hi, out=scratch("bna_mask2", pre.shape, bool))
        else:
            np.less_equal(pre, self.hi, out=mask)
        np.multiply(g, mask, out=out)


class _HardSwishAct:
    """x * clip(x/6 + 1/2, 0, 1); derivative x/3 + 1/2 inside (-3, 3), 0 at or below -3, 1 at
    or above 3 (as the HardSwish kernel)."""

    kernel = HardSwish()

    def __init__(self, ctx, inputs, attrs, dtype):
        self.t = np.dtype(dtype).type

    def forward(self, pre, out):
        t = self.t
        np.multiply(pre, t(1.0 / 6.0), out=out)
        out += t(0.5)
        np.clip(out, t(0), t(1), out=out)
        out *= pre

    def grad(self, g, pre, out):
        t = self.t
        np.multiply(pre, t(1.0 / 3.0), out=out)
        out += t(0.5)
        out *= np.greater(pre, t(-3), out=scratch("bna_mask", pre.shape, bool))
        np.putmask(out, np.greater_equal(pre, t(3), out=scratch("bna_mask2", pre.shape, bool)), t(1))
        out *= g


ACTIVATIONS = {"Clip": _ClipAct, "HardSwish": _HardSwishAct}


class BatchNormActivation(NumpyKernel):
    """The fused kernel of ("BatchNormalization", act) for act in ACTIVATIONS. Its inputs are
    the batch norm's five followed by the activation node's others (Clip's min and max)."""

    def __init__(self, act: str):
        self.act_cls = ACTIVATIONS[act]
        self.op_type = f"BatchNormalization+{act}"

    def forward(self, ctx, inputs, attrs):
        battrs, (aattrs, _) = attrs[0][0], attrs[1]
        x = inputs[0]
        act = self.act_cls(ctx, inputs[5:], aattrs, x.dtype)
        if not ctx.training or ctx.collective is not None or x.ndim < 2:
            return self._composed_forward(ctx, inputs, battrs, aattrs)
        c = x.shape[1]
        xr = cm_rows(x)
        m = xr.shape[1]
        sc = inputs[1].astype(x.dtype, copy=False)
        bi = inputs[2].astype(x.dtype, copy=False)
        eps = float(battrs.get("epsilon", 1e-5))
        centered = buffers.empty(xr.shape, x.dtype)
        y = buffers.empty(xr.shape, x.dtype)
        bmean, bvar, inv = (np.empty(c, dtype=x.dtype) for _ in range(3))

        def block(r):
            a, z = r
            pre = scratch("bna_pre", (z - a, m), x.dtype)
            train_block_forward(xr[a:z], centered[a:z], pre, sc[a:z], bi[a:z], eps,
                                bmean[a:z], bvar[a:z], inv[a:z])
            act.forward(pre, y[a:z])

        parallel.run(block, row_blocks(c, m))
        report_running_statistics(ctx, inputs[3], inputs[4], bmean, bvar, m)
        out = cm(y.reshape((c, x.shape[0]) + x.shape[2:]))
        return [out], ("fused", act, centered, inv, sc, bi, inputs[1], x.shape)

    def backward(self, ctx, saved, grads, attrs):
        if saved[0] == "composed":
            return self._composed_backward(ctx, saved, grads, attrs)
        _, act, centered, inv, sc, bi, scale, shape = saved
        g_all = cm_rows(grads[0])
        c = centered.shape[0]
        k = sc * inv

        def through_activation(a, z):
            hb = centered[a:z]
            pre = scratch("bna_pre", hb.shape, hb.dtype)  # as train_block_forward computed it
            np.multiply(hb, k[a:z, None], out=pre)
            pre += bi[a:z, None]
            g = scratch("bna_g", hb.shape, hb.dtype)
            act.grad(g_all[a:z], pre, g)
            return g

        dx, dscale, dbias = train_backward_rows(ctx, centered, inv, k, through_activation)
        dxo = cm(dx.reshape((c, shape[0]) + tuple(shape[2:]))) if dx is not None else None
        return [dxo, dscale.astype(scale.dtype) if needs(ctx, 1) else None,
                dbias.astype(scale.dtype) if needs(ctx, 2) else None, None, None] + [None] * (len(ctx.needs_input_grad) - 5)

    def _composed_forward(self, ctx, inputs, battrs, aattrs):
        (y,), bn_saved = bn_forward(ctx, inputs[:5], battrs)
        rest = list(inputs[5:])
        actx = OpContext(training=ctx.training, bn_momentum=ctx.bn_momentum,
                         needs_input_grad=(True,) + (False,) * len(rest), rng=ctx.rng, opset=ctx.opset)
        (out,), act_saved = self.act_cls.kernel.forward(actx, [y] + rest, aattrs)
        return [out], ("composed", bn_saved, actx, act_saved)

    def _composed_backward(self, ctx, saved, grads, attrs):
        _, bn_saved, actx, act_saved = saved
        g = self.act_cls.kernel.backward(actx, act_saved, grads, attrs[1][0])[0]
        out = bn_backward(ctx, bn_saved, [g], attrs[0][0])
        return out + [None] * max(0, len(ctx.needs_input_grad) - len(out))


FUSED_ACTIVATIONS = {("BatchNormalization", act): BatchNormActivation(act) for act in ACTIVATIONS}
