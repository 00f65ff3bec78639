"""Every rejected input raises a clear error and leaves the model bit-identical."""
from __future__ import annotations

import numpy as np
import pytest

import dlbatch
from dlbatch import DLNumericError, DLParamError, DLSampleError
from tests.conftest import assert_same_snapshot, make_samples, snapshot, tiny_model


@pytest.fixture
def trained():
    model = tiny_model(solver_type="sgd")
    model.train_batch(make_samples(4, seed=1))  # non-empty solver state
    return model


def broken(kind):
    s = make_samples(4)
    if kind == "wrong_count":
        return s[:3], "3 samples", "batch_size"
    if kind == "missing_image":
        del s[2]["image"]
        return s, "sample 2", "'image'"
    if kind == "missing_label":
        del s[1]["image_label_id"]
        return s, "sample 1", "image_label_id"
    if kind == "wrong_shape":
        s[3]["image"] = np.zeros((9, 8, 1), np.float32)
        return s, "sample 3", "shape"
    if kind == "nan":
        s[0]["image"] = s[0]["image"].copy()
        s[0]["image"][2, 2, 0] = np.nan
        return s, "sample 0", "NaN"
    if kind == "unknown_class":
        s[2]["image_label_id"] = 7
        return s, "sample 2", "class_ids"
    if kind == "not_a_dict":
        s[1] = "oops"
        return s, "sample 1", "dict"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["wrong_count", "missing_image", "missing_label", "wrong_shape", "nan",
                                  "unknown_class", "not_a_dict"])
def test_bad_samples_raise_and_leave_model_untouched(trained, kind):
    samples, *fragments = broken(kind)
    before = snapshot(trained)
    with pytest.raises(DLSampleError) as err:
        dlbatch.train_dl_model_batch(trained, samples)
    for f in fragments:
        assert f.lower() in str(err.value).lower()
    assert_same_snapshot(before, snapshot(trained))


def test_wrong_count_names_both_numbers(trained):
    with pytest.raises(DLSampleError, match=r"got 5 samples.*4 \* 1 = 4"):
        trained.train_batch(make_samples(5))


@pytest.mark.parametrize("name,value,fragment", [
    ("no_such_param", 1, "available"),
    ("learning_rate", -1.0, "> 0"),
    ("learning_rate", "fast", "number"),
    ("momentum", 1.5, "[0, 1)"),
    ("solver_type", "rmsprop", "allowed values"),
    ("batch_size", 0, "> 0"),
    ("batch_size", 2.5, "integer"),
    ("class_weights", [1.0], "one weight per class"),
    ("class_names", ["a"], "one name per class"),
    ("num_classes", 4, "read-only"),
    ("losses", {"classification": "nope"}, "unknown loss"),
    ("losses", {"detection": "multinomial_logistic"}, "not a loss term"),
    ("backend", "tpu9000", "unknown backend"),
    ("device", "cuda:0", "cpu"),
    ("image_width", 2, "at least"),
])
def test_bad_params_raise_and_leave_model_untouched(trained, name, value, fragment):
    before = snapshot(trained)
    hp_before = dict(trained.hyperparameters)
    with pytest.raises(dlbatch.DLError) as err:
        dlbatch.set_dl_model_param(trained, name, value)
    assert fragment.lower() in str(err.value).lower()
    assert isinstance(err.value, (DLParamError, dlbatch.DLPluginError, dlbatch.DLBackendError))
    assert_same_snapshot(before, snapshot(trained))
    assert dict(trained.hyperparameters) == hp_before


def test_non_finite_loss_aborts_the_step_and_changes_nothing(trained):
    before = snapshot(trained)
    samples = make_samples(4)
    samples[0]["image"] = np.full((8, 8, 1), 3e38, np.float32)
    with pytest.raises(DLNumericError, match="not applied"):
        trained.train_batch(samples)
    assert_same_snapshot(before, snapshot(trained))


def test_load_state_dict_checks_names_and_shapes(trained):
    before = snapshot(trained)
    state = trained.state_dict()
    state["fc.weight"] = np.zeros((2, 2))
    with pytest.raises(DLParamError, match="fc.weight"):
        trained.load_state_dict(state)
    state = trained.state_dict()
    del state["fc.bias"]
    with pytest.raises(DLParamError, match="missing"):
        trained.load_state_dict(state)
    assert_same_snapshot(before, snapshot(trained))
