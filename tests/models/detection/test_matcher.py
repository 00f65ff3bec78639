"""Anchor matching: hand-made cases of the SPEC rules and a per-anchor loop on random matrices."""
from __future__ import annotations

import numpy as np
import pytest

from dlbatch.core.errors import DLParamError
from dlbatch.models.detection.anchors import generate_anchors
from dlbatch.models.detection.boxes import pairwise_iou
from dlbatch.models.detection.matcher import BACKGROUND, IGNORED, match_anchors, match_iou


def loop_match(iou, pos=0.5, neg=0.4):
    """The SPEC rules, anchor by anchor, in plain Python."""
    g_count, a_count = len(iou), len(iou[0])
    box_best = [max(iou[g]) for g in range(g_count)]
    out = []
    for a in range(a_count):
        column = [iou[g][a] for g in range(g_count)]
        if not column:
            out.append(BACKGROUND)
            continue
        top = max(column)
        claimers = [g for g in range(g_count) if box_best[g] > 0 and iou[g][a] == box_best[g]]
        at_top = [g for g in range(g_count) if column[g] == top]
        winner = ([g for g in at_top if g in claimers] or at_top)[0]
        if claimers or top >= pos:
            out.append(winner)
        elif top < neg:
            out.append(BACKGROUND)
        else:
            out.append(IGNORED)
    return np.array(out, dtype=np.int64)


def test_box_exactly_on_an_anchor():
    anchors = generate_anchors(32, 32, 2, 3, 2, [0.5, 1.0, 2.0]).boxes
    k = 57
    matched = match_anchors(anchors, anchors[k:k + 1])
    assert matched.dtype == np.int64 and matched.shape == (len(anchors),)
    assert matched[k] == 0
    iou = pairwise_iou(anchors[k:k + 1], anchors)[0]
    np.testing.assert_array_equal(matched == 0, iou >= 0.5)
    np.testing.assert_array_equal(matched == BACKGROUND, iou < 0.4)
    np.testing.assert_array_equal(matched == IGNORED, (iou >= 0.4) & (iou < 0.5))


def test_thresholds_positive_ignored_background_by_hand():
    box = np.array([[0, 0, 10, 10]], float)
    anchors = np.array([[0, 0, 10, 10],    # IoU 1
                        [0, 0, 10, 20],    # IoU 0.5 exactly: positive
                        [0, 0, 10, 22],    # IoU 100/220 = 0.4545: ignored
                        [0, 0, 10, 25],    # IoU 0.4 exactly: ignored
                        [0, 0, 10, 26],    # IoU 0.385: background
                        [50, 50, 60, 60]], float)  # no overlap
    np.testing.assert_array_equal(match_anchors(anchors, box), [0, 0, IGNORED, IGNORED, BACKGROUND, BACKGROUND])


def test_box_between_the_thresholds_claims_its_best_anchor():
    # the box's best IoU (0.4545) lies between the thresholds: its best anchor is claimed, the
    # other in-between anchor stays ignored
    box = np.array([[0, 0, 10, 10]], float)
    anchors = np.array([[0, 0, 10, 22], [0, 0, 10, 24], [40, 40, 50, 50]], float)
    np.testing.assert_array_equal(match_anchors(anchors, box), [0, IGNORED, BACKGROUND])


def test_box_smaller_than_every_anchor_claims_all_its_tied_best_anchors():
    anchors = generate_anchors(32, 32, 2, 3, 1, [1.0]).boxes  # 16 x 16 and 32 x 32 anchors
    box = np.array([[13.5, 9.5, 15.5, 11.5]])  # a 2 x 2 box
    iou = pairwise_iou(box, anchors)[0]
    assert iou.max() < 0.4
    matched = match_anchors(anchors, box)
    best = iou == iou.max()
    assert best.sum() > 1  # the box lies inside several 16 x 16 anchors with the same IoU
    np.testing.assert_array_equal(matched == 0, best)
    np.testing.assert_array_equal(matched[~best], BACKGROUND)
    # without the claim it would get nothing
    np.testing.assert_array_equal(match_anchors(anchors, box, claim_best=False), BACKGROUND)


