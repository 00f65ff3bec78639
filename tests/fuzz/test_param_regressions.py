"""Parameter problems the fuzzing found: one readable case each. Fixed ones must stay fixed;
the expected failures pin bugs in files outside this task (reported, see each reason)."""
from __future__ import annotations

import numpy as np
import pytest

import dlbatch
from dlbatch import DLError, DLParamError

from .models import assert_unchanged, make_model, snapshot


@pytest.mark.parametrize("name", ["image_width", "image_height"])
def test_a_too_small_classifier_image_names_the_parameter(name):
    """The compact backbone's minimum size error said "images of at least 4 pixels per side"
    without naming image_width / image_height."""
    with pytest.raises(DLParamError, match=name):
        make_model("classification", **{name: 2})
    model = make_model("classification")
    before = snapshot(model)
    with pytest.raises(DLParamError, match=f"{name}=2"):
        dlbatch.set_dl_model_param(model, name, 2)
    assert_unchanged(before, model, "a refused image size")


@pytest.mark.parametrize("name", ["class_ids", "ignore_class_ids"])
def test_segmentation_ids_beyond_int64_are_a_param_error_not_an_overflow(name):
    """ignore_class_ids=[1e300] is accepted as the integer 10**300 and used to end the next
    train step in numpy's OverflowError (building the int64 id table)."""
    model = make_model("segmentation")
    ids = {"class_ids": [2, 5, 10 ** 30], "ignore_class_ids": [1e300]}[name]
    before = snapshot(model)
    try:  # refused when set (a float beyond int64 is not an integer id) or at the next step
        dlbatch.set_dl_model_param(model, name, ids)
    except DLParamError as err:
        assert name in str(err)
        assert_unchanged(before, model, "a refused parameter")
        return
    before = snapshot(model)
    with pytest.raises(DLParamError, match=name):
        model.train_batch([{"image": np.zeros((16, 16, 1), np.float32),
                            "segmentation_image": np.full((16, 16), 2)}] * 2)
    assert_unchanged(before, model, "a refused step")


@pytest.mark.parametrize("name", ["backend", "backbone"])
def test_create_with_an_array_for_backend_or_backbone_is_a_param_error(name):
    try:
        make_model("classification", **{name: np.array([1, 2, 3])})
    except DLError as err:
        assert name in str(err)
        return
    raise AssertionError("accepted")


@pytest.mark.parametrize("name", ["image_num_channels", "num_classes"])
def test_absurd_network_sizes_are_refused(name):
    classes = {} if name == "num_classes" else {"class_ids": [0, 1]}
    with pytest.raises(DLParamError, match=name):
        dlbatch.create_dl_model("classification", backbone="compact", image_width=8, image_height=8,
                                **classes, **{name: 2 ** 40})
