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


class Loss(ABC):
    """`name` is what the model parameter `losses` refers to and what the result key
    `loss_<name>` is made from."""

    name: str = ""

    @abstractmethod
    def value_and_grad(self, xp, prediction, target, weights, options: dict[str, Any] | None = None):
        """The loss summed over the micro-batch and its gradient.

        Args:
            xp: the backend's array namespace (numpy, or array_api_compat.torch).
            prediction: the graph output the loss term reads, as a backend array.
            target: what the model type encoded for this term (`TermTarget.target`).
            weights: per-element weights (`TermTarget.weights`).
            options: loss settings from the model type (`ModelType.loss_options`, e.g. focal alpha).

        Returns:
            `(sum, d sum / d prediction)`: `sum` is a 0-d array, NOT divided by any count (the
            train step divides by `TermTarget.normalizer`); the gradient has prediction's shape.
        """
