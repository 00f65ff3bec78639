"""The loss interface. A loss is written once against the array namespace `xp` of the backend
(numpy, or array_api_compat.torch), so the same code runs on numpy arrays and torch tensors."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class Loss(ABC):
    """`name` is what the model parameter `losses` refers to and what the result key
    `loss_<name>` is made from."""

    name: str = ""

    @abstractmethod
    def value_and_grad(self, xp, prediction, target, weights, options: dict[str, Any] | None = None):
        """Return (value, d value / d prediction). `value` is a 0-d array. `target` and
        `weights` are what the model type encoded for this term, as backend arrays;
        `options` carries loss settings from the model (e.g. focal alpha)."""
