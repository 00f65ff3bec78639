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
