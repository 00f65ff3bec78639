"""Segmentation measures from one confusion matrix accumulated batch by batch, so evaluating
a large set never holds all predictions in memory (HALCON's evaluate_dl_model measures)."""
from __future__ import annotations

from typing import Sequence

import numpy as np


class PixelConfusion:
    """Counts of (ground-truth class, predicted class) over every counted pixel."""

    def __init__(self, num_classes: int):
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def add(self, truth: np.ndarray, predicted: np.ndarray, counted: np.ndarray | None = None) -> None:
        """Add pixels: `truth` and `predicted` are class indices, `counted` masks pixels in."""
        truth, predicted = truth.ravel(), predicted.ravel()
        if counted is not None:
            keep = counted.ravel()
            truth, predicted = truth[keep], predicted[keep]
        k = self.matrix.shape[0]
        self.matrix += np.bincount(truth * k + predicted, minlength=k * k).reshape(k, k)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with NaN where den is 0 (a class that never occurs has no value)."""
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _nanmean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else 0.0


def segmentation_measures(confusion: np.ndarray, class_ids: Sequence[int]) -> dict:
    """mean_iou, class_iou, pixel_accuracy, mean_accuracy, class_pixel_accuracy,
    frequency_weighted_iou and the confusion matrix (rows: ground truth, columns: predicted).
    A class absent from both ground truth and prediction has NaN IoU and is left out of the
    means; a class absent from the ground truth has NaN accuracy."""
    confusion = np.asarray(confusion, dtype=np.int64)
    tp = np.diag(confusion).astype(np.float64)
    truth = confusion.sum(axis=1).astype(np.float64)
    predicted = confusion.sum(axis=0).astype(np.float64)
    total = truth.sum()
    iou = _ratio(tp, truth + predicted - tp)
    accuracy = _ratio(tp, truth)
    frequency = truth / total if total else np.zeros_like(truth)
    return {
        "mean_iou": _nanmean(iou),
        "class_iou": iou.tolist(),
        "pixel_accuracy": float(tp.sum() / total) if total else 0.0,
        "mean_accuracy": _nanmean(accuracy),
        "class_pixel_accuracy": accuracy.tolist(),
        "frequency_weighted_iou": float(np.nansum(frequency * iou)),
        "confusion_matrix": confusion.tolist(),
        "class_ids": list(class_ids),
        "num_pixels": int(total),
    }
