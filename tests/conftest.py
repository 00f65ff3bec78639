"""Shared fixtures: small models and random labelled samples."""
from __future__ import annotations

import numpy as np
import pytest

import dlbatch


def make_samples(n: int, *, height=8, width=8, channels=1, class_ids=(0, 1, 2), seed=0, scale=50.0):
    rng = np.random.default_rng(seed)
    return [{"image": (rng.standard_normal((height, width, channels)) * scale).astype(np.float32),
             "image_label_id": int(class_ids[i % len(class_ids)])} for i in range(n)]


def tiny_model(**params):
    args = dict(image_width=8, image_height=8, image_num_channels=1, class_ids=[0, 1, 2], batch_size=4,
                learning_rate=0.01, momentum=0.9, seed=0)
    args.update(params)
    backbone = args.pop("backbone", "compact")
    return dlbatch.create_dl_model("classification", backbone=backbone, **args)


def snapshot(model):
    """Everything a failed step must leave untouched, as numpy copies."""
    return model.state_dict(), model.solver_state_dict(), {n: model.get_param(n) for n in
                                                           ("learning_rate", "class_ids", "batch_size")}


def assert_same_snapshot(a, b):
    for da, db in zip(a[:2], b[:2]):
        assert da.keys() == db.keys()
        for k in da:
            np.testing.assert_array_equal(da[k], db[k], err_msg=k)
            assert da[k].dtype == db[k].dtype
    assert a[2] == b[2]


@pytest.fixture
def samples_factory():
    return make_samples


@pytest.fixture
def default_max_image_pixels(monkeypatch):
    """The image pixel limit at its default (no DLBATCH_MAX_IMAGE_PIXELS), before and after."""
    from dlbatch.datasets.images import set_max_image_pixels
    monkeypatch.delenv("DLBATCH_MAX_IMAGE_PIXELS", raising=False)
    set_max_image_pixels(None)
    yield
    set_max_image_pixels(None)


def has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if has_cuda():
        return
    skip = pytest.mark.skip(reason="no CUDA device on this machine")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
