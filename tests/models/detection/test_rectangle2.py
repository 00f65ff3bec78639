"""rectangle2 geometry: angle ranges, the box coder's angle column round trips (near the
wrap-around), scaling against mapped corners, sample checks, centre form."""
from __future__ import annotations

import math

import numpy as np
import pytest

from dlbatch.core.errors import DLSampleError
from dlbatch.models.detection import box_coder
from dlbatch.models.detection.boxes import Rectangle1
from dlbatch.models.detection.rectangle2 import (RECTANGLE2_KEYS, Rectangle2, bounding_boxes, corners, normalize_phi,
                                                 wrap_angle)

PI = math.pi
EPS = 1e-9


def same_angle(x, y, period):
    """x == y modulo `period` (elementwise), up to 1e-9."""
    d = np.remainder(np.asarray(x) - np.asarray(y) + period / 2, period) - period / 2
    return np.all(np.abs(d) < 1e-9)


def spec_corners(box):
    """The 4 corners (row, col) of one box from the SPEC (d1 = (-sin, cos), d2 = (cos, sin))."""
    row, col, phi, l1, l2 = box
    d1, d2 = np.array([-math.sin(phi), math.cos(phi)]), np.array([math.cos(phi), math.sin(phi)])
    return np.array([[row, col] + s1 * l1 * d1 + s2 * l2 * d2 for s1, s2 in ((1, 1), (-1, 1), (-1, -1), (1, -1))])


def test_interface_and_configuration():
    g = Rectangle2()
    assert g.ignore_direction is True and Rectangle2(ignore_direction=False).ignore_direction is False
    assert (g.name, g.num_params, g.keys) == ("rectangle2", 5, RECTANGLE2_KEYS)
    assert RECTANGLE2_KEYS == ("bbox_row", "bbox_col", "bbox_phi", "bbox_length1", "bbox_length2")
    assert Rectangle2.num_params == 5 and Rectangle2.name == "rectangle2"
    assert g == Rectangle2(True) and g != Rectangle2(False) and hash(g) == hash(Rectangle2(True))
    assert "ignore_direction=False" in repr(Rectangle2(False))
    for name in ("as_boxes", "is_degenerate", "area", "pairwise_iou", "clip", "from_sample", "check", "scale",
                 "to_centre", "from_centre"):
        assert callable(getattr(g, name)) and hasattr(Rectangle1, name)


def test_boxes_area_degenerate_clip():
    g = Rectangle2()
    b = np.array([[1.0, 2.0, 0.5, 3.0, 2.0], [1.0, 2.0, 0.5, 0.0, 2.0], [1.0, 2.0, 0.5, 3.0, -1.0],
                  [1.0, 2.0, 0.5, np.nan, 1.0]])
    np.testing.assert_array_equal(g.is_degenerate(b), [False, True, True, True])
    np.testing.assert_allclose(g.area(b[:3]), [24.0, 0.0, 0.0])
    assert g.as_boxes([]).shape == (0, 5)
    with pytest.raises(ValueError, match=r"\(N, 5\)"):
        g.as_boxes(np.zeros((2, 4)))
    far = np.array([[-50.0, 500.0, 0.3, 30.0, 20.0]])
    clipped = g.clip(far, 10, 10)  # documented: rotated boxes are not clipped
    np.testing.assert_array_equal(clipped, far)
    assert clipped is not far


def test_pairwise_iou_and_helpers():
    g = Rectangle2()
    square = [[3.0, 4.0, 0.0, 1.0, 1.0]]
    assert g.pairwise_iou(square, [[3.0, 4.0, PI / 4, 1.0, 1.0]])[0, 0] == pytest.approx(1 / math.sqrt(2))
    assert g.pairwise_iou(square, [[3.0, 4.0, PI / 2, 1.0, 1.0]])[0, 0] == pytest.approx(1.0)
    box = np.array([[3.0, 4.0, 0.4, 2.5, 1.0]])
    np.testing.assert_allclose(corners(box)[0], spec_corners(box[0]), atol=1e-14)
    np.testing.assert_allclose(g.corners(box), corners(box))
    np.testing.assert_allclose(g.bounding_boxes(box), bounding_boxes(box))


@pytest.mark.parametrize("ignore_direction, half", [(True, PI / 2), (False, PI)])
def test_normalize_phi_and_wrap_angle_ranges(ignore_direction, half):
    period = 2 * half
    x = np.concatenate([np.linspace(-30, 30, 20001), [half, -half, 3 * half, -3 * half, 0.0, period, -period],
                        np.nextafter([half, -half, half, -half], [0, 0, 10, -10])])
    n = normalize_phi(x, ignore_direction)
    w = wrap_angle(x, ignore_direction)
    assert n.min() > -half and n.max() <= half  # (-half, half]
    assert w.min() >= -half and w.max() < half  # [-half, half)
    assert same_angle(n, x, period) and same_angle(w, x, period)
    inside = (x > -half) & (x <= half)
    np.testing.assert_array_equal(n[inside], x[inside])  # unchanged, bit for bit
    assert normalize_phi(half, ignore_direction) == half and normalize_phi(-half, ignore_direction) == half
    assert wrap_angle(half, ignore_direction) == -half and wrap_angle(-half, ignore_direction) == -half


