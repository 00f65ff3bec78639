"""split_dl_dataset: exact counts (half-up rounding, computed here with exact fractions),
every sample in one split, the same split for the same seed, classes stratified."""
from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import pytest

from dlbatch import DLParamError
from dlbatch.datasets import DLDataset, split_dl_dataset
from dlbatch.datasets.dataset import Record


def dataset(n, model_type="detection", labels=None):
    """An index-only dataset (no files are read by splitting)."""
    records = [Record(image_path=Path(f"/nowhere/{i}.png"), image_file_name=f"{i}.png", image_id=i,
                      labels={} if labels is None else {"image_label_id": labels[i]}) for i in range(n)]
    classes = sorted(set(labels)) if labels else [1]
    return DLDataset(records, model_type=model_type, class_ids=classes,
                     instance_type="rectangle1" if model_type == "detection" else None)


def half_up(n, percent):
    return math.floor(Fraction(n * percent, 100) + Fraction(1, 2))


def splits_of(ds):
    return [ds.annotations(i)["split"] for i in range(len(ds))]


@pytest.mark.parametrize("n, train, validation", [(0, 70, 15), (1, 70, 15), (7, 70, 15), (10, 50, 50),
                                                  (13, 80, 20), (40, 33, 33), (101, 70, 15), (9, 100, 0)])
def test_counts_are_rounded_half_up_and_everything_is_assigned(n, train, validation):
    ds = split_dl_dataset(dataset(n), train, validation)
    names = splits_of(ds)
    want_train = min(half_up(n, train), n)
    want_validation = min(half_up(n, validation), n - want_train)
    assert names.count("train") == want_train
    assert names.count("validation") == want_validation
    assert names.count("test") == n - want_train - want_validation
    parts = [ds.split(s) for s in ("train", "validation", "test")] if n else []
    assert sorted(i for p in parts for i in (p.annotations(k)["image_id"] for k in range(len(p)))) == list(range(n))


def test_same_seed_same_split_other_seed_other_split_input_untouched():
    base = dataset(60)
    a, b = split_dl_dataset(base, seed=3), split_dl_dataset(dataset(60), seed=3)
    assert splits_of(a) == splits_of(b)
    assert splits_of(split_dl_dataset(base, seed=4)) != splits_of(a)
    assert splits_of(base) == [None] * 60 and base.split_names() == []
    assert splits_of(split_dl_dataset(base)) == splits_of(split_dl_dataset(base, 70, 15, 42))


def test_classification_is_stratified_with_exact_totals():
    labels = [0] * 30 + [1] * 12 + [2] * 5 + [3] * 3
    ds = split_dl_dataset(dataset(len(labels), "classification", labels), 60, 20, seed=7)
    names = splits_of(ds)
    totals = {s: names.count(s) for s in ("train", "validation", "test")}
    assert totals == {"train": 30, "validation": 10, "test": 10}
    for cls in set(labels):
        members = [name for name, lab in zip(names, labels) if lab == cls]
        for s, share in (("train", 0.6), ("validation", 0.2), ("test", 0.2)):
            assert abs(members.count(s) - share * len(members)) < 2, (cls, s, members)


@pytest.mark.parametrize("train, validation", [(101, 0), (-1, 10), (60, 50), ("70", 10), (True, 0)])
def test_bad_percentages_are_parameter_errors(train, validation):
    with pytest.raises(DLParamError, match="percent"):
        split_dl_dataset(dataset(5), train, validation)
