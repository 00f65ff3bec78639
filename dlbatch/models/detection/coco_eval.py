"""COCO-style detection evaluation (pycocotools' COCOeval, iouType "bbox"), image by image.

The measures equal COCOeval's with areaRng "all", one maxDets (default 100), IoU thresholds
0.50:0.05:0.95 and 101 recall thresholds, no crowd regions:

- per image and class, detections are sorted by descending score (stable mergesort, so equal
  scores keep their input order) and only the first `max_detections` are kept;
- per IoU threshold t, each detection in that order takes, among the ground truths not yet
  matched at t with IoU >= t, the one with the highest IoU; on equal IoU the later ground
  truth wins (COCOeval's loop replaces its best match on `>=`);
- per class, all kept detections of all images are sorted by descending score (mergesort, ties
  keep the order the images were added in, as COCOeval's sorted image ids), precision is made
  non-increasing from the right and read at recall thresholds linspace(0, 1, 101) with
  searchsorted "left" (0 past the highest recall reached);
- a class without ground truth in any image has no AP (NaN here, -1 in COCOeval) and is left
  out of the means; mean_ap averages precision over thresholds, recall points and classes.

Only what the summary needs is kept per image: the scores of the kept detections and, per IoU
threshold, whether each matched, plus the number of ground truths per class; boxes are not.

The box geometry is a parameter: `pairwise_iou(a, b)` returns the (len(a), len(b)) IoU of two
box arrays (N, P). For rectangle1 boxes (row1, col1, row2, col2) in continuous pixel
coordinates, inter = max(0, min(row2) - max(row1)) * max(0, min(col2) - max(col1)) and
IoU = inter / (area_a + area_b - inter) is COCOeval's bbox IoU of [col1, row1, col2 - col1,
row2 - row1]. A NaN IoU matches nothing.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

PairwiseIoU = Callable[[np.ndarray, np.ndarray], np.ndarray]

# as pycocotools' Params.setDetParams (linspace, not arange, to hit .5, .55, ... exactly)
IOU_THRESHOLDS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)


def match_detections(ious: np.ndarray, thresholds: np.ndarray = IOU_THRESHOLDS) -> np.ndarray:
    """COCOeval's greedy matching of one image and class: `ious` (D, G) with detections in
    descending score order; returns (T, D) bool, True where detection d matched at threshold t.

    Detections are visited in order; at every threshold at once, each takes the highest IoU
    among still unmatched ground truths with IoU >= t, the last such ground truth on ties."""
    ious = np.asarray(ious, dtype=np.float64)
    num_det, num_gt = ious.shape
    matched = np.zeros((len(thresholds), num_det), dtype=bool)
    if num_det == 0 or num_gt == 0:
        return matched
    limits = np.minimum(thresholds, 1 - 1e-10)[:, None]  # COCOeval's min([t, 1-1e-10])
    gt_taken = np.zeros((len(thresholds), num_gt), dtype=bool)
    rows = np.arange(len(thresholds))
    for d in range(num_det):
        iou = ious[d][None, :]
        candidate = ~gt_taken & (iou >= limits)  # NaN compares False: never a candidate
        value = np.where(candidate, iou, -np.inf)
        best = value.max(axis=1, keepdims=True)
        # last index holding the row's maximum
        gt = num_gt - 1 - np.argmax((value == best)[:, ::-1], axis=1)
        hit = candidate.any(axis=1)
        matched[hit, d] = True
        gt_taken[rows[hit], gt[hit]] = True
    return matched


def class_precision(scores: Sequence[np.ndarray], matched: Sequence[np.ndarray], num_gt: int,
                    recall_thresholds: np.ndarray = RECALL_THRESHOLDS) -> np.ndarray:
    """COCOeval's accumulate for one class: per-image `scores` (D_i,) and `matched` (T, D_i)
    in the order the images were added, `num_gt` ground truths in all. Returns the
    interpolated precision (T, R), or None when the class has no ground truth."""
    if num_gt == 0:
        return None
    num_thresholds = matched[0].shape[0] if matched else len(IOU_THRESHOLDS)
    score = np.concatenate(scores) if scores else np.zeros(0)
    hits = np.concatenate(matched, axis=1) if matched else np.zeros((num_thresholds, 0), dtype=bool)
    order = np.argsort(-score, kind="mergesort")
    hits = hits[:, order]
    tp = np.cumsum(hits, axis=1).astype(np.float64)
    fp = np.cumsum(~hits, axis=1).astype(np.float64)
    recall = tp / num_gt
    precision = tp / (fp + tp + np.spacing(1))
    # envelope: precision at i is the maximum at i and beyond
    precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    out = np.zeros((num_thresholds, len(recall_thresholds)))
    for t in range(num_thresholds):
        at = np.searchsorted(recall[t], recall_thresholds, side="left")
        reached = at < precision.shape[1]
        out[t, reached] = precision[t, at[reached]]
    return out


class DetectionEvaluation:
    """COCO detection AP accumulated image by image (see the module docstring).

    `class_ids` name the classes; predicted and ground-truth classes are given as indices into
    it. `pairwise_iou(a, b)` -> (len(a), len(b)) defines the box geometry."""

    def __init__(self, class_ids: Sequence[int], pairwise_iou: PairwiseIoU, max_detections: int = 100):
        self.class_ids = list(class_ids)
        self.pairwise_iou = pairwise_iou
        self.max_detections = int(max_detections)
        if self.max_detections < 1:
            raise ValueError(f"max_detections must be >= 1, got {max_detections}")
        k = len(self.class_ids)
        self.num_images = 0
        self._num_gt = np.zeros(k, dtype=np.int64)
        self._scores: list[list[np.ndarray]] = [[] for _ in range(k)]
        self._matched: list[list[np.ndarray]] = [[] for _ in range(k)]

    def _classes(self, indices, n: int, what: str) -> np.ndarray:
        indices = np.asarray(indices).reshape(-1)
        if len(indices) != n:
            raise ValueError(f"{what}: {len(indices)} class indices for {n} boxes")
        if n and (not np.issubdtype(indices.dtype, np.integer)
                  or indices.min() < 0 or indices.max() >= len(self.class_ids)):
            raise ValueError(f"{what}: class indices must be integers in [0, {len(self.class_ids)})")
        return indices.astype(np.int64)

    def add(self, pred_boxes, pred_scores, pred_class_indices, gt_boxes, gt_class_indices) -> None:
        """Add one image: predictions (N, P) boxes, (N,) scores and class indices, ground
        truth (M, P) boxes and (M,) class indices."""
        pred_boxes = np.asarray(pred_boxes, dtype=np.float64)
        gt_boxes = np.asarray(gt_boxes, dtype=np.float64)
        pred_scores = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
        n, m = len(pred_boxes), len(gt_boxes)
        if len(pred_scores) != n:
            raise ValueError(f"predictions: {len(pred_scores)} scores for {n} boxes")
        pred_classes = self._classes(pred_class_indices, n, "predictions")
        gt_classes = self._classes(gt_class_indices, m, "ground truth")
        self.num_images += 1
        for c in np.union1d(pred_classes, gt_classes):
            gt = gt_boxes[gt_classes == c]
            mine = np.flatnonzero(pred_classes == c)
            keep = mine[np.argsort(-pred_scores[mine], kind="mergesort")[:self.max_detections]]
            self._num_gt[c] += len(gt)
            if len(keep) == 0:
                continue
            if len(gt):
                ious = np.asarray(self.pairwise_iou(pred_boxes[keep], gt), dtype=np.float64)
                if ious.shape != (len(keep), len(gt)):
                    raise ValueError(f"pairwise_iou returned shape {ious.shape}, "
                                     f"expected {(len(keep), len(gt))}")
                matched = match_detections(ious)
            else:
                matched = np.zeros((len(IOU_THRESHOLDS), len(keep)), dtype=bool)
            self._scores[c].append(pred_scores[keep])
            self._matched[c].append(matched)

    def summary(self) -> dict:
        """mean_ap (AP@[.50:.95]), ap_50, ap_75 (COCOeval's stats[0..2]), class_ap and
        class_ap_50 per class (NaN for a class without ground truth), num_images. The means
        are NaN when no class has ground truth (COCOeval: -1)."""
        k = len(self.class_ids)
        precision = np.full((len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), k), -1.0)
        for c in range(k):
            p = class_precision(self._scores[c], self._matched[c], int(self._num_gt[c]))
            if p is not None:
                precision[:, :, c] = p

        def mean(s: np.ndarray) -> float:  # COCOeval's _summarize: one mean over all kept cells
            s = s[s > -1]
            return float(np.mean(s)) if s.size else float("nan")

        t50 = np.flatnonzero(IOU_THRESHOLDS == .5)
        t75 = np.flatnonzero(IOU_THRESHOLDS == .75)
        return {
            "mean_ap": mean(precision),
            "ap_50": mean(precision[t50]),
            "ap_75": mean(precision[t75]),
            "class_ap": [mean(precision[:, :, c]) for c in range(k)],
            "class_ap_50": [mean(precision[t50, :, c]) for c in range(k)],
            "num_images": self.num_images,
        }