def test_normalize_boxes():
    b = np.array([[1.0, 2.0, 3.0, 4.0, 5.0], [1.0, 2.0, -2.0, 4.0, 5.0]])
    np.testing.assert_allclose(Rectangle2(True).normalize(b)[:, 2], [3.0 - PI, -2.0 + PI])
    np.testing.assert_allclose(Rectangle2(False).normalize(b)[:, 2], [3.0, -2.0])
    np.testing.assert_array_equal(Rectangle2(True).normalize(b)[:, [0, 1, 3, 4]], b[:, [0, 1, 3, 4]])


def test_angle_encoding_by_hand():
    undirected, directed = Rectangle2(True), Rectangle2(False)
    # box -1.5 vs anchor 1.5: 3 radians apart, but only 0.14 for an undirected box (phi + pi)
    assert undirected.encode_extra([[1.5]], [[-1.5]])[0, 0] == pytest.approx(PI - 3.0)
    assert directed.encode_extra([[1.5]], [[-1.5]])[0, 0] == pytest.approx(-3.0)
    assert directed.encode_extra([[3.0]], [[-3.0]])[0, 0] == pytest.approx(2 * PI - 6.0)
    assert undirected.decode_extra([[1.5]], [[0.2]])[0, 0] == pytest.approx(1.7 - PI)
    assert directed.decode_extra([[1.5]], [[0.2]])[0, 0] == pytest.approx(1.7)
    assert directed.decode_extra([[3.0]], [[0.2]])[0, 0] == pytest.approx(3.2 - 2 * PI)


@pytest.mark.parametrize("ignore_direction", [True, False])
def test_box_coder_round_trip_near_the_wrap_around(ignore_direction):
    g = Rectangle2(ignore_direction)
    half, period = (PI / 2, PI) if ignore_direction else (PI, 2 * PI)
    special = np.array([PI / 2, -PI / 2, PI, -PI, 0.0])
    near = np.concatenate([special + s for s in (-1e-9, -1e-3, 0.0, 1e-3, 1e-9)])
    phis = np.concatenate([near, near + 2 * PI, [3 * PI / 2 - 1e-7, -3 * PI / 2 + 1e-7]])
    rng = np.random.default_rng(0)
    n = len(phis)
    anchor_phi = rng.choice(np.concatenate([near, rng.uniform(-PI, PI, 20)]), n)
    anchors = np.stack([rng.uniform(0, 50, n), rng.uniform(0, 50, n), normalize_phi(anchor_phi, ignore_direction),
                        rng.uniform(2, 10, n), rng.uniform(2, 10, n)], axis=1)
    boxes = np.stack([anchors[:, 0] + rng.normal(0, 3, n), anchors[:, 1] + rng.normal(0, 3, n), phis,
                      rng.uniform(1, 20, n), rng.uniform(1, 20, n)], axis=1)
    deltas = box_coder.encode(anchors, boxes, g)
    assert deltas.shape == (n, 5)
    assert deltas[:, 4].min() >= -half and deltas[:, 4].max() < half
    assert same_angle(anchors[:, 2] + deltas[:, 4], phis, period)
    decoded = box_coder.decode(anchors, deltas, g)
    np.testing.assert_allclose(decoded[:, [0, 1, 3, 4]], boxes[:, [0, 1, 3, 4]], rtol=1e-12, atol=1e-12)
    assert decoded[:, 2].min() > -half and decoded[:, 2].max() <= half
    assert same_angle(decoded[:, 2], phis, period)
    # the shared columns: dy, dx relative to the side along d1 (h = 2 l1) and across it (w = 2 l2)
    np.testing.assert_allclose(deltas[:, 0], (boxes[:, 0] - anchors[:, 0]) / (2 * anchors[:, 3]))
    np.testing.assert_allclose(deltas[:, 3], np.log(boxes[:, 4] / anchors[:, 4]))
    # the decoded box is the same box (IoU 1), direction or not
    iou = g.pairwise_iou(decoded, boxes)
    np.testing.assert_allclose(np.diag(iou), 1.0, atol=1e-9)


def test_directed_encoding_tells_phi_and_phi_plus_pi_apart():
    anchors = np.array([[5.0, 5.0, 0.1, 4.0, 2.0]])
    box = np.array([[5.0, 5.0, 0.1 + PI, 4.0, 2.0]])
    assert box_coder.encode(anchors, box, Rectangle2(True))[0, 4] == pytest.approx(0.0, abs=1e-12)
    assert abs(box_coder.encode(anchors, box, Rectangle2(False))[0, 4]) == pytest.approx(PI)


