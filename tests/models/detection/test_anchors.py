"""Anchors: counts, the binding order, centres and sizes against a loop written from the SPEC."""
from __future__ import annotations

import math

import numpy as np
import pytest

from dlbatch.core.errors import DLParamError
from dlbatch.models.detection.anchors import (Anchors, anchor_shapes, anchors_near, anchors_per_location, feature_size,
                                              generate_anchors, max_level_for)


def spec_anchors(height, width, min_level, max_level, n, ratios):
    """SPEC section 5 written out as nested loops: level, y, x, subscale, ratio."""
    out, levels = [], []
    for level in range(min_level, max_level + 1):
        s = 2 ** level
        for y in range(math.ceil(height / s)):
            for x in range(math.ceil(width / s)):
                pixels_r, pixels_c = range(y * s, y * s + s), range(x * s, x * s + s)
                cr, cc = sum(pixels_r) / s, sum(pixels_c) / s  # the mean of the covered pixel centres
                for i in range(n):
                    size = 4 * s * 2 ** (i / n)
                    for r in ratios:
                        h, w = size * math.sqrt(r), size / math.sqrt(r)
                        out.append((cr - h / 2, cc - w / 2, cr + h / 2, cc + w / 2))
                        levels.append(level)
    return np.array(out), np.array(levels)


def test_two_levels_by_hand():
    # 8 x 12 image, levels 1 (stride 2, 4 x 6 cells) and 2 (stride 4, 2 x 3 cells), 2 subscales, 2 ratios
    anchors = generate_anchors(8, 12, 1, 2, 2, [1.0, 4.0])
    assert isinstance(anchors, Anchors)
    assert anchors.per_level == [(1, 4, 6, 96), (2, 2, 3, 24)]
    assert len(anchors) == 120 and anchors.boxes.shape == (120, 4) and anchors.level.dtype == np.int64
    np.testing.assert_array_equal(anchors.level, [1] * 96 + [2] * 24)
    b = anchors.boxes
    # level 1, cell (0, 0): centre (0.5, 0.5); size 8: ratio 1 -> 8 x 8, ratio 4 -> 16 x 4
    np.testing.assert_allclose(b[0], [-3.5, -3.5, 4.5, 4.5])
    np.testing.assert_allclose(b[1], [-7.5, -1.5, 8.5, 2.5])
    # subscale 1: size 8 * sqrt(2), ratio 1
    half = 4 * math.sqrt(2)
    np.testing.assert_allclose(b[2], [0.5 - half, 0.5 - half, 0.5 + half, 0.5 + half])
    # level 1, cell (1, 2): index (1 * 6 + 2) * 4 = 32, centre (2.5, 4.5)
    np.testing.assert_allclose(b[32], [2.5 - 4, 4.5 - 4, 2.5 + 4, 4.5 + 4])
    # level 2 starts at 96; cell (1, 2) = index 96 + (1 * 3 + 2) * 4 = 116, centre (5.5, 9.5), size 16, ratio 4
    np.testing.assert_allclose(b[117], [5.5 - 16, 9.5 - 4, 5.5 + 16, 9.5 + 4])
    # last anchor: level 2, cell (1, 2), subscale 1, ratio 4: size 16 sqrt 2 -> h = 32 sqrt 2, w = 8 sqrt 2
    np.testing.assert_allclose(b[119], [5.5 - 16 * math.sqrt(2), 9.5 - 4 * math.sqrt(2),
                                        5.5 + 16 * math.sqrt(2), 9.5 + 4 * math.sqrt(2)])


