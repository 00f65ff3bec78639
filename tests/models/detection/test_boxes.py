"""rectangle1 geometry: IoU against a brute-force loop, clipping, sample keys, centre form."""
from __future__ import annotations

import numpy as np
import pytest

from dlbatch.core.errors import DLSampleError
from dlbatch.models.detection.boxes import (GEOMETRIES, RECTANGLE1_KEYS, Rectangle1, area, boxes_from_sample, clip,
                                            is_degenerate, pairwise_iou, stack_sample_keys)


def brute_iou(a, b):
    """IoU by the textbook formula, one pair at a time in plain Python floats."""
    out = np.zeros((len(a), len(b)))
    for i, (r1, c1, r2, c2) in enumerate(a.tolist()):
        for j, (s1, d1, s2, d2) in enumerate(b.tolist()):
            if r2 <= r1 or c2 <= c1 or s2 <= s1 or d2 <= d1:
                continue
            ih = min(r2, s2) - max(r1, s1)
            iw = min(c2, d2) - max(c1, d1)
            if ih <= 0 or iw <= 0:
                continue
            inter = ih * iw
            out[i, j] = inter / ((r2 - r1) * (c2 - c1) + (s2 - s1) * (d2 - d1) - inter)
    return out


def random_boxes(rng, n, degenerate_share=0.2):
    """Boxes on a coarse grid (so that touching and identical boxes occur), some degenerate."""
    corner = rng.integers(0, 8, (n, 2)).astype(float)
    size = rng.integers(1, 6, (n, 2)).astype(float)
    bad = rng.random(n) < degenerate_share
    size[bad] = rng.integers(-2, 1, (int(bad.sum()), 2))  # zero or negative height/width
    return np.concatenate([corner, corner + size], axis=1)


@pytest.mark.parametrize("seed", range(5))
def test_iou_matches_brute_force_on_grid_boxes_with_touching_identical_and_degenerate(seed):
    rng = np.random.default_rng(seed)
    a = random_boxes(rng, 30, degenerate_share=0)
    a[::3] = random_boxes(rng, 10, degenerate_share=1)
    height = a[:, 2:3] - a[:, 0:1]
    touching = a + np.concatenate([height, 0 * height, height, 0 * height], axis=1)  # the box below each box
    b = np.concatenate([random_boxes(rng, 25), a[:6], touching])  # plus identical and touching boxes
    with np.errstate(all="raise"):  # no division by zero anywhere
        got = pairwise_iou(a, b)
    np.testing.assert_allclose(got, brute_iou(a, b), rtol=0, atol=1e-12)
    assert got.shape == (30, 25 + 6 + 30)
    good = ~is_degenerate(a)
    np.testing.assert_array_equal(got[np.arange(6), 25 + np.arange(6)], np.where(good[:6], 1.0, 0.0))
    np.testing.assert_array_equal(got[np.arange(30), 31 + np.arange(30)], 0.0)


def test_iou_matches_brute_force_on_continuous_boxes():
    rng = np.random.default_rng(7)
    corner = rng.uniform(-0.5, 50, (40, 2))
    a = np.concatenate([corner, corner + rng.uniform(0.1, 20, (40, 2))], axis=1)
    np.testing.assert_allclose(pairwise_iou(a, a[::-1]), brute_iou(a, a[::-1]), rtol=1e-12, atol=1e-15)


def test_iou_hand_computed_cases():
    box = np.array([[0.0, 0.0, 2.0, 2.0]])
    others = np.array([[1, 1, 3, 3],      # overlap 1, union 7
                       [0, 0, 2, 2],      # identical
                       [0, 0, 1, 2],      # half inside
                       [2, 0, 4, 2],      # touching along a row edge
                       [0, 2, 2, 4],      # touching along a column edge
                       [0.5, 0.5, 0.5, 1.5],  # zero height inside the box
                       [1, 1, 0, 0]], float)  # inverted corners
    np.testing.assert_allclose(pairwise_iou(box, others)[0], [1 / 7, 1, 0.5, 0, 0, 0, 0])


def test_iou_empty_inputs_and_list_input():
    assert pairwise_iou(np.zeros((0, 4)), np.ones((3, 4))).shape == (0, 3)
    assert pairwise_iou([[0, 0, 1, 1]], np.zeros((0, 4))).shape == (1, 0)
    assert pairwise_iou([], []).shape == (0, 0)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        pairwise_iou(np.zeros((2, 5)), np.zeros((2, 4)))


def test_area_and_degenerate():
    b = np.array([[0, 0, 2, 3], [1, 1, 1, 4], [2, 2, 1, 5], [0, 0, 0.5, 0.25]], float)
    np.testing.assert_array_equal(area(b), [6, 0, 0, 0.125])
    np.testing.assert_array_equal(is_degenerate(b), [False, True, True, False])


def test_clip_to_the_image_extent():
    b = np.array([[-3, -1, 2, 9], [1, 2, 3, 4], [10, 10, 12, 12], [-9, -9, -7, -7]], float)
    got = clip(b, 6, 8)  # rows [-0.5, 5.5], cols [-0.5, 7.5]
    np.testing.assert_array_equal(got, [[-0.5, -0.5, 2, 7.5], [1, 2, 3, 4], [5.5, 7.5, 5.5, 7.5],
                                        [-0.5, -0.5, -0.5, -0.5]])
    np.testing.assert_array_equal(is_degenerate(got), [False, False, True, True])
    assert b[0, 0] == -3  # input untouched


