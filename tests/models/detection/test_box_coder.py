"""Box coder: values by hand, round trip, the exp clamp, shapes and errors."""
from __future__ import annotations

import math

import numpy as np
import pytest

from dlbatch.models.detection.anchors import generate_anchors
from dlbatch.models.detection.box_coder import BBOX_XFORM_CLIP, decode, encode


def test_known_values_by_hand():
    anchor = np.array([[0.0, 0.0, 10.0, 20.0]])   # centre (5, 10), h 10, w 20
    box = np.array([[2.0, 4.0, 22.0, 14.0]])      # centre (12, 9), h 20, w 10
    np.testing.assert_allclose(encode(anchor, box), [[0.7, -0.05, math.log(2), math.log(0.5)]], rtol=1e-15)
    np.testing.assert_allclose(decode(anchor, [[0.7, -0.05, math.log(2), math.log(0.5)]]), box, rtol=1e-14)
    # a box equal to its anchor encodes to zeros
    np.testing.assert_array_equal(encode(anchor, anchor), [[0, 0, 0, 0]])


def test_decode_of_encode_is_the_identity():
    rng = np.random.default_rng(0)
    anchors = generate_anchors(64, 48, 2, 4, 3, [0.5, 1.0, 2.0]).boxes
    corner = rng.uniform(-0.5, 40, (len(anchors), 2))
    boxes = np.concatenate([corner, corner + rng.uniform(0.5, 60, (len(anchors), 2))], axis=1)
    deltas = encode(anchors, boxes)
    assert deltas.shape == (len(anchors), 4) and deltas.dtype == np.float64
    np.testing.assert_allclose(decode(anchors, deltas), boxes, rtol=0, atol=1e-10)
    # and encode(decode(d)) == d for deltas inside the clamp
    d = rng.normal(0, 1, (len(anchors), 4))
    np.testing.assert_allclose(encode(anchors, decode(anchors, d)), d, rtol=0, atol=1e-10)


def test_size_terms_are_clamped_at_log_1000_over_16():
    assert BBOX_XFORM_CLIP == pytest.approx(math.log(62.5))
    anchor = np.array([[0.0, 0.0, 4.0, 8.0]])  # centre (2, 4), h 4, w 8
    box = decode(anchor, [[0.0, 0.0, 50.0, BBOX_XFORM_CLIP]])
    # both sizes are 62.5 times the anchor's: h 250, w 500
    np.testing.assert_allclose(box, [[2 - 125, 4 - 250, 2 + 125, 4 + 250]])
    assert np.isfinite(decode(anchor, [[0.0, 0.0, 1e6, 1e6]])).all()
    # the clamp is from above only
    small = decode(anchor, [[0.0, 0.0, -10.0, 0.0]])
    np.testing.assert_allclose(small[0, 2] - small[0, 0], 4 * math.exp(-10))
    # centre terms are not clamped
    np.testing.assert_allclose(decode(anchor, [[100.0, -3.0, 0.0, 0.0]]), [[400, -24, 404, -16]])


def test_empty_and_errors():
    assert encode(np.zeros((0, 4)), np.zeros((0, 4))).shape == (0, 4)
    assert decode(np.zeros((0, 4)), np.zeros((0, 4))).shape == (0, 4)
    anchors = np.array([[0, 0, 2, 2], [0, 0, 4, 4]], float)
    with pytest.raises(ValueError, match="box 1 has height 0"):
        encode(anchors, np.array([[0, 0, 1, 1], [1, 1, 1, 3]], float))
    with pytest.raises(ValueError, match="anchor 0"):
        encode(np.array([[0, 0, 2, 0]], float), np.array([[0, 0, 1, 1]], float))
    with pytest.raises(ValueError, match="2 anchors but 1 rows"):
        encode(anchors, anchors[:1])
    with pytest.raises(ValueError, match=r"deltas must have shape \(anchors, 4\)"):
        decode(anchors, np.zeros((2, 5)))


def test_a_geometry_with_an_extra_column_adds_its_own_deltas():
    """The room left for rectangle2's angle: a toy geometry (cy, cx, h, w, t) whose fifth
    column is encoded as a plain difference."""

    class WithExtra:
        @staticmethod
        def to_centre(b):
            return np.asarray(b, float)

        @staticmethod
        def from_centre(c):
            return c

        @staticmethod
        def encode_extra(a, b):
            return b - a

        @staticmethod
        def decode_extra(a, d):
            return a + d

    anchors = np.array([[5.0, 5.0, 2.0, 4.0, 0.25]])
    boxes = np.array([[6.0, 3.0, 4.0, 4.0, 1.0]])
    deltas = encode(anchors, boxes, WithExtra)
    np.testing.assert_allclose(deltas, [[0.5, -0.5, math.log(2), 0.0, 0.75]])
    np.testing.assert_allclose(decode(anchors, deltas, WithExtra), boxes)
