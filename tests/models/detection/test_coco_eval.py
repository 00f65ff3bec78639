"""COCO detection evaluation against pycocotools' COCOeval on the same data (ties in scores
and IoU, duplicates, images without ground truth, classes without predictions or without
ground truth), hand-made cases and empty inputs."""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from dlbatch.models.detection.coco_eval import DetectionEvaluation, match_detections

IDS = [3, 7, 11, 20]  # ascending: COCOeval orders categories by id
PREDICTED = [0, 1, 3]  # class 11 (index 2) is never predicted
WITH_TRUTH = [0, 1, 2]  # class 20 (index 3) never has ground truth


def rectangle1_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(row1, col1, row2, col2) IoU in the operation order of pycocotools' bbIou."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    w = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    h = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    area_a = (a[:, 3] - a[:, 1]) * (a[:, 2] - a[:, 0])
    area_b = (b[:, 3] - b[:, 1]) * (b[:, 2] - b[:, 0])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(inter > 0, inter / np.where(inter > 0, union, 1.0), 0.0)


def random_images(seed: int, n_images: int = 12, integer: bool = True, crowded: bool = False) -> list[dict]:
    """Ground truth with duplicates, predictions jittered from it (several per object, exact
    duplicates, wrong classes) plus false positives; scores on a coarse grid so they tie."""
    rng = np.random.default_rng(seed)

    def box(center=None):
        if center is None:
            r, c = rng.uniform(0, 60, 2)
            h, w = rng.uniform(4, 30, 2)
        else:
            r, c, h, w = center[0], center[1], center[2] - center[0], center[3] - center[1]
            r, c = r + rng.uniform(-4, 4), c + rng.uniform(-4, 4)
            h, w = max(1.0, h + rng.uniform(-4, 4)), max(1.0, w + rng.uniform(-4, 4))
        out = np.array([r, c, r + h, c + w])
        return np.round(out) if integer else out

    images = []
    for i in range(n_images):
        num_gt = 0 if i % 4 == 1 else rng.integers(1, 6)
        gt = [box() for _ in range(num_gt)]
        gt_cls = list(rng.choice(WITH_TRUTH, num_gt))
        if num_gt and rng.random() < 0.5:  # duplicate object
            gt.append(gt[0].copy())
            gt_cls.append(gt_cls[0])
        boxes, cls = [], []
        for g, c in zip(gt, gt_cls):
            for _ in range(rng.integers(0, 12 if crowded else 4)):
                boxes.append(box(g))
                cls.append(c if rng.random() < 0.8 else rng.choice(PREDICTED))
            if boxes and rng.random() < 0.3:  # exact duplicate detection
                boxes.append(boxes[-1].copy())
                cls.append(cls[-1])
        for _ in range(rng.integers(0, 5)):  # false positives
            boxes.append(box())
            cls.append(rng.choice(PREDICTED))
        cls = [c if c in PREDICTED else PREDICTED[0] for c in cls]
        scores = rng.integers(0, 8, len(boxes)) / 8  # many ties
        images.append({"pred_boxes": np.array(boxes).reshape(-1, 4), "pred_scores": scores,
                       "pred_class_indices": np.array(cls, dtype=np.int64),
                       "gt_boxes": np.array(gt).reshape(-1, 4), "gt_class_indices": np.array(gt_cls, dtype=np.int64)})
    return images


def iou_tie_image() -> dict:
    """A detection with equal IoU (9/11) on two different truths, then an exact hit on the
    first: COCOeval gives the tied detection the later truth, so both detections match."""
    return {"pred_boxes": np.array([[0.0, 1, 10, 11], [0, 0, 10, 10]]), "pred_scores": np.array([0.9, 0.8]),
            "pred_class_indices": np.array([0, 0]), "gt_boxes": np.array([[0.0, 0, 10, 10], [0, 2, 10, 12]]),
            "gt_class_indices": np.array([0, 0])}


def xywh(b) -> list[float]:
    return [float(b[1]), float(b[0]), float(b[3] - b[1]), float(b[2] - b[0])]


def cocoeval(images: list[dict], max_dets: int = 100):
    """pycocotools' COCOeval on the same data: image ids 1.. in order, annotation ids 1.."""
    coco = pytest.importorskip("pycocotools.coco")
    cocoeval_module = pytest.importorskip("pycocotools.cocoeval")
    anns, dets = [], []
    for i, im in enumerate(images, start=1):
        for b, c in zip(im["gt_boxes"], im["gt_class_indices"]):
            bb = xywh(b)
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": IDS[c], "bbox": bb,
                         "area": bb[2] * bb[3], "iscrowd": 0})
        for b, s, c in zip(im["pred_boxes"], im["pred_scores"], im["pred_class_indices"]):
            dets.append({"image_id": i, "category_id": IDS[c], "bbox": xywh(b), "score": float(s)})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = coco.COCO()
        gt.dataset = {"images": [{"id": i} for i in range(1, len(images) + 1)],
                      "categories": [{"id": k} for k in IDS], "annotations": anns}
        gt.createIndex()
        ev = cocoeval_module.COCOeval(gt, gt.loadRes(dets), "bbox")
        if max_dets != 100:
            ev.params.maxDets = [1, 2, max_dets]
        ev.evaluate()
        ev.accumulate()
        if max_dets == 100:
            ev.summarize()
    return ev


def evaluate(images: list[dict], max_dets: int = 100, pairwise_iou=rectangle1_iou) -> dict:
    ev = DetectionEvaluation(IDS, pairwise_iou, max_detections=max_dets)
    for im in images:
        ev.add(**im)
    return ev.summary()


