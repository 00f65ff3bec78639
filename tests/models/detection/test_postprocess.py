"""The detection postprocess, step by step on hand-made cases, and against a loop reference."""
from __future__ import annotations

import functools

import numpy as np
import pytest

from dlbatch.models.detection.postprocess import (TOPK_PER_LEVEL, Detections, postprocess_batch,
                                                  postprocess_detections)

from .test_nms import clustered_boxes, greedy_reference, rect1_iou

BOX = np.array([0.0, 0.0, 10.0, 10.0])
FAR = BOX + 100.0
STEP = np.array([0.0, 4.0, 0.0, 4.0])  # IoU(BOX, BOX + STEP) = 60 / 140 = 0.43


def run(scores, boxes, levels=None, **params):
    scores = np.asarray(scores, dtype=np.float64)
    params = {"min_confidence": 0.5, "max_overlap": 0.5, "max_num_detections": 100, **params}
    levels = np.zeros(len(scores), dtype=int) if levels is None else np.asarray(levels)
    return postprocess_detections(scores, np.asarray(boxes, dtype=np.float64), levels, rect1_iou, **params)


def test_confidence_filter_is_strictly_greater():
    scores = [[0.5, 0.51], [0.2, 0.9], [0.49, 0.0]]
    det = run(scores, [BOX, FAR, BOX + 50], max_overlap=1.0)
    assert det.scores.tolist() == [0.9, 0.51]
    assert det.classes.tolist() == [1, 1]
    np.testing.assert_array_equal(det.boxes, [FAR, BOX])


def test_every_class_of_an_anchor_is_a_candidate():
    det = run([[0.9, 0.8, 0.7]], [BOX])
    assert det.classes.tolist() == [0, 1, 2] and len(det.boxes) == 3


def test_topk_is_per_pyramid_level():
    # level 0: four well separated candidates, level 1: two; top-2 per level
    boxes = [BOX + 20 * i for i in range(6)]
    scores = [[0.6], [0.9], [0.7], [0.8], [0.55], [0.65]]
    det = run(scores, boxes, levels=[0, 0, 0, 0, 1, 1], topk_per_level=2)
    assert det.scores.tolist() == [0.9, 0.8, 0.65, 0.55]
    # the global top-4 would have taken 0.7 of level 0 instead of level 1's 0.55
    assert run(scores, boxes, levels=[0, 0, 0, 0, 1, 1], topk_per_level=None).scores.tolist() == \
        [0.9, 0.8, 0.7, 0.65, 0.6, 0.55]


def test_topk_counts_anchor_class_pairs_and_breaks_ties_by_lower_anchor_then_class():
    scores = [[0.7, 0.8], [0.8, 0.7]]  # candidates 0: 0.7, 1: 0.8, 2: 0.8, 3: 0.7
    det = run(scores, [BOX, FAR], topk_per_level=3, max_overlap=1.0)
    assert list(zip(det.scores.tolist(), det.classes.tolist())) == [(0.8, 1), (0.8, 0), (0.7, 0)]
    np.testing.assert_array_equal(det.boxes, [BOX, FAR, BOX])
    assert TOPK_PER_LEVEL == 1000


def test_topk_zero_keeps_nothing():
    det = run([[0.9]], [BOX], topk_per_level=0)
    assert det.boxes.shape == (0, 4)


def test_clip_is_applied_to_the_returned_boxes_before_nms():
    calls = []

    def clip(b):
        calls.append(len(b))
        return np.clip(b, 0.0, 8.0)

    # unclipped IoU 100 / 144 = 0.69 < 0.7; clipped both become (0, 0, 8, 8): IoU 1
    det = run([[0.9], [0.8]], [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 12.0, 12.0]], max_overlap=0.7, clip=clip)
    assert calls == [2]
    np.testing.assert_array_equal(det.boxes, [[0.0, 0.0, 8.0, 8.0]])
    assert len(run([[0.9], [0.8]], [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 12.0, 12.0]], max_overlap=0.7).boxes) == 2


def test_per_class_nms_suppresses_within_a_class_only():
    # two anchors on the same object: class 0 on both, class 1 on the second anchor only
    scores = [[0.9, 0.0], [0.8, 0.7]]
    det = run(scores, [BOX, BOX + 1], max_overlap=0.5)
    assert list(zip(det.scores.tolist(), det.classes.tolist())) == [(0.9, 0), (0.7, 1)]


