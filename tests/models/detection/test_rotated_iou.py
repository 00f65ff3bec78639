"""Exact rotated IoU: against shapely polygons built from the SPEC's corner formula (written out
here, not taken from the code under test), known analytic cases, and rectangle1."""
from __future__ import annotations

import math

import numpy as np
import pytest

from dlbatch.models.detection import rotated_iou
from dlbatch.models.detection.boxes import Rectangle1
from dlbatch.models.detection.rotated_iou import bounding_boxes, corners, intersection_area, rotated_pairwise_iou

try:  # the independent reference; in the dev extra
    import shapely
except ImportError:  # pragma: no cover
    shapely = None

needs_shapely = pytest.mark.skipif(shapely is None, reason="the reference polygons need shapely (dev extra)")


def spec_polygons(boxes):
    """shapely polygons (x = col, y = row) of rectangle2 boxes, from the SPEC: d1 = (-sin, cos),
    d2 = (cos, sin) in (row, col), corners = centre +- l1 d1 +- l2 d2."""
    out = []
    for row, col, phi, l1, l2 in np.asarray(boxes, float).tolist():
        d1 = (-math.sin(phi), math.cos(phi))
        d2 = (math.cos(phi), math.sin(phi))
        pts = [(col + s1 * l1 * d1[1] + s2 * l2 * d2[1], row + s1 * l1 * d1[0] + s2 * l2 * d2[0])
               for s1, s2 in ((1, 1), (-1, 1), (-1, -1), (1, -1))]
        out.append(shapely.Polygon(pts))
    return np.array(out, dtype=object)


def shapely_iou(a, b):
    pa, pb = spec_polygons(a)[:, None], spec_polygons(b)[None, :]
    inter = shapely.area(shapely.intersection(pa, pb))
    union = shapely.area(pa) + shapely.area(pb) - inter
    out = np.zeros(inter.shape)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def random_boxes(rng, n, spread=30.0, size=(0.2, 10.0)):
    return np.stack([rng.uniform(0, spread, n), rng.uniform(0, spread, n), rng.uniform(-7, 7, n),
                     rng.uniform(*size, n), rng.uniform(*size, n)], axis=1)


@needs_shapely
@pytest.mark.parametrize("seed", range(4))
def test_matches_shapely_on_random_pairs(seed):
    rng = np.random.default_rng(seed)
    a, b = random_boxes(rng, 50), random_boxes(rng, 60)  # 3000 pairs per seed
    b[:20, :2] = a[:20, :2] + rng.normal(0, 1.0, (20, 2))  # many strongly overlapping pairs
    want = shapely_iou(a, b)
    got = rotated_pairwise_iou(a, b)
    assert got.shape == (50, 60)
    assert (want > 0).mean() > 0.2
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


@needs_shapely
@pytest.mark.parametrize("seed", range(3))
def test_matches_shapely_on_grid_boxes_with_shared_edges_and_special_angles(seed):
    # integer centres and lengths and angles from a few special values: identical boxes, shared and
    # parallel edges, touching boxes, containment and phi vs phi + pi occur many times
    rng = np.random.default_rng(100 + seed)
    n = 60
    angles = np.array([0, math.pi / 2, math.pi, -math.pi / 2, math.pi / 4, -3 * math.pi / 4, 3 * math.pi / 2])
    boxes = np.stack([rng.integers(0, 6, n), rng.integers(0, 6, n), rng.choice(angles, n),
                      rng.integers(1, 4, n), rng.integers(1, 4, n)], axis=1).astype(float)
    want = shapely_iou(boxes, boxes)
    got = rotated_pairwise_iou(boxes, boxes)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)
    np.testing.assert_allclose(np.diag(got), 1.0, rtol=0, atol=1e-12)


@needs_shapely
def test_small_and_thin_boxes_far_from_the_origin_match_shapely():
    rng = np.random.default_rng(7)
    a = random_boxes(rng, 40, spread=4.0, size=(0.01, 3.0))
    b = random_boxes(rng, 40, spread=4.0, size=(0.01, 3.0))
    a[:, :2] += 5000.0
    b[:, :2] += 5000.0
    want = shapely_iou(a - [5000, 5000, 0, 0, 0], b - [5000, 5000, 0, 0, 0])  # shapely near the origin
    np.testing.assert_allclose(rotated_pairwise_iou(a, b), want, rtol=0, atol=1e-8)


