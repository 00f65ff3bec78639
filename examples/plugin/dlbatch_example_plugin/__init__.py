"""Example third-party dlbatch plugin: one loss and one numpy op kernel."""
from __future__ import annotations

import numpy as np

from dlbatch.backends.numpy_cpu.kernel import NumpyKernel
from dlbatch.core.hookspecs import hookimpl
from dlbatch.core.loss import Loss


class LabelSmoothingLogistic(Loss):
    """Cross-entropy against smoothed targets (1 - eps) * onehot + eps / K, weighted per
    sample like the built-in multinomial logistic loss."""

    name = "label_smoothing_logistic"
    epsilon = 0.1

    def value_and_grad(self, xp, prediction, target, weights, options=None):
        z = prediction
        k = z.shape[1]
        shifted = z - xp.max(z, axis=1, keepdims=True)
        exp = xp.exp(shifted)
        sum_exp = xp.sum(exp, axis=1, keepdims=True)
        log_p = shifted - xp.log(sum_exp)
        classes = xp.reshape(xp.arange(k, device=getattr(z, "device", "cpu")), (1, k) + (1,) * (z.ndim - 2))
        onehot = xp.astype(xp.expand_dims(target, axis=1) == classes, z.dtype)
        smooth = (1 - self.epsilon) * onehot + self.epsilon / k
        a = xp.astype(weights, z.dtype)
        total = xp.sum(a)
        denom = xp.where(total > 0, total, xp.ones_like(total))
        value = xp.sum(a * -xp.sum(smooth * log_p, axis=1)) / denom
        grad = (exp / sum_exp - smooth) * (xp.expand_dims(a, axis=1) / denom)
        return value, grad


class Softplus(NumpyKernel):
    """y = log(1 + exp(x)), computed stably; dy/dx = sigmoid(x)."""

    op_type = "Softplus"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        return [np.logaddexp(0, x).astype(x.dtype)], x

    def backward(self, ctx, saved, grads, attrs):
        x = saved
        return [grads[0] / (1 + np.exp(-x))]


@hookimpl
def dlbatch_register_losses(register):
    register(LabelSmoothingLogistic())


@hookimpl
def dlbatch_register_ops(register):
    register("numpy", "Softplus", Softplus())
