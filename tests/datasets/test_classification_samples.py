"""dlbatch.data.classification_samples: seeded, sample i independent of n, labels from
class_ids, images as a camera gives them."""
from __future__ import annotations

import numpy as np
import pytest

from dlbatch.data import classification_samples


def test_shapes_labels_and_determinism():
    ids = (9, 4, 6)
    samples = classification_samples(40, height=24, width=30, channels=1, class_ids=ids, seed=5)
    assert all(s["image"].shape == (24, 30, 1) and s["image"].dtype == np.uint8 for s in samples)
    labels = [s["image_label_id"] for s in samples]
    assert set(labels) == set(ids) and all(isinstance(v, int) for v in labels)
    again = classification_samples(7, height=24, width=30, channels=1, class_ids=ids, seed=5)
    for a, b in zip(samples, again):
        np.testing.assert_array_equal(a["image"], b["image"])
        assert a["image_label_id"] == b["image_label_id"]
    other = classification_samples(7, height=24, width=30, channels=1, class_ids=ids, seed=6)
    assert any(not np.array_equal(a["image"], b["image"]) for a, b in zip(again, other))


def test_class_ids_choose_labels_not_pictures():
    """The picture depends on the class position only, so renaming ids keeps the images."""
    a = classification_samples(6, class_ids=(0, 1, 2), seed=1)
    b = classification_samples(6, class_ids=(10, 20, 30), seed=1)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["image"], y["image"])
        assert y["image_label_id"] == (x["image_label_id"] + 1) * 10


@pytest.mark.parametrize("kwargs", [dict(class_ids=()), dict(class_ids=(1, 1)), dict(height=4), dict(seed=-1)])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        classification_samples(2, **kwargs)
