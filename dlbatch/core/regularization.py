"""The weight prior of SPEC section 3: R = weight_prior/2 * sum w^2 over rank >= 2 weights."""
from __future__ import annotations

from typing import Any, Mapping


def regularized_names(shapes: Mapping[str, tuple]) -> list[str]:
    """Trainable tensors of rank >= 2 (conv, transposed conv, fully connected weights);
    biases and batch-norm scale/shift (rank 1) are not regularized."""
    return [name for name, shape in shapes.items() if len(shape) >= 2]


def add_weight_prior(xp, params: Mapping[str, Any], grads: dict, names, weight_prior: float):
    """Add dR/dw = weight_prior * w to `grads` (new arrays, inputs untouched) and return R
    as a 0-d backend array (or 0.0 when weight_prior is 0)."""
    if weight_prior == 0.0:
        return 0.0
    total = 0.0
    for name in names:
        w = params[name]
        total = total + xp.sum(w * w)
        grads[name] = grads[name] + weight_prior * w
    return 0.5 * weight_prior * total
