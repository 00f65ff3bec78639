"""Fused kernels the numpy program substitutes for op pairs whose intermediate value nobody
else uses (see ..program). They compute exactly what the pair computes, in fewer passes over
memory and without keeping the intermediate alive:

* BatchNormalization -> Relu: the Relu runs inside each cache-resident channel block of the
  batch norm; backward masks dy with the saved Relu output inside the same blocks.
* Add -> Relu (residual connections): one pass each way, the sum never stored.
"""
from __future__ import annotations

import numpy as np

from .. import buffers
from ..kernel import NumpyKernel
from ._util import is_float, needs, parallel_ew, relu_, unbroadcast
from .activations import relu_mask_grad
from .batchnorm import bn_backward, bn_forward


class BatchNormRelu(NumpyKernel):
    op_type = "BatchNormalization+Relu"

    def forward(self, ctx, inputs, attrs):
        return bn_forward(ctx, inputs, attrs, relu=True)

    def backward(self, ctx, saved, grads, attrs):
        return bn_backward(ctx, saved, grads, attrs)


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


FUSED = {("BatchNormalization", "Relu"): BatchNormRelu(), ("Add", "Relu"): AddRelu()}
