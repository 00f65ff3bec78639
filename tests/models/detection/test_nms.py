"""Vectorised NMS against a brute-force greedy loop on random clustered box sets."""
from __future__ import annotations

import numpy as np
import pytest

from dlbatch.models.detection.nms import MAX_NMS_BOXES, batched_nms, nms


def rect1_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of rectangle1 boxes (row1, col1, row2, col2), (len(a), len(b)); test-only."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    rows = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    cols = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = rows * cols
    out = np.zeros(inter.shape)  # 0 where the boxes do not overlap (degenerate ones included)
    np.divide(inter, area_a[:, None] + area_b[None, :] - inter, out=out, where=inter > 0)
    return out


def scalar_iou(a, b) -> float:
    """IoU of two rectangle1 boxes with plain Python arithmetic (independent of rect1_iou)."""
    rows = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    cols = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = rows * cols
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def greedy_reference(boxes, scores, threshold, classes=None) -> list[int]:
    """Textbook greedy NMS with an explicit loop: visit by descending score (ties: lower index),
    keep a box unless a kept box (of the same class) overlaps it with IoU > threshold."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    kept: list[int] = []
    for i in order:
        suppressed = False
        for j in kept:
            if classes is not None and classes[i] != classes[j]:
                continue
            if scalar_iou(boxes[i], boxes[j]) > threshold:
                suppressed = True
                break
        if not suppressed:
            kept.append(i)
    return kept


def clustered_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    """n boxes around a few centres, jittered so that overlaps form suppression chains."""
    centres = rng.uniform(0, 100, size=(rng.integers(1, 4), 2))
    spread = rng.uniform(0.5, 4)  # tight clusters give chains at high thresholds too
    centre = centres[rng.integers(0, len(centres), size=n)] + rng.normal(0, spread, size=(n, 2))
    size = rng.uniform(5, 20, size=(n, 2))
    return np.concatenate([centre - size / 2, centre + size / 2], axis=1)


def random_scores(rng: np.random.Generator, n: int) -> np.ndarray:
    """Scores with deliberate ties (drawn from a handful of values half of the time)."""
    if rng.random() < 0.5:
        return rng.choice(np.array([0.2, 0.5, 0.5, 0.9]), size=n)
    return rng.random(n)


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_equals_greedy_loop_on_random_clustered_boxes(threshold):
    rng = np.random.default_rng(int(threshold * 10))
    chains = 0
    for _ in range(150):
        n = int(rng.integers(2, 60))
        boxes, scores = clustered_boxes(rng, n), random_scores(rng, n)
        expected = greedy_reference(boxes, scores, threshold)
        keep = nms(boxes, scores, threshold, rect1_iou)
        assert keep.dtype == np.int64
        assert keep.tolist() == expected
        # a chain: some box survives although a higher-ranked, itself suppressed box overlaps
        # it, so "suppressed by any higher box" (one iteration) would be wrong
        order = sorted(range(n), key=lambda i: (-scores[i], i))
        overlap = np.triu(rect1_iou(boxes[order], boxes[order]) > threshold, 1)
        one_pass = [order[j] for j in range(n) if not overlap[:, j].any()]
        chains += one_pass != expected
    assert chains > 30  # the random sets really exercise suppression chains


def test_nms_resolves_a_long_suppression_chain():
    # boxes in a row, each overlapping only its neighbours (IoU 0.6); scores descend along
    # the row, so greedy keeps every other box: 0, 2, 4, ...
    n = 41
    start = np.arange(n) * 2.5
    boxes = np.stack([np.zeros(n), start, np.full(n, 10.0), start + 10.0], axis=1)
    scores = np.linspace(1.0, 0.1, n)
    keep = nms(boxes, scores, 0.5, rect1_iou)
    assert keep.tolist() == greedy_reference(boxes, scores, 0.5)
    iou_next = rect1_iou(boxes[:1], boxes[1:2])[0, 0]
    assert iou_next > 0.5 and rect1_iou(boxes[:1], boxes[2:3])[0, 0] < 0.5
    assert keep.tolist() == list(range(0, n, 2))


def test_ties_keep_the_lower_index_first():
    box = np.array([[0.0, 0.0, 10.0, 10.0]])
    boxes = np.concatenate([box + 50, box, box, box + 50])
    keep = nms(boxes, np.array([0.5, 0.8, 0.8, 0.5]), 0.5, rect1_iou)
    assert keep.tolist() == [1, 0]


def test_iou_equal_to_threshold_does_not_suppress():
    # IoU of these two is exactly 1/3
    boxes = np.array([[0.0, 0.0, 10.0, 10.0], [0.0, 5.0, 10.0, 15.0]])
    assert rect1_iou(boxes[:1], boxes[1:])[0, 0] == pytest.approx(1 / 3)
    iou = float(rect1_iou(boxes[:1], boxes[1:])[0, 0])
    assert nms(boxes, np.array([0.9, 0.8]), iou, rect1_iou).tolist() == [0, 1]
    assert nms(boxes, np.array([0.9, 0.8]), np.nextafter(iou, 0), rect1_iou).tolist() == [0]


def test_empty_and_single_box():
    empty = nms(np.zeros((0, 4)), np.zeros(0), 0.5, rect1_iou)
    assert empty.shape == (0,) and empty.dtype == np.int64
    assert nms(np.array([[0.0, 0.0, 1.0, 1.0]]), np.array([0.3]), 0.5, rect1_iou).tolist() == [0]
    empty = batched_nms(np.zeros((0, 5)), np.zeros(0), np.zeros(0, dtype=int), 0.5, rect1_iou)
    assert empty.shape == (0,) and empty.dtype == np.int64


def test_identical_boxes_keep_only_the_best():
    boxes = np.tile([[3.0, 4.0, 13.0, 24.0]], (6, 1))
    scores = np.array([0.1, 0.7, 0.3, 0.9, 0.9, 0.2])
    assert nms(boxes, scores, 0.7, rect1_iou).tolist() == [3]
    # threshold 1.0: IoU > 1 never happens, nothing is suppressed
    assert nms(boxes, scores, 1.0, rect1_iou).tolist() == [3, 4, 1, 2, 5, 0]


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_batched_nms_equals_greedy_loop_per_class(threshold):
    rng = np.random.default_rng(100 + int(threshold * 10))
    for _ in range(100):
        n = int(rng.integers(1, 60))
        boxes, scores = clustered_boxes(rng, n), random_scores(rng, n)
        classes = rng.integers(0, 3, size=n)
        keep = batched_nms(boxes, scores, classes, threshold, rect1_iou)
        # same as NMS per class, merged by descending score (ties: lower index)
        per_class = [i for c in np.unique(classes)
                     for i in np.flatnonzero(classes == c)[greedy_reference(boxes[classes == c],
                                                                           scores[classes == c], threshold)]]
        expected = sorted(per_class, key=lambda i: (-scores[i], i))
        assert keep.tolist() == expected
        assert keep.tolist() == greedy_reference(boxes, scores, threshold, classes)


def test_batched_nms_different_classes_do_not_suppress_each_other():
    boxes = np.tile([[0.0, 0.0, 10.0, 10.0]], (4, 1))
    keep = batched_nms(boxes, np.array([0.9, 0.8, 0.7, 0.6]), np.array([0, 1, 0, 2]), 0.5, rect1_iou)
    assert keep.tolist() == [0, 1, 3]


def test_more_boxes_than_the_cap_is_an_error():
    boxes = np.zeros((11, 4))
    with pytest.raises(ValueError, match="top-k"):
        nms(boxes, np.zeros(11), 0.5, rect1_iou, max_boxes=10)
    assert MAX_NMS_BOXES >= 5000


def test_iou_is_computed_in_blocks_of_rows_for_large_n(monkeypatch):
    from dlbatch.models.detection import nms as nms_module
    monkeypatch.setattr(nms_module, "_ROWS_PER_BLOCK", 7)
    rng = np.random.default_rng(5)
    shapes = []

    def recording_iou(a, b):
        shapes.append((len(a), len(b)))
        return rect1_iou(a, b)

    boxes, scores = clustered_boxes(rng, 50), rng.random(50)
    classes = rng.integers(0, 2, size=50)
    assert nms(boxes, scores, 0.4, recording_iou).tolist() == greedy_reference(boxes, scores, 0.4)
    assert max(rows for rows, _ in shapes) == 7 and len(shapes) == 8
    assert (batched_nms(boxes, scores, classes, 0.4, recording_iou).tolist()
            == greedy_reference(boxes, scores, 0.4, classes))


def test_bad_shapes_are_errors():
    with pytest.raises(ValueError):
        nms(np.zeros((3, 4)), np.zeros(2), 0.5, rect1_iou)
    with pytest.raises(ValueError):
        batched_nms(np.zeros((3, 4)), np.zeros(3), np.zeros(2), 0.5, rect1_iou)
    with pytest.raises(ValueError, match="pairwise_iou"):
        nms(np.zeros((3, 4)), np.zeros(3), 0.5, lambda a, b: np.zeros((len(a), 1)))
