"""The sample-validation bugs the fuzzing found, one readable case each: every one used to
escape as a plain numpy/Python exception (or a misleading message) instead of a
DLSampleError naming the sample index and key."""
from __future__ import annotations

import numpy as np
import pytest

import dlbatch
from dlbatch import DLSampleError

from .models import assert_unchanged, make_model, snapshot, valid_batch


def refused(model, samples, *fragments, call=dlbatch.train_dl_model_batch):
    before = snapshot(model)
    with pytest.raises(DLSampleError) as err:
        call(model, samples)
    for f in fragments:
        assert f in str(err.value), str(err.value)
    assert_unchanged(before, model, "a refused call")
    return str(err.value)


@pytest.mark.parametrize("kind,key", [("classification", "image"), ("classification", "image_label_id"),
                                      ("segmentation", "segmentation_image"), ("segmentation", "weight_image"),
                                      ("rectangle1", "bbox_row2"), ("rectangle2", "bbox_label_id")])
def test_a_ragged_nested_list_names_sample_and_key(kind, key):
    model = make_model(kind)
    samples = valid_batch(model)
    samples[1][key] = [[1.0], [1.0, 2.0]]  # numpy: "inhomogeneous shape" ValueError
    refused(model, samples, "sample 1", repr(key))


def test_a_sample_with_a_non_string_key_still_reports_the_missing_key():
    model = make_model("classification")
    samples = valid_batch(model)
    del samples[0]["image_label_id"]
    samples[0][3] = "x"  # sorted() of mixed keys raised TypeError while building the message
    refused(model, samples, "sample 0", "'image_label_id'")


@pytest.mark.parametrize("value", ["ab", 5, [0], [16, 0], [16.5, 16], [[16, 16]], [float("nan"), 16],
                                   np.ma.masked_array([16, 16], [0, 1])])
@pytest.mark.parametrize("call", [dlbatch.apply_dl_model, dlbatch.train_dl_model_batch])
def test_a_broken_original_image_size_is_a_sample_error(value, call):
    """apply_dl_model maps results back to original_image_size: a broken one raised
    ValueError/TypeError/KeyError/MaskError from deep inside the result decoding."""
    model = make_model("rectangle1")
    samples = valid_batch(model)
    samples[1]["original_image_size"] = value
    refused(model, samples, "sample 1", "'original_image_size'", call=call)


def test_a_valid_original_image_size_still_maps_results_back():
    model = make_model("segmentation")
    samples = valid_batch(model, n=1)
    samples[0]["original_image_size"] = np.array([32.0, 48.0])
    assert dlbatch.apply_dl_model(model, samples)[0]["segmentation_image"].shape == (32, 48)


def test_a_masked_image_is_refused_rather_than_read_through_its_mask():
    model = make_model("classification")
    samples = valid_batch(model)
    samples[0]["image"] = np.ma.masked_greater(samples[0]["image"], 30.0)
    refused(model, samples, "sample 0", "'image'", "masked")


@pytest.mark.parametrize("dtype", ["float64", "uint64"])
def test_segmentation_ids_beyond_int64_are_named_not_wrapped(dtype):
    """1e20 (or 2**64 - 1) used to be cast to int64 first and reported as a wrapped id."""
    model = make_model("segmentation")
    samples = valid_batch(model)
    big = 1e20 if dtype == "float64" else 2 ** 64 - 1
    samples[1]["segmentation_image"] = samples[1]["segmentation_image"].astype(dtype)
    samples[1]["segmentation_image"][3, 4] = big
    message = refused(model, samples, "sample 1", "'segmentation_image'", "int64")
    assert "-9223372036854775808" not in message and "[-1]" not in message


def test_a_box_label_beyond_int64_is_named_not_wrapped():
    model = make_model("rectangle1")
    samples = valid_batch(model)
    samples[0].update(bbox_row1=[2.0], bbox_col1=[2.0], bbox_row2=[6.0], bbox_col2=[6.0],
                      bbox_label_id=np.array([2 ** 64 - 1], np.uint64))  # was reported as class id -1
    message = refused(model, samples, "sample 0", "'bbox_label_id'", "int64")
    assert "[-1]" not in message


@pytest.mark.parametrize("kind", ["classification", "segmentation", "rectangle1", "rectangle2"])
def test_float64_image_values_beyond_float32_are_a_sample_error(kind):
    """1e300 is finite in float64 but infinite in the network: it used to surface as a
    non-finite loss (train) or NaN results (apply) without naming the sample."""
    model = make_model(kind)
    samples = valid_batch(model)
    samples[1]["image"] = samples[1]["image"].astype(np.float64)
    samples[1]["image"][0, 0, 0] = -1e300
    refused(model, samples, "sample 1", "'image'", "float32")
    refused(model, samples, "sample 1", "'image'", call=dlbatch.apply_dl_model)
