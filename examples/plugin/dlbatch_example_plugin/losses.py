"""Label-smoothing cross-entropy, written once for every backend through its array namespace."""
from __future__ import annotations

from dlbatch.core.loss import Loss
from dlbatch.losses.multinomial_logistic import one_hot, softmax_parts


class LabelSmoothingLogistic(Loss):
    """Cross-entropy against smoothed targets (1 - eps) * onehot + eps / K, weighted per
    sample like the built-in multinomial logistic loss. Like every loss it returns the
    weighted sum; the train step divides by the normaliser the model type encodes (the sum
    of the weights for classification)."""

    name = "label_smoothing_logistic"
    epsilon = 0.1

    def value_and_grad(self, xp, prediction, target, weights, options=None):
        z = prediction
        p, log_p = softmax_parts(xp, z)
        smooth = (1 - self.epsilon) * one_hot(xp, target, z) + self.epsilon / z.shape[1]
        a = xp.astype(weights, z.dtype)
        value = xp.sum(a * -xp.sum(smooth * log_p, axis=1))
        grad = (p - smooth) * xp.expand_dims(a, axis=1)
        return value, grad
