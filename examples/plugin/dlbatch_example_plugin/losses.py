"""The plugin's losses, written once for every backend through its array namespace `xp`."""
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


class BinaryLogistic(Loss):
    """One sigmoid cross-entropy per logit: sum a * (log(1 + exp(z)) - y z) over every
    element, for targets y in [0, 1] shaped like z (multi-label: one 0/1 per class).
    The gradient is a * (sigmoid(z) - y). Both avoid exp of a positive number, so large
    logits neither overflow nor lose the loss of a confidently wrong answer."""

    name = "binary_logistic"

    def value_and_grad(self, xp, prediction, target, weights, options=None):
        z = prediction
        y = xp.astype(target, z.dtype)
        a = xp.astype(weights, z.dtype)
        e = xp.exp(-xp.abs(z))  # in (0, 1]
        softplus = (z + xp.abs(z)) / 2 + xp.log1p(e)  # log(1 + exp(z)) = max(z, 0) + log(1 + exp(-|z|))
        sigmoid = xp.where(z >= 0, 1 / (1 + e), e / (1 + e))
        return xp.sum(a * (softplus - y * z)), a * (sigmoid - y)