def test_centre_form_by_hand_and_round_trip():
    g = Rectangle2()
    b = np.array([[10.0, 20.0, 0.3, 4.0, 1.5]])
    np.testing.assert_allclose(g.to_centre(b), [[10.0, 20.0, 8.0, 3.0, 0.3]])
    np.testing.assert_array_equal(g.from_centre(g.to_centre(b)), b)
    odd = np.array([[1.0, 2.0, 7.0, 3.0, 4.0]])  # phi is not normalised by the centre form
    np.testing.assert_array_equal(g.from_centre(g.to_centre(odd)), odd)


def test_check_reports_the_first_problem():
    g = Rectangle2()
    ok = np.array([[-0.5, -0.5, 0.3, 50.0, 0.1], [5.5, 7.5, -3.0, 1.0, 1.0]])  # corners outside are fine
    assert g.check(ok, 6, 8) is None
    assert g.check(np.zeros((0, 5)), 6, 8) is None
    box, key, what = g.check(np.array([[1, 1, 0, 1, 1], [1, 1, 0, 0, 1]], float), 6, 8)
    assert (box, key) == (1, "bbox_length1") and "degenerate" in what and "bbox_length1 = 0.0" in what
    box, key, what = g.check(np.array([[1, 1, 0, 1, -2]], float), 6, 8)
    assert (box, key) == (0, "bbox_length2") and "-2.0" in what
    box, key, what = g.check(np.array([[1, 1, 0, 1, 1], [1, 1, 0, 1, 1], [5.6, 1, 0, 1, 1]], float), 6, 8)
    assert (box, key) == (2, "bbox_row") and "outside" in what and "5.5" in what
    box, key, what = g.check(np.array([[1, -0.7, 0, 1, 1]], float), 6, 8)
    assert (box, key) == (0, "bbox_col") and "cols [-0.5, 7.5]" in what
    assert g.check(np.array([[5.6, -0.6, 0, 1, 1]], float), 6, 8, tolerance=0.2) is None
    # the lengths come first within a box
    assert g.check(np.array([[-9, -9, 0, 0, 1]], float), 6, 8)[1] == "bbox_length1"


def test_scale_uniform_is_exact():
    g = Rectangle2()
    b = np.array([[3.0, 4.0, 0.7, 5.0, 2.0], [0.0, 0.0, 4.0, 1.0, 3.0]])
    s = g.scale(b, 2.5, 2.5)
    np.testing.assert_array_equal(s[:, 2], b[:, 2])  # phi untouched, even outside the range
    for old, new in zip(b, s):
        np.testing.assert_allclose(spec_corners(new), (spec_corners(old) + 0.5) * 2.5 - 0.5, atol=1e-12)


@pytest.mark.parametrize("phi", [0.0, PI / 2, PI, -PI / 2, 3 * PI / 2])
def test_scale_is_exact_for_axis_directions(phi):
    g = Rectangle2()
    b = np.array([[3.0, 4.0, phi, 5.0, 2.0]])
    s = g.scale(b, 0.5, 3.0)[0]
    assert same_angle(s[2], phi, 2 * PI) and abs(s[2] - phi) < 1e-12  # no turn, convention kept
    np.testing.assert_allclose(spec_corners(s), (spec_corners(b[0]) + 0.5) * [0.5, 3.0] - 0.5, atol=1e-12)


def test_scale_non_uniform_keeps_the_length1_axis_and_the_area():
    g = Rectangle2()
    rng = np.random.default_rng(1)
    b = np.stack([rng.uniform(0, 9, 20), rng.uniform(0, 9, 20), rng.uniform(-7, 7, 20), rng.uniform(1, 5, 20),
                  rng.uniform(1, 5, 20)], axis=1)
    sr, sc = 0.5, 1.7
    s = g.scale(b, sr, sc)
    np.testing.assert_allclose(g.area(s), g.area(b) * sr * sc, rtol=1e-12)
    for old, new in zip(b, s):
        # the ends of the length1 half-axis map exactly (the image is a parallelogram around that axis)
        d1_old = np.array([-math.sin(old[2]), math.cos(old[2])])
        d1_new = np.array([-math.sin(new[2]), math.cos(new[2])])
        for sign in (1, -1):
            mapped = (old[:2] + sign * old[3] * d1_old + 0.5) * [sr, sc] - 0.5
            np.testing.assert_allclose(new[:2] + sign * new[3] * d1_new, mapped, atol=1e-12)
        assert abs(new[2] - old[2]) < PI / 2  # the angle is kept near the given one
    np.testing.assert_allclose(s[:, :2], (b[:, :2] + 0.5) * [sr, sc] - 0.5)


def test_from_sample_stacks_the_five_keys():
    g = Rectangle2()
    sample = {"bbox_row": [1.0, 2.0], "bbox_col": [3.0, 4.0], "bbox_phi": [0.5, 7.0], "bbox_length1": [2.0, 3.0],
              "bbox_length2": [1.0, 1.5]}
    np.testing.assert_array_equal(g.from_sample(sample), [[1, 3, 0.5, 2, 1], [2, 4, 7.0, 3, 1.5]])
    del sample["bbox_phi"]
    with pytest.raises(DLSampleError, match="sample 3 has no key 'bbox_phi'"):
        g.from_sample(sample, 3)
