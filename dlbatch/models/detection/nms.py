"""Greedy non-maximum suppression without a Python loop over boxes, for any box geometry.

Classic greedy NMS visits boxes by descending score and keeps a box unless its IoU with an
already kept box is > threshold. Here the same result comes from whole-array numpy ops:

1. sort by descending score (ties: lower input index first) and build the strictly upper
   triangular suppression matrix M[i, j] = IoU(i, j) > threshold for i before j, once;
2. iterate keep_j = not any_i(keep_i and M[i, j]) from keep = all True until keep stops
   changing.

keep is a fixed point exactly when it satisfies the greedy recursion, and that recursion has
one solution (box j depends only on boxes before it), so the fixed point IS the greedy result.
After t iterations every box whose longest chain of possible suppressors (a path in M) has
fewer than t links is final, so the loop runs at most (longest chain + 2) <= n + 1 times, each
O(kept * n); clustered detections give short chains, a worst-case chain gives O(n^3) time.

Memory is O(n^2): the boolean M takes n^2 bytes (IoU is computed in blocks of rows, so the
float IoU never exceeds _ROWS_PER_BLOCK * n values). n is therefore capped at MAX_NMS_BOXES;
callers keep their top-k candidates first (the detection postprocess keeps the best
`topk_per_level` per pyramid level).

The geometry is a parameter: `pairwise_iou(a, b)` returns the (len(a), len(b)) IoU of two
box arrays (N, P), e.g. P = 4 for rectangle1 (row1, col1, row2, col2) or P = 5 for
rectangle2. A NaN IoU (degenerate boxes) suppresses nothing.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

PairwiseIoU = Callable[[np.ndarray, np.ndarray], np.ndarray]

# n boxes need an n x n boolean matrix: 10_000 boxes -> 100 MB
MAX_NMS_BOXES = 10_000
_ROWS_PER_BLOCK = 1024


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, pairwise_iou: PairwiseIoU,
        *, max_boxes: int = MAX_NMS_BOXES) -> np.ndarray:
    """Greedy non-maximum suppression.

    Args:
        boxes: (N, P) boxes of the geometry `pairwise_iou` measures.
        scores: (N,) scores.
        threshold: a box is suppressed when its IoU with a kept higher-ranked box is > threshold.
        pairwise_iou: `f(a, b) -> (len(a), len(b))` IoU, e.g. `rotated_pairwise_iou`.
        max_boxes: the most boxes accepted (the suppression matrix is N x N).

    Returns:
        int64 indices of the kept boxes by descending score (ties: lower index first).

    Examples:
        >>> import numpy as np
        >>> from dlbatch.models.detection.rotated_iou import rotated_pairwise_iou
        >>> boxes = np.array([[10, 10, 0, 5, 2], [10, 10.5, 0, 5, 2], [30, 30, 0, 5, 2]], float)
        >>> nms(boxes, np.array([0.9, 0.8, 0.7]), 0.5, rotated_pairwise_iou).tolist()
        [0, 2]
    """
    return _greedy_nms(boxes, scores, None, threshold, pairwise_iou, max_boxes)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, threshold: float,
                pairwise_iou: PairwiseIoU, *, max_boxes: int = MAX_NMS_BOXES) -> np.ndarray:
    """Per-class NMS in one pass: as `nms`, but boxes of different classes never suppress
    each other (the suppression matrix is masked with classes[i] == classes[j]). Returns
    indices into the input by descending score over all classes (ties: lower index first)."""
    classes = np.asarray(classes)
    if classes.ndim != 1 or len(classes) != len(np.asarray(scores)):
        raise ValueError(f"classes must have shape ({len(np.asarray(scores))},), got {classes.shape}")
    return _greedy_nms(boxes, scores, classes, threshold, pairwise_iou, max_boxes)


def _greedy_nms(boxes, scores, classes, threshold, pairwise_iou, max_boxes) -> np.ndarray:
    boxes = np.asarray(boxes)
    scores = np.asarray(scores, dtype=np.float64)
    if boxes.ndim != 2 or scores.ndim != 1 or len(boxes) != len(scores):
        raise ValueError(f"boxes must be (N, P) and scores (N,), got {boxes.shape} and {scores.shape}")
    n = len(scores)
    if n > max_boxes:
        raise ValueError(f"NMS over {n} boxes needs an {n} x {n} matrix; keep at most {max_boxes} "
                         "candidates (e.g. the top-k by score) first")
    order = np.argsort(-scores, kind="stable")
    if n == 0:
        return order.astype(np.int64)
    suppress = _suppression_matrix(boxes[order], None if classes is None else classes[order],
                                   threshold, pairwise_iou)
    return order[_greedy_fixed_point(suppress)].astype(np.int64)


def _suppression_matrix(boxes, classes, threshold, pairwise_iou) -> np.ndarray:
    """M[i, j] = IoU(i, j) > threshold (and same class) for i < j; boxes are in score order."""
    n = len(boxes)
    matrix = np.zeros((n, n), dtype=bool)
    for start in range(0, n, _ROWS_PER_BLOCK):  # blocks of rows, bounding the float IoU's size
        stop = min(start + _ROWS_PER_BLOCK, n)
        iou = np.asarray(pairwise_iou(boxes[start:stop], boxes[start:]))
        if iou.shape != (stop - start, n - start):
            raise ValueError(f"pairwise_iou returned shape {iou.shape}, expected {(stop - start, n - start)}")
        block = iou > threshold
        block &= np.arange(start, n)[None, :] > np.arange(start, stop)[:, None]
        if classes is not None:
            block &= classes[start:stop, None] == classes[None, start:]
        matrix[start:stop, start:] = block
    return matrix


def _greedy_fixed_point(suppress: np.ndarray) -> np.ndarray:
    """The keep mask with keep_j = not any_i(keep_i and suppress[i, j]) for strictly upper
    triangular `suppress` (see the module docstring for why this is greedy NMS)."""
    n = len(suppress)
    keep = np.ones(n, dtype=bool)
    for _ in range(n + 1):  # converges in <= n + 1 iterations; see the module docstring
        new = ~suppress[keep].any(axis=0)
        if np.array_equal(new, keep):
            return keep
        keep = new
    raise AssertionError("NMS fixed point did not converge; is the suppression matrix triangular?")