@pytest.mark.parametrize("height, width, low, high, n, ratios", [
    (8, 12, 1, 2, 2, [1.0, 4.0]),
    (32, 16, 2, 4, 3, [0.5, 1.0, 2.0]),
    (10, 7, 0, 3, 1, [1.0]),        # sides that are not multiples of the strides: ceil
    (16, 16, 3, 3, 4, [0.25, 3.0]),
])
def test_every_anchor_matches_the_spec_loop(height, width, low, high, n, ratios):
    anchors = generate_anchors(height, width, low, high, n, ratios)
    want, levels = spec_anchors(height, width, low, high, n, ratios)
    np.testing.assert_allclose(anchors.boxes, want, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(anchors.level, levels)
    assert sum(count for *_, count in anchors.per_level) == len(want)
    for level, rows, cols, count in anchors.per_level:
        assert (rows, cols) == (math.ceil(height / 2 ** level), math.ceil(width / 2 ** level))
        assert count == rows * cols * anchors_per_location(n, ratios)


def test_sizes_areas_and_centres():
    anchors = generate_anchors(64, 64, 2, 4, 3, [0.5, 1.0, 2.0])
    b = anchors.boxes
    h, w = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    size = np.sqrt(h * w)
    stride = 2.0 ** anchors.level
    # area is size^2 with size = 4 * stride * 2^(i/3), ratio = h / w
    sub = np.tile(np.repeat(np.arange(3), 3), len(b) // 9)
    np.testing.assert_allclose(size, 4 * stride * 2 ** (sub / 3))
    np.testing.assert_allclose(h / w, np.tile([0.5, 1.0, 2.0], len(b) // 3))
    # centres sit on the stride grid (y + 0.5) * s - 0.5
    centre = (b[:, 0] + b[:, 2]) / 2
    cell = (centre + 0.5) / stride - 0.5
    np.testing.assert_allclose(cell, np.round(cell), atol=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_anchors_near_holds_every_anchor_that_overlaps_a_box(seed):
    rng = np.random.default_rng(seed)
    height, width = int(rng.integers(8, 80)), int(rng.integers(8, 80))
    low = int(rng.integers(0, 3))
    anchors = generate_anchors(height, width, low, low + int(rng.integers(0, 3)), int(rng.integers(1, 4)),
                               rng.uniform(0.2, 5.0, int(rng.integers(1, 4))))
    corner = rng.uniform(-0.5, [height - 0.5, width - 0.5], (int(rng.integers(1, 6)), 2))
    boxes = np.concatenate([corner, corner + rng.uniform(0.2, 30, corner.shape)], axis=1)
    near = anchors_near(anchors, boxes)
    assert near.dtype == np.int64 and np.all(np.diff(near) > 0)
    a = anchors.boxes
    overlap_h = np.minimum(a[None, :, 2], boxes[:, None, 2]) - np.maximum(a[None, :, 0], boxes[:, None, 0])
    overlap_w = np.minimum(a[None, :, 3], boxes[:, None, 3]) - np.maximum(a[None, :, 1], boxes[:, None, 1])
    touching = np.flatnonzero(((overlap_h > 0) & (overlap_w > 0)).any(axis=0))
    assert np.isin(touching, near).all()
    assert len(anchors_near(anchors, np.zeros((0, 4)))) == 0


def test_anchors_near_leaves_out_far_anchors():
    anchors = generate_anchors(256, 256, 2, 4, 3, [0.5, 1.0, 2.0])
    near = anchors_near(anchors, np.array([[10.0, 10.0, 30.0, 30.0]]))
    assert 0 < len(near) < len(anchors) / 10


def test_helpers():
    assert anchors_per_location(3, [0.5, 1.0, 2.0]) == 9
    assert anchors_per_location(1, [1.0]) == 1
    np.testing.assert_allclose(anchor_shapes(0, 1, [4.0]), [[8.0, 2.0]])
    assert feature_size(10, 7, 2) == (3, 2)
    assert max_level_for(64, 48) == 5 and max_level_for(64, 64) == 6 and max_level_for(1, 9) == 0


@pytest.mark.parametrize("args, message", [
    ((8, 8, 2, 1, 1, [1.0]), "max_level .* must be >= min_level"),
    ((8, 8, 1, 2, 0, [1.0]), "anchor_num_subscales must be >= 1"),
    ((8, 8, 1, 2, 1.5, [1.0]), "anchor_num_subscales must be an integer"),
    ((8, 8, 1, 2, 1, []), "anchor_aspect_ratios"),
    ((8, 8, 1, 2, 1, [1.0, -2.0]), "anchor_aspect_ratios"),
    ((8, 8, -1, 2, 1, [1.0]), "min_level must be >= 0"),
    ((0, 8, 1, 2, 1, [1.0]), "image_height must be >= 1"),
])
def test_invalid_parameters(args, message):
    with pytest.raises(DLParamError, match=message):
        generate_anchors(*args)


# --- oriented (rectangle2) anchors -----------------------------------------------------------------

def spec_oriented_anchors(height, width, min_level, max_level, n, ratios, angles):
    """Oriented anchors as nested loops: level, y, x, subscale, ratio, angle; r = length1 / length2."""
    out, levels = [], []
    for level in range(min_level, max_level + 1):
        s = 2 ** level
        for y in range(math.ceil(height / s)):
            for x in range(math.ceil(width / s)):
                cr, cc = sum(range(y * s, y * s + s)) / s, sum(range(x * s, x * s + s)) / s
                for i in range(n):
                    size = 4 * s * 2 ** (i / n)
                    for r in ratios:
                        for phi in angles:
                            out.append((cr, cc, phi, size * math.sqrt(r) / 2, size / math.sqrt(r) / 2))
                            levels.append(level)
    return np.array(out), np.array(levels)


def test_oriented_anchors_by_hand():
    from dlbatch.models.detection.anchors import generate_oriented_anchors, oriented_anchor_shapes
    # 8 x 12 image, levels 1 (4 x 6 cells) and 2 (2 x 3 cells), 2 subscales, 2 ratios, 3 angles: 12 per cell
    angles = [0.0, math.pi / 3, -math.pi / 4]
    anchors = generate_oriented_anchors(8, 12, 1, 2, 2, [1.0, 4.0], angles)
    assert anchors.per_level == [(1, 4, 6, 288), (2, 2, 3, 72)]
    assert anchors.boxes.shape == (360, 5) and anchors.level.dtype == np.int64
    np.testing.assert_array_equal(anchors.level, [1] * 288 + [2] * 72)
    b = anchors.boxes
    # level 1, cell (0, 0): centre (0.5, 0.5), size 8; a = (subscale * 2 + ratio) * 3 + angle
    np.testing.assert_allclose(b[0], [0.5, 0.5, 0.0, 4.0, 4.0])
    np.testing.assert_allclose(b[1], [0.5, 0.5, math.pi / 3, 4.0, 4.0])
    np.testing.assert_allclose(b[2], [0.5, 0.5, -math.pi / 4, 4.0, 4.0])
    np.testing.assert_allclose(b[3], [0.5, 0.5, 0.0, 8.0, 2.0])  # ratio 4 = length1 / length2
    half = 4 * math.sqrt(2)
    np.testing.assert_allclose(b[7], [0.5, 0.5, math.pi / 3, half, half])  # subscale 1, ratio 1, angle 1
    # level 1, cell (1, 2): first index (1 * 6 + 2) * 12 = 96, centre (2.5, 4.5)
    np.testing.assert_allclose(b[96 + 5], [2.5, 4.5, -math.pi / 4, 8.0, 2.0])
    # last anchor: level 2, cell (1, 2), centre (5.5, 9.5), size 16 sqrt 2, ratio 4, angle -pi/4
    np.testing.assert_allclose(b[-1], [5.5, 9.5, -math.pi / 4, 16 * math.sqrt(2), 4 * math.sqrt(2)])
    np.testing.assert_allclose(oriented_anchor_shapes(1, 2, [1.0, 4.0], angles), b[:12, 2:])
    assert anchors_per_location(2, [1.0, 4.0], 3) == anchors_per_location(2, [1.0, 4.0], angles) == 12


@pytest.mark.parametrize("height, width, low, high, n, ratios, angles", [
    (8, 12, 1, 2, 2, [1.0, 4.0], [0.0, 1.0]),
    (10, 7, 0, 3, 1, [1.0], [0.5]),
    (32, 16, 2, 4, 3, [0.5, 2.0], [0.0, math.pi / 4, math.pi / 2, -math.pi / 4]),
])
def test_every_oriented_anchor_matches_the_spec_loop(height, width, low, high, n, ratios, angles):
    from dlbatch.models.detection.anchors import generate_oriented_anchors
    anchors = generate_oriented_anchors(height, width, low, high, n, ratios, angles)
    want, levels = spec_oriented_anchors(height, width, low, high, n, ratios, angles)
    np.testing.assert_allclose(anchors.boxes, want, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(anchors.level, levels)
    plain = generate_anchors(height, width, low, high, n, ratios)
    assert [p[:3] for p in plain.per_level] == [p[:3] for p in anchors.per_level]
    for (*_, count), (*_, plain_count) in zip(anchors.per_level, plain.per_level):
        assert count == plain_count * len(angles)
    # at phi = pi/2 (length1 along the rows) an oriented anchor is the rectangle1 anchor of the same ratio
    upright = generate_oriented_anchors(height, width, low, high, n, ratios, [math.pi / 2])
    from dlbatch.models.detection.rotated_iou import bounding_boxes
    np.testing.assert_allclose(bounding_boxes(upright.boxes), plain.boxes, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_anchors_near_holds_every_overlapping_oriented_anchor(seed):
    from dlbatch.models.detection.anchors import generate_oriented_anchors
    from dlbatch.models.detection.rotated_iou import rotated_pairwise_iou
    rng = np.random.default_rng(seed)
    height, width = int(rng.integers(8, 64)), int(rng.integers(8, 64))
    low = int(rng.integers(0, 3))
    anchors = generate_oriented_anchors(height, width, low, low + int(rng.integers(0, 2)), int(rng.integers(1, 3)),
                                        rng.uniform(0.2, 5.0, int(rng.integers(1, 3))),
                                        rng.uniform(-math.pi, math.pi, int(rng.integers(1, 4))))
    n = int(rng.integers(1, 5))
    boxes = np.stack([rng.uniform(-0.5, height - 0.5, n), rng.uniform(-0.5, width - 0.5, n),
                      rng.uniform(-4, 4, n), rng.uniform(0.2, 20, n), rng.uniform(0.1, 3, n)], axis=1)
    near = anchors_near(anchors, boxes)
    assert near.dtype == np.int64 and np.all(np.diff(near) > 0)
    overlapping = np.flatnonzero((rotated_pairwise_iou(boxes, anchors.boxes) > 0).any(axis=0))
    assert len(overlapping) > 0
    assert np.isin(overlapping, near).all()
    assert len(near) < len(anchors) or len(anchors) < 200
    # rectangle1 boxes against oriented anchors: the anchors' bounding boxes count
    from dlbatch.models.detection.rotated_iou import bounding_boxes
    assert np.isin(overlapping, anchors_near(anchors, bounding_boxes(boxes))).all()
    assert len(anchors_near(anchors, np.zeros((0, 5)))) == 0


def test_anchors_near_oriented_leaves_out_far_anchors():
    from dlbatch.models.detection.anchors import generate_oriented_anchors
    anchors = generate_oriented_anchors(256, 256, 2, 4, 2, [0.5, 2.0], [0.0, math.pi / 4])
    near = anchors_near(anchors, np.array([[20.0, 20.0, 0.3, 10.0, 5.0]]))
    assert 0 < len(near) < len(anchors) / 10


@pytest.mark.parametrize("angles, message", [
    ([], "anchor angles"),
    ([0.0, float("nan")], "anchor angles"),
    ([[0.0]], "anchor angles"),
])
def test_invalid_oriented_parameters(angles, message):
    from dlbatch.models.detection.anchors import generate_oriented_anchors
    with pytest.raises(DLParamError, match=message):
        generate_oriented_anchors(8, 8, 1, 2, 1, [1.0], angles)


def test_anchors_per_location_angle_count():
    assert anchors_per_location(3, [0.5, 1.0, 2.0]) == 9  # existing callers: one angle
    assert anchors_per_location(3, [0.5, 1.0, 2.0], 4) == 36
    assert anchors_per_location(1, [1.0], np.array([0.0, 0.5])) == 2
    with pytest.raises(DLParamError, match="must be >= 1"):
        anchors_per_location(1, [1.0], 0)
    with pytest.raises(DLParamError, match="must be an integer"):
        anchors_per_location(1, [1.0], 2.5)
