"""apply_dl_model on preprocessed samples gives results in the raw image's pixels: the same
network outputs as for the sample without `original_image_size` (network pixels), mapped back
by the inverse of the preprocessing scale."""
from __future__ import annotations

import numpy as np
import pytest

import dlbatch
from dlbatch.core.preprocess import resize_nearest
from dlbatch.data import detection_samples, segmentation_samples

RAW_H, RAW_W, SIDE = 45, 61, 32


def network_and_raw_results(model, raw):
    prepared = dlbatch.preprocess_dl_samples([raw], model)[0]
    in_network = {k: v for k, v in prepared.items() if k != "original_image_size"}
    return dlbatch.apply_dl_model(model, [in_network])[0], dlbatch.apply_dl_model(model, [prepared])[0]


def test_rectangle1_boxes_are_scaled_back_to_the_raw_image():
    model = dlbatch.create_dl_model("detection", backbone="compact", class_ids=[1, 2],
                                    image_dimensions=[SIDE, SIDE, 3], min_confidence=0.0,
                                    max_num_detections=5, seed=2)
    raw = detection_samples(1, height=RAW_H, width=RAW_W, class_ids=(1, 2), seed=4, min_objects=1)[0]
    net, out = network_and_raw_results(model, raw)
    assert len(net["bbox_confidence"]) == len(out["bbox_confidence"]) > 0
    for key, raw_size in (("bbox_row1", RAW_H), ("bbox_row2", RAW_H), ("bbox_col1", RAW_W), ("bbox_col2", RAW_W)):
        # pixel-centre convention: the image extent [-0.5, SIDE - 0.5] maps onto [-0.5, raw - 0.5]
        np.testing.assert_allclose(out[key], (net[key] + 0.5) * raw_size / SIDE - 0.5, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(out["bbox_class_id"], net["bbox_class_id"])
    np.testing.assert_array_equal(out["bbox_confidence"], net["bbox_confidence"])


def test_rectangle2_centres_and_lengths_follow_a_uniform_scale():
    model = dlbatch.create_dl_model("detection", backbone="compact", class_ids=[1, 2],
                                    image_dimensions=[SIDE, SIDE, 3], instance_type="rectangle2",
                                    min_confidence=0.0, max_num_detections=5, seed=2)
    raw = detection_samples(1, height=2 * SIDE, width=2 * SIDE, class_ids=(1, 2), seed=4,
                            instance_type="rectangle2", min_objects=1)[0]
    net, out = network_and_raw_results(model, raw)
    assert len(out["bbox_confidence"]) > 0
    np.testing.assert_allclose(out["bbox_row"], (net["bbox_row"] + 0.5) * 2 - 0.5, atol=1e-9)
    np.testing.assert_allclose(out["bbox_col"], (net["bbox_col"] + 0.5) * 2 - 0.5, atol=1e-9)
    np.testing.assert_allclose(out["bbox_length1"], 2 * net["bbox_length1"], rtol=1e-12)
    np.testing.assert_allclose(out["bbox_length2"], 2 * net["bbox_length2"], rtol=1e-12)
    np.testing.assert_allclose(out["bbox_phi"], net["bbox_phi"], atol=1e-12)


def test_segmentation_maps_have_the_raw_image_size():
    model = dlbatch.create_dl_model("segmentation", backbone="compact", class_ids=[0, 1, 2, 3],
                                    image_dimensions=[SIDE, SIDE, 3], seed=3)
    raw = segmentation_samples(1, height=RAW_H, width=RAW_W, seed=5)[0]
    net, out = network_and_raw_results(model, raw)
    assert out["segmentation_image"].shape == (RAW_H, RAW_W)
    for key in ("segmentation_image", "segmentation_confidence"):
        np.testing.assert_array_equal(out[key], resize_nearest(net[key], RAW_H, RAW_W))


@pytest.mark.parametrize("kind", ["detection", "segmentation"])
def test_evaluation_compares_in_network_pixels(kind):
    """A model evaluated on preprocessed samples of another size measures the same as on the
    same samples without original_image_size (labels and results both in network pixels)."""
    if kind == "detection":
        model = dlbatch.create_dl_model("detection", backbone="compact", class_ids=[1, 2],
                                        image_dimensions=[SIDE, SIDE, 3], min_confidence=0.0, seed=2)
        raws = detection_samples(3, height=RAW_H, width=RAW_W, class_ids=(1, 2), seed=6, min_objects=1)
    else:
        model = dlbatch.create_dl_model("segmentation", backbone="compact", class_ids=[0, 1, 2, 3],
                                        image_dimensions=[SIDE, SIDE, 3], seed=3)
        raws = segmentation_samples(3, height=RAW_H, width=RAW_W, seed=6)
    prepared = dlbatch.preprocess_dl_samples(raws, model)
    stripped = [{k: v for k, v in s.items() if k != "original_image_size"} for s in prepared]
    assert dlbatch.evaluate_dl_model(model, prepared) == dlbatch.evaluate_dl_model(model, stripped)
