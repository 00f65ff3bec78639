"""Sigmoid focal loss of the detection classification head (RetinaNet form), SPEC section 4.

With p = sigmoid(z[a, k]) and t = 1 if anchor a is assigned class k else 0:

    FL = sum over non-ignored anchors a and classes k of
         w_a * ( -alpha_k t (1-p)^gamma log p - (1-alpha_k) (1-t) p^gamma log(1-p) )

The loss returns FL; the model type encodes the normaliser max(1, number of positive anchors)
with the targets and the train step divides.

Shapes: logits z (N, A, K); target (N, A) integer, a class index 0..K-1 for a positive
anchor, -1 for background, -2 for an ignored anchor (it contributes nothing, whatever its
weight); weights (N, A) per-anchor factor w_a (1 normally, 0 to drop an anchor). Options:
"alpha" (a float or K floats, default 0.25 each) and "gamma" (default 2.0).

Stability: with softplus(x) = log(1 + e^x) computed as relu(x) + log1p(e^-|x|),
    -log p = softplus(-z),  -log(1-p) = softplus(z),  p = e^-softplus(-z),  1-p = e^-softplus(z)
so no log(0) or 1 - p cancellation occurs and any finite z gives a finite value and gradient.
The gradient, with sp± = softplus(±z),
    positive (t=1):  -alpha_k (1-p)^gamma (gamma p sp- + (1-p))
    negative (t=0):  (1-alpha_k) p^gamma (gamma (1-p) sp+ + p)
has no (1-p)^(gamma-1) factor, so it is also finite for gamma < 1.
"""
from __future__ import annotations

import numbers

from ..core.errors import DLParamError
from ..core.hookspecs import hookimpl
from ..core.loss import Loss

DEFAULT_ALPHA = 0.25
DEFAULT_GAMMA = 2.0
IGNORED = -2


def softplus(xp, x):
    """log(1 + e^x) without overflow: relu(x) + log1p(e^-|x|) (relu as (x + |x|) / 2, which
    needs no scalar operand in maximum/where)."""
    ax = xp.abs(x)
    return (x + ax) * 0.5 + xp.log1p(xp.exp(-ax))


def class_alpha(xp, alpha, z):
    """alpha as a (K,) array of z's dtype on z's device; a single float applies to every class."""
    k = z.shape[-1]
    device = getattr(z, "device", "cpu")
    if isinstance(alpha, numbers.Real):
        values = [float(alpha)] * k
    else:
        values = [float(a) for a in (alpha.tolist() if hasattr(alpha, "tolist") else alpha)]
        if len(values) != k:
            raise DLParamError(f"focal loss option 'alpha' has {len(values)} values but the logits "
                               f"have {k} classes; give one alpha per class or a single float")
    if any(not 0.0 <= a <= 1.0 for a in values):
        raise DLParamError(f"focal loss option 'alpha' must lie in [0, 1], got {values}")
    return xp.asarray(values, dtype=z.dtype, device=device)


class Focal(Loss):
    name = "focal"

    def value_and_grad(self, xp, prediction, target, weights, options=None):
        options = options or {}
        gamma = float(options.get("gamma", DEFAULT_GAMMA))
        if not gamma >= 0.0:
            raise DLParamError(f"focal loss option 'gamma' must be >= 0, got {gamma}")
        z = prediction
        alpha = class_alpha(xp, options.get("alpha", DEFAULT_ALPHA), z)
        k = z.shape[-1]
        classes = xp.arange(k, device=getattr(z, "device", "cpu"))
        t = xp.astype(xp.expand_dims(target, axis=-1) == classes, z.dtype)  # (N, A, K)
        a = xp.astype(weights, z.dtype)
        # ignored anchors get weight 0 even if their weight entry is not
        w = xp.expand_dims(xp.where(target == IGNORED, xp.zeros_like(a), a), axis=-1)

        sp_neg = softplus(xp, -z)  # -log p
        sp_pos = softplus(xp, z)   # -log (1 - p)
        p = xp.exp(-sp_neg)
        q = xp.exp(-sp_pos)        # 1 - p
        q_g = q ** gamma
        p_g = p ** gamma
        pos_w = alpha * t
        neg_w = (1.0 - alpha) * (1.0 - t)
        value = xp.sum(w * (pos_w * q_g * sp_neg + neg_w * p_g * sp_pos))
        grad = w * (neg_w * p_g * (gamma * q * sp_pos + p) - pos_w * q_g * (gamma * p * sp_neg + q))
        return value, grad


@hookimpl
def dlbatch_register_losses(register):
    register(Focal())