def test_boxes_from_sample_stacks_the_four_keys():
    sample = {"bbox_row1": [1.0, 2.0], "bbox_col1": np.array([3, 4]), "bbox_row2": (5, 6),
              "bbox_col2": np.array([7.5, 8.5]), "image": None}
    got = boxes_from_sample(sample, 0)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, [[1, 3, 5, 7.5], [2, 4, 6, 8.5]])
    one = {k: 2.0 for k in RECTANGLE1_KEYS}
    assert boxes_from_sample(one).shape == (1, 4)
    empty = {k: np.zeros(0) for k in RECTANGLE1_KEYS}
    assert boxes_from_sample(empty, 3).shape == (0, 4)


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("bbox_col2"), r"sample 4 has no key 'bbox_col2'"),
    (lambda s: s.update(bbox_row2=[5.0]), r"sample 4: 'bbox_row2' has 1 values but 'bbox_row1' has 2"),
    (lambda s: s.update(bbox_col1=[3.0, np.nan]), r"sample 4: 'bbox_col1' has a non-finite value nan at box 1"),
    (lambda s: s.update(bbox_row1=[[1.0, 2.0]]), r"sample 4: 'bbox_row1' must be one value per box"),
    (lambda s: s.update(bbox_col2=["a", "b"]), r"sample 4: 'bbox_col2' must hold numbers"),
])
def test_boxes_from_sample_errors_name_the_sample_and_key(change, message):
    sample = {"bbox_row1": [1.0, 2.0], "bbox_col1": [3.0, 4.0], "bbox_row2": [5.0, 6.0], "bbox_col2": [7.0, 8.0]}
    change(sample)
    with pytest.raises(DLSampleError, match=message):
        boxes_from_sample(sample, 4)
    with pytest.raises(DLSampleError, match="is a list"):
        stack_sample_keys([1, 2], RECTANGLE1_KEYS, 4)


def test_centre_form_by_hand_and_round_trip():
    b = np.array([[-0.5, 1.0, 3.5, 2.0]])
    np.testing.assert_array_equal(Rectangle1.to_centre(b), [[1.5, 1.5, 4.0, 1.0]])
    rng = np.random.default_rng(0)
    boxes = random_boxes(rng, 20, degenerate_share=0)
    np.testing.assert_allclose(Rectangle1.from_centre(Rectangle1.to_centre(boxes)), boxes, atol=1e-12)


def test_check_reports_the_first_problem():
    ok = np.array([[-0.5, -0.5, 5.5, 7.5], [1, 1, 2, 2]], float)
    assert Rectangle1.check(ok, 6, 8) is None
    assert Rectangle1.check(np.zeros((0, 4)), 6, 8) is None
    box, key, what = Rectangle1.check(np.array([[1, 1, 2, 2], [1, 3, 2, 3]], float), 6, 8)
    assert (box, key) == (1, "bbox_col2") and "degenerate" in what
    box, key, what = Rectangle1.check(np.array([[1, 1, 2, 2], [1, 1, 2, 2], [0, 0, 5.6, 1]], float), 6, 8)
    assert (box, key) == (2, "bbox_row2") and "outside" in what and "5.5" in what
    assert Rectangle1.check(np.array([[0, 0, 5.6, 1]], float), 6, 8, tolerance=0.2) is None


def test_scale_maps_the_image_extent_onto_the_new_extent():
    full = np.array([[-0.5, -0.5, 9.5, 19.5]])  # a 10 x 20 image
    np.testing.assert_allclose(Rectangle1.scale(full, 0.5, 2.0), [[-0.5, -0.5, 4.5, 39.5]])
    # the centre of pixel (1, 1) of the 10 x 20 image: pixel 1 spans 0.5 .. 1.5 -> 1.5 .. 3.5 at twice the size
    np.testing.assert_allclose(Rectangle1.scale([[0.5, 0.5, 1.5, 1.5]], 2.0, 2.0), [[1.5, 1.5, 3.5, 3.5]])


def test_geometry_registry():
    assert GEOMETRIES["rectangle1"] is Rectangle1
    assert Rectangle1.num_params == len(Rectangle1.keys) == 4


def test_geometry_for_builds_the_configured_geometry():
    from dlbatch.core.errors import DLParamError
    from dlbatch.models.detection.boxes import geometry_for
    from dlbatch.models.detection.rectangle2 import Rectangle2

    assert geometry_for("rectangle1") is Rectangle1
    assert geometry_for("rectangle1", ignore_direction=False) is Rectangle1  # no direction to ignore
    undirected, directed = geometry_for("rectangle2"), geometry_for("rectangle2", ignore_direction=False)
    assert isinstance(undirected, Rectangle2) and undirected.ignore_direction is True
    assert isinstance(directed, Rectangle2) and directed.ignore_direction is False
    assert undirected.num_params == len(undirected.keys) == 5
    with pytest.raises(DLParamError, match="unknown instance_type 'rectangle3'.*rectangle1, rectangle2"):
        geometry_for("rectangle3")
