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
    """Softmax and log-softmax over axis 1, shifted by the max for stability.

    Args:
        xp: the backend's array namespace.
        z: logits N x K (x spatial dimensions).

    Returns:
        `(softmax, log_softmax)`, both shaped like z.

    Examples:
        >>> import numpy as np
        >>> p, log_p = softmax_parts(np, np.array([[0.0, 0.0], [1000.0, 0.0]]))
        >>> p.tolist(), bool(np.isfinite(log_p).all())
        ([[0.5, 0.5], [1.0, 0.0]], True)
    """
    shifted = z - xp.max(z, axis=1, keepdims=True)
    exp = xp.exp(shifted)
    sum_exp = xp.sum(exp, axis=1, keepdims=True)
    return exp / sum_exp, shifted - xp.log(sum_exp)


def one_hot(xp, target, z):
    """One-hot of integer class indices along axis 1, shaped and typed like the logits.

    Args:
        xp: the backend's array namespace.
        target: class indices 0..K-1, shaped like z without axis 1.
        z: the logits N x K (x spatial dimensions).

    Returns:
        An array shaped and typed like z.

    Examples:
        >>> import numpy as np
        >>> one_hot(np, np.array([2, 0]), np.zeros((2, 3))).tolist()
        [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    """
    k = z.shape[1]
    classes = xp.reshape(xp.arange(k, device=getattr(z, "device", "cpu")), (1, k) + (1,) * (z.ndim - 2))
    return xp.astype(xp.expand_dims(target, axis=1) == classes, z.dtype)


class MultinomialLogistic(Loss):
    """The multinomial logistic (cross-entropy) loss of classification and segmentation:
    sum_n a_n * -log softmax(z_n)[y_n] over images or pixels, with the weights a_n the model type
    encodes (class weights, weight images, 0 for ignored pixels)."""

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