def test_known_cases():
    box = np.array([[10.0, 20.0, 0.7, 5.0, 2.0]])
    assert rotated_pairwise_iou(box, box)[0, 0] == pytest.approx(1.0, abs=1e-14)
    flipped = box + [0, 0, math.pi, 0, 0]
    assert rotated_pairwise_iou(box, flipped)[0, 0] == pytest.approx(1.0, abs=1e-14)
    assert rotated_pairwise_iou(box, box - [0, 0, 3 * math.pi, 0, 0])[0, 0] == pytest.approx(1.0, abs=1e-13)
    # a square (side 2) and its 45-degree rotation: the intersection is a regular octagon of area
    # 4 - 4 * (2 - sqrt 2)^2 / 2 = 8 sqrt 2 - 8, the IoU (8 sqrt 2 - 8) / (8 - (8 sqrt 2 - 8)) = 1 / sqrt 2
    square = np.array([[3.0, 4.0, 0.0, 1.0, 1.0]])
    turned = np.array([[3.0, 4.0, math.pi / 4, 1.0, 1.0]])
    assert rotated_pairwise_iou(square, turned)[0, 0] == pytest.approx(1 / math.sqrt(2), abs=1e-14)
    assert intersection_area(square, turned)[0] == pytest.approx(8 * math.sqrt(2) - 8, abs=1e-13)
    # disjoint, but with overlapping bounding boxes (the clipping decides, not the prefilter)
    thin_a = np.array([[0.0, 0.0, math.pi / 4, 10.0, 0.5]])
    thin_b = np.array([[0.0, 4.0, math.pi / 4, 10.0, 0.5]])
    assert (bounding_boxes(thin_a)[0, 3] > bounding_boxes(thin_b)[0, 1])
    assert rotated_pairwise_iou(thin_a, thin_b)[0, 0] == 0.0
    # far apart
    assert rotated_pairwise_iou(box, box + [100, 0, 0, 0, 0])[0, 0] == 0.0


def test_containment_gives_the_area_ratio():
    outer = np.array([[10.0, 10.0, 0.3, 5.0, 4.0]])
    same_angle = np.array([[10.5, 9.0, 0.3, 2.0, 1.0]])
    other_angle = np.array([[10.0, 10.0, 1.1, 1.0, 0.5]])  # circumradius sqrt(1.25) < 4
    assert rotated_pairwise_iou(outer, same_angle)[0, 0] == pytest.approx(8 / 80, abs=1e-14)
    assert rotated_pairwise_iou(other_angle, outer)[0, 0] == pytest.approx(2 / 80, abs=1e-14)
    assert intersection_area(outer, other_angle)[0] == pytest.approx(2.0, abs=1e-13)  # B inside A
    assert intersection_area(other_angle, outer)[0] == pytest.approx(2.0, abs=1e-13)  # A inside B


@pytest.mark.parametrize("phi", [0.0, 0.3, math.pi / 2, -2.0, 1e-13])
def test_touching_boxes_have_iou_zero(phi):
    a = np.array([[7.0, 9.0, phi, 3.0, 1.0]])
    d1 = np.array([-math.sin(phi), math.cos(phi)])
    d2 = np.array([math.cos(phi), math.sin(phi)])
    along_d2 = a.copy()
    along_d2[0, :2] += 2 * 1.0 * d2  # shares the long edge
    along_d1 = a.copy()
    along_d1[0, :2] += 2 * 3.0 * d1 + 0.5 * d2  # shares part of the short edge
    corner = a.copy()
    corner[0, :2] += 2 * 3.0 * d1 + 2 * 1.0 * d2  # touches at a corner
    for other in (along_d2, along_d1, corner):
        assert rotated_pairwise_iou(a, other)[0, 0] == 0.0
        assert rotated_pairwise_iou(other, a)[0, 0] == 0.0
    # just overlapping instead of touching: small but positive
    closer = a.copy()
    closer[0, :2] += (2 * 1.0 - 0.01) * d2
    assert rotated_pairwise_iou(a, closer)[0, 0] == pytest.approx(0.01 / (4 - 0.01), rel=1e-9)


def test_degenerate_boxes_have_iou_zero():
    good = np.array([[5.0, 5.0, 0.2, 2.0, 1.0]])
    bad = np.array([[5.0, 5.0, 0.2, 0.0, 1.0], [5.0, 5.0, 0.2, 2.0, -1.0], [5.0, 5.0, 0.2, -2.0, -1.0],
                    [5.0, 5.0, np.nan, 2.0, 1.0], [np.nan, 5.0, 0.2, 2.0, 1.0], [5.0, 5.0, 0.2, np.nan, 1.0]])
    np.testing.assert_array_equal(rotated_pairwise_iou(good, bad), np.zeros((1, 6)))
    np.testing.assert_array_equal(rotated_pairwise_iou(bad, bad), np.zeros((6, 6)))


