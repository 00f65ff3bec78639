"""The evaluation hooks of a model type: how it measures results against labels
(`evaluate`, `evaluation`) and the pictures `dlbatch evaluate --plots` writes of a measure
summary (`evaluation_plots`).

`ModelType` (dlbatch.core.model_type) inherits them from `EvaluationHooks`; a model type
overrides them there like any other method, and ranks evaluations by its `main_metric`. The
accumulator and the main metric are `dlbatch.core.model_evaluation`.

Examples:
    >>> import dlbatch
    >>> from dlbatch.data import classification_samples
    >>> model = dlbatch.create_dl_model("classification", class_ids=[0, 1, 2],
    ...                                 image_dimensions=[16, 16, 3], batch_size=2)
    >>> mt, hp = model.model_type, model.hyperparameters
    >>> samples = dlbatch.preprocess_dl_samples(classification_samples(2, height=20, width=24), model)
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from .model_evaluation import Evaluation

__all__ = ["EvaluationHooks"]


class EvaluationHooks:
    """evaluate, evaluation and evaluation_plots of `ModelType` (a mixin: each default works
    for any model type; `name` is the model type's).

    Examples:
        >>> isinstance(mt, EvaluationHooks), mt.main_metric.name
        (True, 'top1_error')
    """

    def evaluate(self, results: list[dict], samples: Sequence[Mapping], hp: Mapping[str, Any]) -> dict:
        """Measure results against the samples' labels (what `evaluate_dl_model` returns).

        Args:
            results: `apply_dl_model`'s results, one per sample.
            samples: the labelled samples.
            hp: the hyperparameters.

        Returns:
            The measures, the main metric among them.

        Raises:
            NotImplementedError: the model type has no evaluation (the default).
            DLSampleError: a missing or invalid label.

        Examples:
            >>> results = dlbatch.apply_dl_model(model, samples)
            >>> measures = mt.evaluate(results, samples, hp)
            >>> measures["num_samples"], "top1_error" in measures
            (2, True)
        """
        raise NotImplementedError(f"evaluate is not implemented for {self.name} models")

    def evaluation(self, hp: Mapping[str, Any]) -> Evaluation:
        """A fresh accumulator, made once per `evaluate_dl_model` call.

        Override to measure batch by batch (a subclass of `Evaluation`).

        Args:
            hp: the hyperparameters.

        Returns:
            The accumulator; the default keeps everything and calls `evaluate` at the end.

        Examples:
            >>> isinstance(mt.evaluation(hp), Evaluation)
            True
        """
        return Evaluation(self, hp)

    def evaluation_plots(self, summary: Mapping[str, Any], hp: Mapping[str, Any], out_dir) -> list:
        """Write the type's evaluation pictures: what `dlbatch evaluate --plots DIR` writes.

        Args:
            summary: what `evaluate` returned.
            hp: the hyperparameters (class names, ...).
            out_dir: an existing folder.

        Returns:
            The paths of the PNGs written (e.g. a confusion matrix); none by default.

        Examples:
            >>> [p.name for p in mt.evaluation_plots(measures, hp, ".")]
            ['confusion_matrix.png']
        """
        return []
