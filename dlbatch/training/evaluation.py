"""Measuring the validation set during training: chunk by chunk through evaluate_batches, so
a validation set on disk is never held in memory, ranked by the model type's main metric."""
from __future__ import annotations

from ..core.errors import DLError
from ..core.infer import evaluate_batches
from .batches import validation_chunks


def evaluate_validation(model, validation) -> dict:
    return evaluate_batches(model, validation_chunks(validation, model))


def main_value(model, summary: dict) -> float | None:
    """The summary's value of the model type's main metric (None for a type without one)."""
    metric = model.model_type.main_metric
    if metric is None:
        return None
    if metric.name not in summary:
        raise DLError(f"the {model.model_type.name} evaluation has no {metric.name!r} (its main metric); "
                      f"it reported {sorted(summary)}. This is a bug in the model type's plugin")
    return float(summary[metric.name])


def is_due(epoch: int, epochs: int, interval: int) -> bool:
    """Evaluate every `interval` epochs and after the last one."""
    return epoch % interval == 0 or epoch == epochs