def test_class_agnostic_nms_runs_after_per_class_nms():
    # anchor 0: class 0 (0.9); anchor 1: class 0 (0.8) and class 1 (0.85); anchor 2: class 1 (0.6);
    # IoU 0.43 between neighbouring anchors, 0.11 between anchors 0 and 2
    boxes = [BOX, BOX + STEP, BOX + 2 * STEP]
    scores = [[0.9, 0.0], [0.8, 0.85], [0.0, 0.6]]
    iou = rect1_iou(np.array(boxes), np.array(boxes))
    assert iou[0, 1] == iou[1, 2] == pytest.approx(60 / 140) and iou[0, 2] == pytest.approx(20 / 180)
    # per class at 0.4: class 0 keeps 0.9 (0.8 suppressed), class 1 keeps 0.85 (0.6 suppressed)
    det = run(scores, boxes, max_overlap=0.4)
    assert list(zip(det.scores.tolist(), det.classes.tolist())) == [(0.9, 0), (0.85, 1)]
    # then class-agnostic at 0.4 on those two: 0.9 (class 0) suppresses 0.85 (class 1); 0.6 is
    # gone already. Class-agnostic FIRST would give [(0.9, 0), (0.6, 1)]: 0.6 overlaps only
    # the suppressed anchor 1, so HALCON's order of the steps is what this checks
    det = run(scores, boxes, max_overlap=0.4, max_overlap_class_agnostic=0.4)
    assert list(zip(det.scores.tolist(), det.classes.tolist())) == [(0.9, 0)]
    # per class at 0.5 suppresses nothing; class-agnostic at 0.4 then removes both anchor-1
    # candidates, and 0.6 survives because its only overlapping better box was suppressed
    det = run(scores, boxes, max_overlap=0.5, max_overlap_class_agnostic=0.4)
    assert list(zip(det.scores.tolist(), det.classes.tolist())) == [(0.9, 0), (0.6, 1)]


def test_class_agnostic_one_means_off_and_ties_keep_the_lower_candidate():
    scores = [[0.8, 0.8]]  # the same box, two classes, equal scores
    det = run(scores, [BOX])
    assert det.classes.tolist() == [0, 1]
    det = run(scores, [BOX], max_overlap_class_agnostic=0.99)
    assert det.classes.tolist() == [0]
    det = run([[0.7, 0.8]], [BOX], max_overlap_class_agnostic=0.99)
    assert det.classes.tolist() == [1]


def test_max_num_detections_keeps_the_best():
    scores = [[0.6], [0.9], [0.7], [0.8]]
    det = run(scores, [BOX + 20 * i for i in range(4)], max_num_detections=2)
    assert det.scores.tolist() == [0.9, 0.8]
    np.testing.assert_array_equal(det.boxes, [BOX + 20, BOX + 60])
    assert run(scores, [BOX + 20 * i for i in range(4)], max_num_detections=0).scores.shape == (0,)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_empty_result_shapes_and_dtypes(dtype):
    for scores, boxes in [(np.full((3, 2), 0.1, dtype), np.zeros((3, 5), dtype)),
                          (np.zeros((0, 2), dtype), np.zeros((0, 5), dtype))]:
        det = postprocess_detections(scores, boxes, np.zeros(len(scores), int), rect1_iou,
                                     min_confidence=0.5, max_overlap=0.5, max_num_detections=100,
                                     max_overlap_class_agnostic=0.3)
        assert isinstance(det, Detections)
        assert det.boxes.shape == (0, 5) and det.boxes.dtype == dtype
        assert det.scores.shape == (0,) and det.scores.dtype == dtype
        assert det.classes.shape == (0,) and det.classes.dtype == np.int64


def test_result_dtypes_follow_the_inputs():
    det = postprocess_detections(np.array([[0.9, 0.2]], np.float32), np.array([BOX], np.float32),
                                 np.zeros(1, int), rect1_iou, min_confidence=0.5, max_overlap=0.5,
                                 max_num_detections=10)
    assert det.boxes.dtype == np.float32 and det.scores.dtype == np.float32
    assert det.classes.dtype == np.int64 and det.classes.tolist() == [0]


