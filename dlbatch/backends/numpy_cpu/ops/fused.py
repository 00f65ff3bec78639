"""Fused kernels the numpy program substitutes for op pairs whose intermediate value nobody
else uses (see ..program). They compute exactly what the pair computes, in fewer passes over
memory and without keeping the intermediate alive:

* BatchNormalization -> Relu: the Relu runs inside each cache-resident channel block of the
  batch norm; backward masks dy with the saved Relu output inside the same blocks.
* Add -> Relu (residual connections): one pass each way, the sum never stored.
* Conv -> BatchNormalization (-> Relu (-> MaxPool)), inference only: the frozen batch norm is
  folded into the convolution's weights and bias, and the ReLU (and the max pooling) are
  applied to each output chunk in cache.

A fused kernel's `attrs` is a tuple of (node attributes, number of node inputs), one per node;
its inputs are the first node's inputs followed by the other nodes' inputs after the first.
"""
from __future__ import annotations

import numpy as np

from ....core.errors import DLPluginError
from .. import buffers
from ..kernel import NumpyKernel
from ._util import is_float, needs, parallel_ew, relu_, unbroadcast
from .activations import relu_mask_grad
from .batchnorm import bn_backward, bn_forward
from .conv import conv_relu_forward


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
        a = (scale.astype(dt) / np.sqrt(var.astype(dt) + dt.type(eps))).astype(dt, copy=False)
        wf = (w.astype(dt, copy=False) * a.reshape(-1, *([1] * (w.ndim - 1)))).astype(dt, copy=False)
        bf = bias.astype(dt) - mean.astype(dt) * a
        if cb is not None:
            bf = bf + cb.astype(dt) * a
        pool_attrs = attrs[3][0] if len(attrs) > 3 else None
        return [conv_relu_forward(x, wf, bf, cattrs, self.relu, pool_attrs)], None

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


FUSED = {("BatchNormalization", "Relu"): BatchNormRelu(), ("Add", "Relu"): AddRelu(),
         ("Conv", "BatchNormalization"): ConvBatchNorm(),
         ("Conv", "BatchNormalization", "Relu"): ConvBatchNormRelu(),
         ("Conv", "BatchNormalization", "Relu", "MaxPool"): ConvBatchNormReluMaxPool()}
