"""How a model type's evaluations are measured and ranked: the main metric the training
procedure keeps the best model by, and the accumulator `evaluate_dl_model` feeds batch by batch.

`dlbatch.core.model_type` re-exports these names.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

__all__ = ["MainMetric", "Evaluation"]


@dataclass(frozen=True)
class MainMetric:
    """The measure the training procedure ranks evaluations by (best.onnx) and shows first.

    Attributes:
        name: its key in the evaluation summary.
        higher_is_better: whether a higher value is better.

    Examples:
        Classification ranks by the top-1 error, lower is better:

        >>> top1 = MainMetric("top1_error", higher_is_better=False)
    """

    name: str
    higher_is_better: bool

    def better(self, new: float, old: float | None) -> bool:
        """Whether a new value of the measure beats the best so far.

        Args:
            new: the new value.
            old: the best so far, None when there is none yet.

        Returns:
            True when `new` is better; any value beats None; NaN never wins.

        Examples:
            >>> top1.better(0.1, 0.2), top1.better(float("nan"), None)
            (True, False)
        """
        if new != new:  # NaN
            return False
        if old is None or old != old:
            return True
        return new > old if self.higher_is_better else new < old


class Evaluation:
    """Measures accumulated batch by batch (what `ModelType.evaluation` returns).

    `evaluate_dl_model` feeds it the results and samples of one batch at a time, so that a
    model type can evaluate a large set without holding every prediction in memory. This
    default keeps everything and calls the model type's `evaluate` once at the end; a model
    type overrides `ModelType.evaluation` to return its own subclass.

    Args:
        model_type: the model type (a `ModelType`) whose `evaluate` makes the summary.
        hp: the model's hyperparameters.

    Examples:
        How `evaluate_dl_model` uses it, with a stand-in model type that counts the samples:

        >>> class Counting:
        ...     def evaluate(self, results, samples, hp):
        ...         return {"num_samples": len(samples)}
        >>> evaluation = Evaluation(Counting(), {})
        >>> evaluation.add([{}, {}], [{}, {}])
        >>> evaluation.add([{}], [{}])
        >>> evaluation.summary()
        {'num_samples': 3}
    """

    def __init__(self, model_type: Any, hp: Mapping[str, Any]):
        self._model_type, self._hp = model_type, hp
        self._results: list[dict] = []
        self._samples: list[Mapping] = []

    def add(self, results: Sequence[dict], samples: Sequence[Mapping]) -> None:
        """Take the results of one batch and its labelled samples.

        Args:
            results: `apply_dl_model`'s results, one per sample.
            samples: the labelled samples, in the same order.
        """
        self._results.extend(results)
        self._samples.extend(samples)

    def summary(self) -> dict:
        """The measures over everything added (what `evaluate_dl_model` returns).

        Returns:
            The model type's measures, its main metric among them.
        """
        return self._model_type.evaluate(self._results, self._samples, self._hp)
