"""From per-anchor class probabilities and decoded boxes to an image's detections.

The steps, in this order (torchvision's RetinaNet postprocess with HALCON's two overlaps):

1. candidates: every (anchor, class) pair whose probability is > min_confidence;
2. top-k per pyramid level: per level, the `topk_per_level` best candidates by score
   (torchvision's RetinaNet default 1000; None keeps them all);
3. clip: the candidates' boxes go through `clip` (e.g. cut to the image), if given;
4. per-class NMS with `max_overlap`: a candidate is suppressed by a better one of the SAME
   class whose IoU with it is > max_overlap (HALCON 'max_overlap');
5. class-agnostic NMS with `max_overlap_class_agnostic` over the survivors of 4: a detection
   is suppressed by a better one of ANY class whose IoU with it is > the threshold (HALCON
   'max_overlap_class_agnostic'; 1.0 means off);
6. the best `max_num_detections` by score.

Ordering and ties: candidates are numbered anchor-major, class-minor (anchor a, class k is
a * K + k); wherever scores tie (top-k, NMS, the final order) the lower number comes first.
A threshold >= 1.0 in step 4 or 5 suppresses nothing and that step is skipped.

Geometry comes in as `pairwise_iou(a, b) -> (len(a), len(b))` and `clip(boxes) -> boxes`,
so the same code serves rectangle1 (P = 4) and rectangle2 (P = 5) boxes. NMS needs an n x n
matrix (see nms.py): the candidates after step 2, at most levels x topk_per_level, must not
exceed nms.MAX_NMS_BOXES.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import numpy as np

from .nms import PairwiseIoU, batched_nms, nms

TOPK_PER_LEVEL = 1000  # torchvision RetinaNet's topk_candidates


class Detections(NamedTuple):
    """One image's detections, by descending score: boxes (D, P), scores (D,), classes (D,)
    (int64 indices into the score columns)."""
    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray


def postprocess_detections(scores: np.ndarray, boxes: np.ndarray, levels: np.ndarray,
                           pairwise_iou: PairwiseIoU, *, min_confidence: float, max_overlap: float,
                           max_num_detections: int, max_overlap_class_agnostic: float = 1.0,
                           topk_per_level: int | None = TOPK_PER_LEVEL,
                           clip: Callable[[np.ndarray], np.ndarray] | None = None) -> Detections:
    """Detections of one image from per-anchor class probabilities `scores` (A, K) (sigmoid
    outputs), decoded `boxes` (A, P) and each anchor's pyramid level `levels` (A,); the
    steps and their order are in the module docstring."""
    scores, boxes, levels = np.asarray(scores), np.asarray(boxes), np.asarray(levels)
    if scores.ndim != 2 or boxes.ndim != 2 or levels.shape != (len(scores),) or len(boxes) != len(scores):
        raise ValueError(f"need scores (A, K), boxes (A, P) and levels (A,), got {scores.shape}, "
                         f"{boxes.shape} and {levels.shape}")
    if max_num_detections < 0 or (topk_per_level is not None and topk_per_level < 0):
        raise ValueError("max_num_detections and topk_per_level must be >= 0")
    num_classes = scores.shape[1]
    # 1. candidates (anchor, class), numbered a * K + k in increasing order
    flat = np.flatnonzero(scores.ravel() > min_confidence)
    # 2. top-k per level
    if topk_per_level is not None:
        flat = _topk_per_group(flat, scores.ravel()[flat], levels[flat // num_classes], topk_per_level)
    anchors, classes = flat // num_classes, (flat % num_classes).astype(np.int64)
    cand_scores, cand_boxes = scores.ravel()[flat], boxes[anchors]
    # 3. clip
    if clip is not None and len(flat):
        cand_boxes = np.asarray(clip(cand_boxes))
    # 4. per-class NMS (keep: indices into the candidates by descending score, ties: lower number)
    if max_overlap < 1.0:
        keep = batched_nms(cand_boxes, cand_scores, classes, max_overlap, pairwise_iou)
    else:
        keep = np.argsort(-cand_scores.astype(np.float64), kind="stable")
    # 5. class-agnostic NMS on the survivors; `keep` lists equal scores by increasing number
    #    and nms ranks ties by input position, so ties still go to the lower number
    if max_overlap_class_agnostic < 1.0 and len(keep):
        keep = keep[nms(cand_boxes[keep], cand_scores[keep], max_overlap_class_agnostic, pairwise_iou)]
    # 6. the best max_num_detections
    keep = keep[:max_num_detections]
    return Detections(cand_boxes[keep], cand_scores[keep], classes[keep])


def postprocess_batch(scores: np.ndarray, boxes: np.ndarray, levels: np.ndarray,
                      pairwise_iou: PairwiseIoU, *, clip: Callable[[np.ndarray], np.ndarray] | None
                      | Sequence[Callable[[np.ndarray], np.ndarray] | None] = None,
                      **params) -> list[Detections]:
    """postprocess_detections for every image of a batch: scores (B, A, K), boxes (B, A, P),
    levels (A,) shared by all images; `clip` is one function for all images or one per image.
    `params` are postprocess_detections' keyword arguments."""
    scores, boxes = np.asarray(scores), np.asarray(boxes)
    if scores.ndim != 3 or boxes.ndim != 3 or len(boxes) != len(scores):
        raise ValueError(f"need scores (B, A, K) and boxes (B, A, P), got {scores.shape} and {boxes.shape}")
    clips = list(clip) if isinstance(clip, Sequence) else [clip] * len(scores)
    if len(clips) != len(scores):
        raise ValueError(f"{len(clips)} clip functions for {len(scores)} images")
    return [postprocess_detections(s, b, levels, pairwise_iou, clip=c, **params)
            for s, b, c in zip(scores, boxes, clips)]


def _topk_per_group(index: np.ndarray, score: np.ndarray, group: np.ndarray, k: int) -> np.ndarray:
    """The entries of the increasing `index` that rank < k by descending score within their
    group (ties: lower index), in increasing order; no loop over groups."""
    order = np.lexsort((index, -score.astype(np.float64), group))  # by group, then rank
    sorted_group = group[order]
    start = np.searchsorted(sorted_group, sorted_group, side="left")  # each group's first slot
    rank = np.arange(len(order)) - start
    return np.sort(index[order[rank < k]])
