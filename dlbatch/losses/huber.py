"""Huber (smooth-L1) loss of the detection box head, SPEC section 4.

    h(x) = 0.5 x^2 / beta   if |x| < beta
           |x| - 0.5 beta   otherwise

    L = sum over anchors a and box variables j of w_a h(pred[a, j] - target[a, j])

The loss returns this sum; the model type encodes the normaliser max(1, number of positive
anchors) with the targets and the train step divides.

Shapes: prediction (N, A, P) box deltas (P = 4 for axis-aligned, 5 for oriented boxes);
target (N, A, P) float; weights (N, A) float, 1 for a positive anchor and 0 elsewhere. An
anchor of weight 0 contributes exactly 0 to value and gradient, whatever its target holds.
Option "beta" (default 0.11); beta = 0 is the plain L1 loss.
"""
from __future__ import annotations

from ..core.errors import DLParamError
from ..core.hookspecs import hookimpl
from ..core.loss import Loss

DEFAULT_BETA = 0.11


class Huber(Loss):
    name = "huber"

    def value_and_grad(self, xp, prediction, target, weights, options=None):
        options = options or {}
        beta = float(options.get("beta", DEFAULT_BETA))
        if not beta >= 0.0:
            raise DLParamError(f"huber loss option 'beta' must be >= 0, got {beta}")
        a = xp.expand_dims(xp.astype(weights, prediction.dtype), axis=-1)
        keep = a != 0
        zeros = xp.zeros_like(prediction)
        # dropped anchors are zeroed before anything else, so a NaN target there cannot leak
        x = xp.where(keep, prediction - xp.astype(target, prediction.dtype), zeros)
        ax = xp.abs(x)
        if beta > 0.0:
            inside = ax < beta
            xq = xp.where(inside, x, zeros)  # so x * x cannot overflow where it is not used
            h = xp.where(inside, 0.5 * xq * xq / beta, ax - 0.5 * beta)
            dh = xp.where(inside, xq / beta, xp.sign(x))
        else:  # plain L1 (no division by beta)
            h, dh = ax, xp.sign(x)
        value = xp.sum(a * h)
        grad = a * dh
        return value, grad


@hookimpl
def dlbatch_register_losses(register):
    register(Huber())
