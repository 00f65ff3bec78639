"""Suggested anchor parameters: coverage checked independently of the module (full anchor set,
the IoU written out here), hand cases, the search raising subscales/ratios, and input errors."""
from __future__ import annotations

import numpy as np
import pytest

from dlbatch.core.errors import DLParamError, DLSampleError
from dlbatch.data import detection_samples
from dlbatch.models.detection.anchors import generate_anchors
from dlbatch.models.detection.detection_params import collect_boxes, covered_boxes, detection_params_from_samples
from dlbatch.models.detection.matcher import match_iou

KEYS = ("bbox_row1", "bbox_col1", "bbox_row2", "bbox_col2")


def iou_matrix(a, b):
    """IoU written out independently of boxes.py."""
    ih = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iw = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ih * iw
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def full_coverage(samples, height, width, params, threshold=0.5):
    """(share of boxes with an anchor of IoU >= threshold, share the matcher gives such an
    anchor), over every anchor of the suggested setting, image by image."""
    anchors = generate_anchors(height, width, params["min_level"], params["max_level"],
                               params["anchor_num_subscales"], params["anchor_aspect_ratios"]).boxes
    reachable, matched_ok, total = 0, 0, 0
    for s in samples:
        boxes = np.stack([np.asarray(s[k], float).reshape(-1) for k in KEYS], axis=1)
        if not len(boxes):
            continue
        iou = iou_matrix(boxes, anchors)
        matched = match_iou(iou, positive_threshold=threshold, negative_threshold=min(0.4, threshold))
        total += len(boxes)
        reachable += int((iou.max(axis=1) >= threshold).sum())
        matched_ok += sum(bool(np.any((matched == g) & (iou[g] >= threshold))) for g in range(len(boxes)))
    return reachable / total, matched_ok / total


def drawn_samples(n, height, width, seed, size=(6.0, 60.0), ratio=(1 / 3, 3.0), per_image=3):
    """Boxes with log-uniform size and aspect ratio, uniform position inside the image."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        m = int(rng.integers(0, per_image + 1))
        s = np.exp(rng.uniform(*np.log(size), m))
        r = np.exp(rng.uniform(*np.log(ratio), m))
        h, w = np.minimum(s * np.sqrt(r), height), np.minimum(s / np.sqrt(r), width)
        r1, c1 = rng.uniform(-0.5, height - 0.5 - h), rng.uniform(-0.5, width - 0.5 - w)
        out.append({"bbox_row1": r1, "bbox_col1": c1, "bbox_row2": r1 + h, "bbox_col2": c1 + w})
    return out


def check_suggestion(samples, height, width, **kw):
    params = detection_params_from_samples(samples, width, height, **kw)
    reachable, matched = full_coverage(samples, height, width, params, kw.get("iou_threshold", 0.5))
    assert params["coverage"] == pytest.approx(matched, abs=1e-12)
    assert reachable >= matched
    assert 2 ** params["max_level"] <= min(height, width)
    assert params["min_level"] <= params["max_level"]
    assert params["anchor_aspect_ratios"] == sorted(params["anchor_aspect_ratios"])
    assert params["anchors_per_location"] == params["anchor_num_subscales"] * len(params["anchor_aspect_ratios"])
    return params


@pytest.mark.parametrize("height, width, seed", [(64, 64, 0), (128, 96, 1)])
def test_synthetic_detection_samples_get_95_percent_coverage(height, width, seed):
    samples = detection_samples(120, height=height, width=width, class_ids=(1, 2, 3), seed=seed)
    params = check_suggestion(samples, height, width)
    assert params["coverage"] >= 0.95 and params["coverage_goal_met"]
    assert params["num_boxes"] == sum(len(s["bbox_row1"]) for s in samples)
    assert params["instance_type"] == "rectangle1"


@pytest.mark.parametrize("ratio, size, goal", [((1 / 3, 3.0), (6.0, 60.0), 0.95),
                                               ((0.1, 10.0), (8.0, 40.0), 0.95),
                                               ((0.8, 1.25), (4.0, 100.0), 0.99)])
def test_boxes_from_a_known_distribution_get_the_coverage_goal(ratio, size, goal):
    samples = drawn_samples(150, 128, 128, seed=3, size=size, ratio=ratio)
    params = check_suggestion(samples, 128, 128, coverage_goal=goal)
    assert params["coverage"] >= goal and params["coverage_goal_met"]


def test_wider_ratio_spread_needs_more_ratios():
    narrow = detection_params_from_samples(drawn_samples(150, 128, 128, 5, ratio=(0.9, 1.1)), 128, 128)
    wide = detection_params_from_samples(drawn_samples(150, 128, 128, 5, ratio=(0.1, 10.0)), 128, 128)
    assert narrow["anchor_aspect_ratios"] == [1.0]
    assert len(wide["anchor_aspect_ratios"]) >= 2
    assert min(wide["anchor_aspect_ratios"]) < 0.5 < 2 < max(wide["anchor_aspect_ratios"])
    # the search raised the ratios, which were short, rather than the subscales
    assert wide["anchor_num_subscales"] <= 2 and wide["anchors_per_location"] <= 8


def test_one_box_size_on_the_anchor_grid_by_hand():
    # 32 x 32 boxes (t = log2(32 / 4) = 3) centred on level-3 cells of a 128 x 128 image:
    # each equals an anchor of level 3, one subscale, ratio 1
    samples = [{"bbox_row1": [27.5], "bbox_col1": [3.5], "bbox_row2": [59.5], "bbox_col2": [35.5]},
               {"bbox_row1": [67.5, 3.5], "bbox_col1": [91.5, 19.5], "bbox_row2": [99.5, 35.5],
                "bbox_col2": [123.5, 51.5]}]
    params = check_suggestion(samples, 128, 128)
    assert (params["min_level"], params["max_level"], params["anchor_num_subscales"],
            params["anchor_aspect_ratios"], params["coverage"]) == (3, 3, 1, [1.0], 1.0)
    assert params["num_anchors"] == 16 * 16


def test_levels_respect_the_bounds_and_the_image_size():
    samples = drawn_samples(60, 32, 32, seed=2, size=(3.0, 30.0))
    params = check_suggestion(samples, 32, 32, lowest_level=2)
    assert params["min_level"] >= 2 and params["max_level"] <= 5
    params = check_suggestion(samples, 32, 32, highest_level=2)
    assert params["max_level"] <= 2


def test_short_coverage_is_reported_when_the_caps_stop_the_search():
    samples = drawn_samples(100, 128, 128, seed=4, ratio=(0.05, 20.0))
    params = check_suggestion(samples, 128, 128, max_num_subscales=1, max_num_aspect_ratios=1)
    assert not params["coverage_goal_met"] and params["coverage"] < 0.95
    assert params["anchor_num_subscales"] == 1 and len(params["anchor_aspect_ratios"]) == 1


@pytest.mark.parametrize("seed", range(4))
def test_covered_boxes_equal_matching_against_every_anchor(seed):
    """covered_boxes looks only at anchors near each image's boxes; the full matching agrees."""
    rng = np.random.default_rng(seed)
    samples = drawn_samples(40, 96, 64, seed=seed, size=(2.0, 70.0), ratio=(0.2, 5.0), per_image=5)
    boxes, owner = collect_boxes(samples, 96, 64)
    n = int(rng.integers(1, 4))
    ratios = sorted(rng.uniform(0.3, 3.0, int(rng.integers(1, 4))).tolist())
    low = int(rng.integers(0, 3))
    high = low + int(rng.integers(0, 3))
    threshold = float(rng.choice([0.3, 0.5, 0.7]))
    got = covered_boxes(boxes, owner, 96, 64, low, high, n, ratios, threshold)
    params = dict(min_level=low, max_level=high, anchor_num_subscales=n, anchor_aspect_ratios=ratios)
    reachable, matched = full_coverage(samples, 96, 64, params, threshold)
    assert got.mean() == pytest.approx(matched, abs=1e-12)