def reference_postprocess(scores, boxes, levels, min_confidence, max_overlap, agnostic, max_num, topk):
    """The steps with explicit loops over candidates and the brute-force greedy NMS."""
    cands = [(a * scores.shape[1] + k, scores[a, k], int(levels[a]), a, k)
             for a in range(scores.shape[0]) for k in range(scores.shape[1]) if scores[a, k] > min_confidence]
    kept = []
    for level in sorted({c[2] for c in cands}):
        kept += sorted((c for c in cands if c[2] == level), key=lambda c: (-c[1], c[0]))[:topk]
    kept.sort(key=lambda c: c[0])
    b = np.array([boxes[c[3]] for c in kept]).reshape(-1, boxes.shape[1])
    s = np.array([c[1] for c in kept])
    cls = np.array([c[4] for c in kept], dtype=int)
    survivors = sorted(greedy_reference(b, s, max_overlap, cls))
    if agnostic < 1.0:
        order = greedy_reference(b[survivors], s[survivors], agnostic)
        final = [survivors[i] for i in order]
    else:
        final = sorted(survivors, key=lambda i: (-s[i], i))
    final = final[:max_num]
    return b[final], s[final], cls[final]


def test_random_images_match_a_loop_reference():
    rng = np.random.default_rng(3)
    for _ in range(40):
        anchors, num_classes = int(rng.integers(1, 80)), int(rng.integers(1, 4))
        boxes = clustered_boxes(rng, anchors)
        scores = rng.choice(np.array([0.3, 0.6, 0.6, 0.7, 0.95]), size=(anchors, num_classes)) \
            if rng.random() < 0.5 else rng.random((anchors, num_classes))
        levels = rng.integers(3, 6, size=anchors)
        params = dict(min_confidence=float(rng.choice([0.0, 0.3, 0.5])), max_overlap=float(rng.choice([0.3, 0.5])),
                      agnostic=float(rng.choice([0.3, 0.7, 1.0])), max_num=int(rng.integers(1, 30)),
                      topk=int(rng.integers(1, 20)))
        expected = reference_postprocess(scores, boxes, levels, **params)
        det = postprocess_detections(scores, boxes, levels, rect1_iou, min_confidence=params["min_confidence"],
                                     max_overlap=params["max_overlap"],
                                     max_overlap_class_agnostic=params["agnostic"],
                                     max_num_detections=params["max_num"], topk_per_level=params["topk"])
        np.testing.assert_array_equal(det.boxes, expected[0])
        np.testing.assert_array_equal(det.scores, expected[1])
        np.testing.assert_array_equal(det.classes, expected[2])


def test_batch_is_per_image_and_takes_one_clip_per_image():
    rng = np.random.default_rng(8)
    scores, boxes = rng.random((3, 20, 2)), np.stack([clustered_boxes(rng, 20) for _ in range(3)])
    levels = np.repeat([0, 1], 10)
    params = dict(min_confidence=0.3, max_overlap=0.5, max_num_detections=5, topk_per_level=4)
    clips = [functools.partial(np.clip, a_min=-5.0 * i, a_max=50.0 + i) for i in range(3)]
    out = postprocess_batch(scores, boxes, levels, rect1_iou, clip=clips, **params)
    assert len(out) == 3
    for i, det in enumerate(out):
        one = postprocess_detections(scores[i], boxes[i], levels, rect1_iou, clip=clips[i], **params)
        for got, want in zip(det, one):
            np.testing.assert_array_equal(got, want)
    shared = postprocess_batch(scores, boxes, levels, rect1_iou, clip=clips[1], **params)
    for det, one in zip(shared, postprocess_batch(scores, boxes, levels, rect1_iou, clip=[clips[1]] * 3, **params)):
        for got, want in zip(det, one):
            np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError):
        postprocess_batch(scores, boxes, levels, rect1_iou, clip=clips[:2], **params)


def test_bad_shapes_are_errors():
    with pytest.raises(ValueError):
        run([[0.9]], [BOX, FAR])
    with pytest.raises(ValueError):
        run([[0.9], [0.8]], [BOX, FAR], levels=[0])


def test_works_with_the_rectangle1_geometry_of_boxes_py():
    from dlbatch.models.detection.boxes import Rectangle1
    rng = np.random.default_rng(11)
    boxes, scores = clustered_boxes(rng, 60), rng.random((60, 3))
    levels = rng.integers(0, 3, size=60)
    params = dict(min_confidence=0.2, max_overlap=0.5, max_overlap_class_agnostic=0.7, max_num_detections=20,
                  topk_per_level=15)
    clip = functools.partial(Rectangle1.clip, height=64, width=80)
    det = postprocess_detections(scores, boxes, levels, Rectangle1.pairwise_iou, clip=clip, **params)
    ours = postprocess_detections(scores, boxes, levels, rect1_iou, clip=clip, **params)
    assert len(det.scores) > 5
    assert det.boxes.min() >= -0.5 and det.boxes[:, 2].max() <= 63.5 and det.boxes[:, 3].max() <= 79.5
    for got, want in zip(det, ours):
        np.testing.assert_array_equal(got, want)