def axis_parallel_pairs(rng, n):
    """rectangle2 boxes with phi in {0, pi, +-pi/2} and the rectangle1 boxes they are."""
    r = rng.integers(0, 10, n).astype(float) + rng.choice([0.0, 0.5], n)
    c = rng.integers(0, 10, n).astype(float)
    l1, l2 = rng.integers(1, 5, n) / 2.0, rng.integers(1, 5, n) / 2.0
    phi = rng.choice([0.0, math.pi, math.pi / 2, -math.pi / 2], n)
    along_cols = np.isin(phi, [0.0, math.pi])  # d1 = (0, +-1)
    half_rows = np.where(along_cols, l2, l1)
    half_cols = np.where(along_cols, l1, l2)
    return np.stack([r, c, phi, l1, l2], axis=1), np.stack([r - half_rows, c - half_cols, r + half_rows,
                                                            c + half_cols], axis=1)


def test_axis_parallel_boxes_give_the_rectangle1_iou():
    rng = np.random.default_rng(3)
    a2, a1 = axis_parallel_pairs(rng, 80)
    b2, b1 = axis_parallel_pairs(rng, 70)
    want = Rectangle1.pairwise_iou(a1, b1)
    got = rotated_pairwise_iou(a2, b2)
    assert ((want > 0) & (want < 1)).sum() > 200 and (want == 1).sum() > 0 and (want == 0).sum() > 0
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=0)  # zeros (touching, disjoint) exactly


def test_symmetric_and_block_and_chunk_sizes_do_not_change_the_result(monkeypatch):
    rng = np.random.default_rng(11)
    a, b = random_boxes(rng, 37), random_boxes(rng, 23)
    full = rotated_pairwise_iou(a, b)
    np.testing.assert_allclose(rotated_pairwise_iou(b, a), full.T, rtol=0, atol=1e-13)
    np.testing.assert_array_equal(rotated_pairwise_iou(a, b, block=5), full)
    monkeypatch.setattr(rotated_iou, "PREFILTER_CELLS", 50)  # 2 rows of `a` per prefilter chunk
    np.testing.assert_array_equal(rotated_pairwise_iou(a, b, block=1), full)


def test_prefilter_skips_pairs_whose_bounding_boxes_do_not_overlap(monkeypatch):
    clipped = []

    def counting(a, b):
        clipped.append(len(a))
        return intersection_area(a, b)

    monkeypatch.setattr(rotated_iou, "intersection_area", counting)
    left = np.array([[0.0, 0.0, 0.5, 2.0, 1.0], [0.0, 1.0, -0.5, 2.0, 1.0]])
    right = np.array([[0.0, 100.0, 0.5, 2.0, 1.0], [50.0, 1.0, 0.5, 2.0, 1.0], [0.5, 0.5, 0.0, 1.0, 1.0]])
    iou = rotated_pairwise_iou(left, right)
    assert sum(clipped) == 2  # only the pairs with the last box
    assert np.all(iou[:, :2] == 0) and np.all(iou[:, 2] > 0)


def test_corners_and_bounding_boxes_by_hand():
    # phi = 0: d1 = (0, 1) (length1 along the columns), d2 = (1, 0)
    np.testing.assert_allclose(corners([[10.0, 20.0, 0.0, 3.0, 1.0]])[0],
                               [[11, 23], [11, 17], [9, 17], [9, 23]], atol=1e-15)
    # phi = pi/2: d1 = (-1, 0) (length1 upwards), d2 = (0, 1)
    np.testing.assert_allclose(corners([[10.0, 20.0, math.pi / 2, 3.0, 1.0]])[0],
                               [[7, 21], [13, 21], [13, 19], [7, 19]], atol=1e-14)
    np.testing.assert_allclose(bounding_boxes([[10.0, 20.0, math.pi / 2, 3.0, 1.0]]), [[7, 19, 13, 21]], atol=1e-14)
    s = math.sqrt(2)
    np.testing.assert_allclose(bounding_boxes([[0.0, 0.0, math.pi / 4, 2 * s, s]]), [[-3, -3, 3, 3]], atol=1e-14)
    # the bounding box is the extent of the corners
    rng = np.random.default_rng(5)
    boxes = random_boxes(rng, 30)
    c = corners(boxes)
    np.testing.assert_allclose(bounding_boxes(boxes), np.concatenate([c.min(axis=1), c.max(axis=1)], axis=1),
                               atol=1e-12)


def test_empty_and_invalid_inputs():
    assert rotated_pairwise_iou(np.zeros((0, 5)), np.zeros((3, 5))).shape == (0, 3)
    assert rotated_pairwise_iou([], [[1.0, 1.0, 0.0, 1.0, 1.0]]).shape == (0, 1)
    with pytest.raises(ValueError, match=r"\(N, 5\)"):
        rotated_pairwise_iou(np.zeros((2, 4)), np.zeros((2, 5)))
    with pytest.raises(ValueError, match="block"):
        rotated_pairwise_iou(np.ones((1, 5)), np.ones((1, 5)), block=0)