def class_means(precision: np.ndarray) -> list[float]:
    """Per category: mean of the kept precision cells (T, R) of pycocotools' (T, R, K) slice."""
    out = []
    for k in range(precision.shape[2]):
        s = precision[:, :, k]
        out.append(float(np.mean(s[s > -1])) if (s > -1).any() else float("nan"))
    return out


def assert_matches(ours: dict, ev, check_stats: bool = True) -> None:
    precision = ev.eval["precision"][:, :, :, 0, -1]  # area "all", the largest maxDets
    if check_stats:
        np.testing.assert_allclose([ours["mean_ap"], ours["ap_50"], ours["ap_75"]], ev.stats[:3],
                                   rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours["class_ap"], class_means(precision), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours["class_ap_50"], class_means(precision[:1]), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours["mean_ap"], np.mean(precision[precision > -1]), rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_equals_cocoeval_on_integer_boxes_with_ties(seed):
    images = random_images(seed, integer=True)
    images.insert(seed, iou_tie_image())
    ours = evaluate(images)
    assert_matches(ours, cocoeval(images))
    assert ours["num_images"] == len(images)
    assert np.isnan(ours["class_ap"][3]) and ours["class_ap"][2] == 0.0  # no truth / no predictions
    assert 0 < ours["mean_ap"] < 1


@pytest.mark.parametrize("seed", [10, 11])
def test_equals_cocoeval_on_float_boxes(seed):
    images = random_images(seed, integer=False)
    assert_matches(evaluate(images), cocoeval(images))


@pytest.mark.parametrize("max_dets", [3, 100])
def test_equals_cocoeval_when_max_detections_cuts(max_dets):
    images = random_images(5, n_images=6, crowded=True)
    assert max(np.bincount(im["pred_class_indices"]).max() for im in images if len(im["pred_scores"])) > 3
    assert_matches(evaluate(images, max_dets=max_dets), cocoeval(images, max_dets=max_dets),
                   check_stats=max_dets == 100)


def test_one_perfect_detection_has_ap_one():
    ev = DetectionEvaluation([1, 2], rectangle1_iou)
    box = np.array([[10.0, 20.0, 30.0, 50.0]])
    ev.add(box, [0.9], [0], box, [0])
    s = ev.summary()
    one = pytest.approx(1.0, abs=1e-15)  # COCOeval's precision tp / (tp + fp + eps)
    assert s["mean_ap"] == one and s["ap_50"] == one and s["ap_75"] == one
    assert s["class_ap"][0] == one and s["class_ap_50"][0] == one
    assert np.isnan(s["class_ap"][1]) and np.isnan(s["class_ap_50"][1])
    assert s["num_images"] == 1


def test_empty_inputs():
    assert np.isnan(DetectionEvaluation([1], rectangle1_iou).summary()["mean_ap"])
    ev = DetectionEvaluation([1, 2], rectangle1_iou)
    ev.add(np.zeros((0, 4)), [], [], np.zeros((0, 4)), [])
    ev.add([], [], [], [], [])
    s = ev.summary()
    assert s["num_images"] == 2 and np.isnan(s["mean_ap"]) and np.isnan(s["class_ap"]).all()
    ev.add(np.zeros((0, 4)), [], [], [[0.0, 0.0, 5.0, 5.0]], [1])  # truth, no prediction: AP 0
    s = ev.summary()
    assert s["mean_ap"] == 0.0 and np.isnan(s["class_ap"][0]) and s["class_ap"][1] == 0.0


def test_on_equal_iou_the_later_ground_truth_is_taken():
    # detection 0 ties on both truths and takes the second; detection 1 only overlaps that
    # second one, so it matches only at thresholds above 0.6 where detection 0 does not
    ious = np.array([[0.6, 0.6], [0.0, 0.7]])
    matched = match_detections(ious)
    t = np.linspace(.5, .95, 10)
    np.testing.assert_array_equal(matched[:, 0], t <= 0.6)
    np.testing.assert_array_equal(matched[:, 1], (t > 0.6) & (t <= 0.7))


def test_geometry_is_a_parameter():
    """Boxes of another geometry (here rectangle2 (row, col, phi, l1, l2) with phi = 0) give
    the same result through their own pairwise IoU."""
    def to_rectangle1(b):
        b = np.asarray(b).reshape(-1, 5)
        return np.stack([b[:, 0] - b[:, 4], b[:, 1] - b[:, 3], b[:, 0] + b[:, 4], b[:, 1] + b[:, 3]], axis=1)

    def to_rectangle2(b):
        b = np.asarray(b).reshape(-1, 4)
        return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, np.zeros(len(b)),
                         (b[:, 3] - b[:, 1]) / 2, (b[:, 2] - b[:, 0]) / 2], axis=1)

    images = random_images(7, n_images=5)
    rotated = [dict(im, pred_boxes=to_rectangle2(im["pred_boxes"]), gt_boxes=to_rectangle2(im["gt_boxes"]))
               for im in images]
    ours = evaluate(rotated, pairwise_iou=lambda a, b: rectangle1_iou(to_rectangle1(a), to_rectangle1(b)))
    np.testing.assert_allclose(ours["class_ap"], evaluate(images)["class_ap"], atol=1e-12)


def test_rejects_bad_inputs():
    ev = DetectionEvaluation([1, 2], rectangle1_iou)
    box = np.zeros((1, 4))
    with pytest.raises(ValueError, match="class indices"):
        ev.add(box, [0.5], [2], box, [0])
    with pytest.raises(ValueError, match="scores"):
        ev.add(box, [0.5, 0.4], [0], box, [0])
    with pytest.raises(ValueError, match="pairwise_iou"):
        DetectionEvaluation([1], lambda a, b: np.zeros(3)).add(box, [0.5], [0], box, [0])
