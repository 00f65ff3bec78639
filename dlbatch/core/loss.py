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
        """Return (sum, d sum / d prediction): `sum` is a 0-d array, the loss summed over the
        micro-batch, NOT divided by any count. `target` and `weights` are what the model type
        encoded for this term (`TermTarget`), as backend arrays; `options` carries loss
        settings from the model (e.g. focal alpha)."""
