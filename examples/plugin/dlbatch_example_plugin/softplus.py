"""A numpy kernel for the ONNX op Softplus, which dlbatch itself does not implement."""
from __future__ import annotations

import numpy as np

from dlbatch.backends.numpy_cpu.kernel import NumpyKernel


class Softplus(NumpyKernel):
    """y = log(1 + exp(x)), computed stably; dy/dx = sigmoid(x)."""

    op_type = "Softplus"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        return [np.logaddexp(0, x).astype(x.dtype)], x

    def backward(self, ctx, saved, grads, attrs):
        x = saved
        return [grads[0] / (1 + np.exp(-x))]
