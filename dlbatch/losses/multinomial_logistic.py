"""Weighted multinomial logistic loss (softmax cross-entropy), SPEC section 4.

    L = - sum_n a_n log softmax(z_n)[y_n] / sum_n a_n      (0 when sum_n a_n = 0)

z has classes on axis 1: (N, K) for classification, (N, K, H, W) for segmentation; y and a
have z's shape without axis 1.
"""
from __future__ import annotations

from ..core.hookspecs import hookimpl
from ..core.loss import Loss


class MultinomialLogistic(Loss):
    name = "multinomial_logistic"

    def value_and_grad(self, xp, prediction, target, weights, options=None):
        z = prediction
        k = z.shape[1]
        shifted = z - xp.max(z, axis=1, keepdims=True)
        exp = xp.exp(shifted)
        sum_exp = xp.sum(exp, axis=1, keepdims=True)
        log_p = shifted - xp.log(sum_exp)
        class_axis = xp.reshape(xp.arange(k, device=_device(z)), (1, k) + (1,) * (z.ndim - 2))
        onehot = xp.astype(xp.expand_dims(target, axis=1) == class_axis, z.dtype)
        a = xp.astype(weights, z.dtype)
        total = xp.sum(a)
        denom = xp.where(total > 0, total, xp.ones_like(total))
        nll = -xp.sum(onehot * log_p, axis=1)
        value = xp.sum(a * nll) / denom
        grad = (exp / sum_exp - onehot) * (xp.expand_dims(a, axis=1) / denom)
        return value, grad


def _device(x):
    return getattr(x, "device", "cpu")


@hookimpl
def dlbatch_register_losses(register):
    register(MultinomialLogistic())
