"""The loss interface. A loss is written once against the array namespace `xp` of the backend
(numpy, or array_api_compat.torch), so the same code runs on numpy arrays and torch tensors.

A loss returns an unnormalised sum over the micro-batch. The normaliser (a count, or a sum of
weights) comes from the model type's encoding (`TermTarget.normalizer`) and the train step
divides by it: the same loss can then be a weighted mean for one model type and a sum over
positive anchors for another, and data-parallel training can sum the normaliser across ranks.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

__all__ = ["Loss"]


class Loss(ABC):
    """A loss plugin: the summed loss of one loss term and its gradient.

    Register an instance with the `dlbatch_register_losses` hook. Its `name` is what the model
    parameter `losses` refers to (`losses={"classification": "brier"}`) and what the result
    key `loss_<name>` of `train_dl_model_batch` is made from. The train step calls
    `value_and_grad` once per loss term and micro-batch; the same instance serves every model,
    so it must keep no per-call state.

    Attributes:
        name: the registered name (unique among losses).

    Examples:
        A squared error, written against `xp` so that it runs on every backend:

        >>> import numpy as np
        >>> class SquaredError(Loss):
        ...     name = "squared_error"
        ...
        ...     def value_and_grad(self, xp, prediction, target, weights, options=None):
        ...         d = prediction - xp.astype(target, prediction.dtype)
        ...         a = xp.reshape(xp.astype(weights, prediction.dtype), (-1, 1))
        ...         return xp.sum(a * d * d), 2 * a * d
        >>> value, grad = SquaredError().value_and_grad(
        ...     np, np.array([[1.0, 2.0]]), np.array([[0.0, 0.0]]), np.array([0.5]))
        >>> float(value), grad.tolist()
        (2.5, [[1.0, 2.0]])
    """

    name: str = ""

    @abstractmethod
    def value_and_grad(self, xp, prediction, target, weights, options: dict[str, Any] | None = None):
        """The loss summed over the micro-batch and its gradient.

        Called by the train step once per loss term and micro-batch, after the forward pass;
        the gradient is fed to `Program.backward`. It must not change its arguments, and it
        must use only `xp` functions (no numpy on a torch tensor) so that every backend can
        run it.

        Args:
            xp: the backend's array namespace (numpy, or array_api_compat.torch).
            prediction: the graph output the loss term reads, as a backend array.
            target: what the model type encoded for this term (`TermTarget.target`), moved
                to the backend.
            weights: per-element weights (`TermTarget.weights`), moved to the backend.
            options: loss settings from the model type (`ModelType.loss_options`, e.g. the
                focal loss's alpha); None or empty when there are none.

        Returns:
            `(sum, d sum / d prediction)`: `sum` is a 0-d array, NOT divided by any count (the
            train step divides by `TermTarget.normalizer`); the gradient has prediction's shape
            and dtype.

        Raises:
            DLParamError: an option the loss cannot use (the focal loss's alpha outside
                [0, 1]), saying which option and what is allowed.

        Examples:
            How the train step calls the built-in loss of classification:

            >>> from dlbatch.core.plugins import manager
            >>> loss = manager.loss("multinomial_logistic")
            >>> z = np.zeros((2, 3))              # two samples, three classes, equal logits
            >>> value, grad = loss.value_and_grad(np, z, np.array([0, 2]), np.ones(2))
            >>> round(float(value), 4), grad.shape          # 2 * log(3)
            (2.1972, (2, 3))
        """