def test_box_that_overlaps_no_anchor_claims_nothing():
    anchors = np.array([[0, 0, 4, 4], [0, 4, 4, 8]], float)
    np.testing.assert_array_equal(match_anchors(anchors, np.array([[10, 10, 12, 12]], float)), BACKGROUND)
    # a degenerate box has IoU 0 with everything
    np.testing.assert_array_equal(match_anchors(anchors, np.array([[1, 1, 1, 3]], float)), BACKGROUND)


def test_image_without_boxes_is_all_background():
    anchors = generate_anchors(16, 16, 1, 2, 1, [1.0]).boxes
    matched = match_anchors(anchors, np.zeros((0, 4)))
    assert matched.dtype == np.int64 and matched.shape == (len(anchors),)
    np.testing.assert_array_equal(matched, BACKGROUND)
    assert match_iou(np.zeros((3, 0))).shape == (0,)


def test_two_boxes_compete_for_one_anchor():
    anchors = np.array([[0, 0, 10, 10], [0, 20, 10, 30]], float)
    boxes = np.array([[0, 0, 10, 12],    # IoU 100/120 = 0.83 with anchor 0
                      [0, 0, 10, 11]],   # IoU 100/110 = 0.91 with anchor 0: wins it
                     float)
    np.testing.assert_array_equal(match_anchors(anchors, boxes), [1, BACKGROUND])
    # box order does not matter
    np.testing.assert_array_equal(match_anchors(anchors, boxes[::-1]), [0, BACKGROUND])


def test_a_claim_never_steals_from_a_box_with_higher_iou():
    # box 0's best anchor is anchor 1 (IoU 0.3), where box 1 has IoU 0.9: box 1 keeps anchor 1
    iou = np.array([[0.1, 0.3, 0.0],
                    [0.0, 0.9, 0.2]])
    np.testing.assert_array_equal(match_iou(iou), [BACKGROUND, 1, BACKGROUND])
    # on equal IoU the claiming box wins: box 1 claims anchor 2 (its best, 0.3), box 0 has 0.3 there too
    iou = np.array([[0.8, 0.0, 0.3],
                    [0.0, 0.0, 0.3]])
    np.testing.assert_array_equal(match_iou(iou), [0, BACKGROUND, 1])
    # both claim the same anchor at equal IoU: the lower index
    iou = np.array([[0.3, 0.0], [0.3, 0.1]])
    np.testing.assert_array_equal(match_iou(iou), [0, BACKGROUND])


def test_claims_by_a_box_going_to_a_box_with_low_iou_follow_the_higher_iou():
    # box 0 claims anchor 0 (its best, 0.1); box 1 has 0.2 there (below the thresholds), so the
    # anchor goes to box 1, as torchvision does; box 1 also claims its own best anchor 1
    iou = np.array([[0.1, 0.0], [0.2, 0.35]])
    np.testing.assert_array_equal(match_iou(iou), [1, 1])


@pytest.mark.parametrize("seed", range(20))
def test_random_matrices_match_the_loop(seed):
    rng = np.random.default_rng(seed)
    g, a = rng.integers(1, 6), rng.integers(1, 40)
    iou = rng.choice([0.0, 0.1, 0.3, 0.4, 0.45, 0.5, 0.6, 0.9, 1.0], size=(g, a))  # ties and thresholds
    np.testing.assert_array_equal(match_iou(iou), loop_match(iou.tolist()))


def test_random_boxes_on_real_anchors_match_the_loop():
    rng = np.random.default_rng(3)
    anchors = generate_anchors(32, 48, 2, 4, 2, [0.5, 2.0]).boxes
    corner = rng.uniform(-0.5, 28, (6, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(2, 30, (6, 2))], axis=1)
    iou = pairwise_iou(boxes, anchors)
    np.testing.assert_array_equal(match_anchors(anchors, boxes), loop_match(iou.tolist()))


def test_custom_iou_function_and_nan():
    calls = []

    def iou_function(a, b):
        calls.append((a.shape, b.shape))
        return np.array([[0.7, np.nan]])

    got = match_anchors(np.zeros((2, 5)), np.zeros((1, 5)), pairwise_iou=iou_function)
    assert calls == [((1, 5), (2, 5))]
    np.testing.assert_array_equal(got, [0, BACKGROUND])


def test_invalid_thresholds():
    with pytest.raises(DLParamError, match="negative_threshold <= positive_threshold"):
        match_iou(np.zeros((1, 1)), positive_threshold=0.3, negative_threshold=0.4)
