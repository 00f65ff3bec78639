"""split_dl_dataset: every sample gets "train", "validation" or "test", like HALCON's
split_dl_dataset.

Counts: of n samples, round(n * train_percent / 100) go to train and round(n *
validation_percent / 100) (at most what is left) to validation, the rest to test; rounding is
half up. Classification datasets are stratified as HALCON's: each class gets its share of
every split (within about one sample; with these exact totals). Which samples go where is
seeded (numpy's default_rng(seed)): the same dataset and seed always give the same split, on
every machine.
"""
from __future__ import annotations

import math

import numpy as np

from ..core.errors import DLParamError
from .dataset import SPLIT_NAMES, DLDataset


def split_dl_dataset(dataset: DLDataset, train_percent: float = 70, validation_percent: float = 15,
                     seed: int = 42) -> DLDataset:
    """A copy of `dataset` in which every sample has a split (HALCON's split_dl_dataset).

    round(n * train_percent / 100) samples go to "train", round(n * validation_percent / 100)
    to "validation", the rest to "test"; classification datasets are stratified per class.

    Args:
        dataset: a DLDataset (e.g. from read_dl_dataset).
        train_percent: share of training samples, in percent.
        validation_percent: share of validation samples, in percent.
        seed: the same dataset and seed give the same split on every machine.

    Returns:
        A new DLDataset; `result.split("train")` gives the training samples.

    Raises:
        DLParamError: percentages outside 0..100 or adding up to more than 100.

    Examples:
        >>> import dlbatch
        >>> from dlbatch.datasets import write_synthetic_dataset
        >>> path = write_synthetic_dataset("detection", "boxes", num_samples=10)
        >>> data = dlbatch.split_dl_dataset(dlbatch.read_dl_dataset(path), 80, 20)
        >>> len(data.split("train")), len(data.split("validation")), len(data.split("test"))
        (8, 2, 0)
    """
    _check(train_percent, validation_percent)
    n = len(dataset)
    rng = np.random.default_rng(int(seed))
    if dataset.model_type == "classification":
        groups: dict[int, list[int]] = {}
        for i in range(n):
            groups.setdefault(dataset.annotations(i)["image_label_id"], []).append(i)
        order = [i for c in rng.permutation(sorted(groups)) for i in rng.permutation(groups[int(c)])]
    else:
        order = rng.permutation(n)
    splits = [None] * n
    for i, name in zip(order, _spread(split_counts(n, train_percent, validation_percent))):
        splits[int(i)] = name
    return dataset.with_splits(splits)


def split_counts(n: int, train_percent: float, validation_percent: float) -> tuple[int, int, int]:
    """(train, validation, test) sample counts for n samples (rounding half up).

    Examples:
        >>> split_counts(10, 70, 15)
        (7, 2, 1)
    """
    train = min(math.floor(n * train_percent / 100 + 0.5), n)
    validation = min(math.floor(n * validation_percent / 100 + 0.5), n - train)
    return train, validation, n - train - validation


def _spread(counts) -> list[str]:
    """The split names of counts = (train, validation, test), interleaved so that every stretch
    of the list holds them about in proportion: position p takes the split that is furthest
    behind its share of p + 1 (exact integers; the totals come out exactly)."""
    n = sum(counts)
    taken = [0, 0, 0]
    names = []
    for p in range(1, n + 1):
        j = max(range(3), key=lambda s: counts[s] * p - taken[s] * n)
        taken[j] += 1
        names.append(SPLIT_NAMES[j])
    return names


def _check(train_percent, validation_percent) -> None:
    for name, value in (("train_percent", train_percent), ("validation_percent", validation_percent)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
            raise DLParamError(f"{name} must be a number in 0..100, got {value!r}")
    if train_percent + validation_percent > 100:
        raise DLParamError(f"train_percent + validation_percent must be <= 100 (the rest is test), got "
                           f"{train_percent} + {validation_percent}")