def test_empty_input_fails_with_a_clear_error():
    with pytest.raises(DLSampleError, match="no samples"):
        detection_params_from_samples([], 64, 64)
    empty = detection_samples(3, height=32, width=32, max_objects=0)
    with pytest.raises(DLSampleError, match="the 3 samples hold no boxes"):
        detection_params_from_samples(empty, 32, 32)


@pytest.mark.parametrize("change, message", [
    (lambda s: s[1].pop("bbox_col1"), r"sample 1 has no key 'bbox_col1'"),
    (lambda s: s[2].update(bbox_row2=np.array([1.0])), r"sample 2: box 0 is degenerate.*'bbox_row2'"),
    (lambda s: s[0].update(bbox_col2=np.array([80.0])), r"sample 0: box 0 lies outside the image.*'bbox_col2'"),
    (lambda s: s[1].update(bbox_row1=np.array([np.inf])), r"sample 1: 'bbox_row1' has a non-finite value"),
    (lambda s: s[2].update(image=np.zeros((32, 64, 3))), r"sample 2: 'image' is 32 x 64 but .* 64 x 64"),
])
def test_bad_samples_name_the_sample_and_key(change, message):
    samples = [{"image": np.zeros((64, 64, 3)), "bbox_row1": np.array([2.0]), "bbox_col1": np.array([3.0]),
                "bbox_row2": np.array([20.0]), "bbox_col2": np.array([30.0])} for _ in range(3)]
    change(samples)
    with pytest.raises(DLSampleError, match=message):
        detection_params_from_samples(samples, 64, 64)


@pytest.mark.parametrize("kw, message", [
    (dict(image_width=0), "image_width must be >= 1"),
    (dict(coverage_goal=1.5), r"coverage_goal must be a number in \(0, 1\]"),
    (dict(iou_threshold=0), r"iou_threshold must be a number in \(0, 1\]"),
    (dict(lowest_level=6), "allows levels up to 5"),
    (dict(highest_level=1, lowest_level=2), "highest_level must be >= 2"),
    (dict(max_num_subscales=0), "max_num_subscales must be >= 1"),
])
def test_bad_parameters(kw, message):
    samples = drawn_samples(5, 32, 48, seed=0)
    args = dict(image_width=48, image_height=32)
    args.update(kw)
    with pytest.raises(DLParamError, match=message):
        detection_params_from_samples(samples, **args)
