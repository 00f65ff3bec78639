"""Weighted multinomial logistic loss (softmax cross-entropy), SPEC section 4.

    L = - sum_n a_n log softmax(z_n)[y_n] / sum_n a_n      (0 when sum_n a_n = 0)

The loss returns the numerator and its gradient; the model type encodes the normaliser
sum_n a_n with the targets and the train step divides. z has classes on axis 1: (N, K) for
classification, (N, K, H, W) for segmentation; y and a have z's shape without axis 1.
"""
from __future__ import annotations

from ..core.hookspecs import hookimpl
from ..core.loss import Loss


def softmax_parts(xp, z):
    """(softmax, log softmax) over axis 1, shifted by the max for stability."""
    shifted = z - xp.max(z, axis=1, keepdims=True)
    exp = xp.exp(shifted)
    sum_exp = xp.sum(exp, axis=1, keepdims=True)
    return exp / sum_exp, shifted - xp.log(sum_exp)


def one_hot(xp, target, z):
    """One-hot of integer `target` along axis 1, shaped and typed like the logits `z`."""
    k = z.shape[1]
    classes = xp.reshape(xp.arange(k, device=getattr(z, "device", "cpu")), (1, k) + (1,) * (z.ndim - 2))
    return xp.astype(xp.expand_dims(target, axis=1) == classes, z.dtype)


class MultinomialLogistic(Loss):
    name = "multinomial_logistic"

    def value_and_grad(self, xp, prediction, target, weights, options=None):
        z = prediction
        p, log_p = softmax_parts(xp, z)
        onehot = one_hot(xp, target, z)
        a = xp.astype(weights, z.dtype)
        value = xp.sum(a * -xp.sum(onehot * log_p, axis=1))
        grad = (p - onehot) * xp.expand_dims(a, axis=1)
        return value, grad


@hookimpl
def dlbatch_register_losses(register):
    register(MultinomialLogistic())
