"""Training targets of a micro-batch: every anchor matched to a ground-truth box or to the
background (matcher), the box deltas of the positives (box coder), and the normaliser both
loss terms share: max(1, positive anchors in the micro-batch) (SPEC section 4)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from . import box_coder
from .anchors import Anchors
from .matcher import BACKGROUND, IGNORED, match_anchors


@dataclass
class DetectionTargets:
    classes: np.ndarray      # (N, A) class index for positives, -1 background, -2 ignored
    deltas: np.ndarray       # (N, A, P) regression targets (0 where not positive)
    positive: np.ndarray     # (N, A) 1.0 for positive anchors
    num_positive: int

    @property
    def normalizer(self) -> float:
        return float(max(1, self.num_positive))


def encode_targets(anchors: Anchors, boxes: Sequence[np.ndarray], labels: Sequence[np.ndarray], geometry,
                   dtype: str) -> DetectionTargets:
    """Targets for images whose boxes (n_i, P) and class indices (n_i,) are given."""
    n, a, p = len(boxes), len(anchors), geometry.num_params
    classes = np.full((n, a), BACKGROUND, dtype=np.int64)
    deltas = np.zeros((n, a, p), dtype=dtype)
    for i, (b, y) in enumerate(zip(boxes, labels)):
        if not len(b):
            continue  # an image without boxes: every anchor is background
        # a geometry may refine the IoU for assignment (directed rectangle2: no reversed anchors)
        matched = match_anchors(anchors.boxes, b, pairwise_iou=getattr(geometry, "matching_iou", geometry.pairwise_iou))
        pos = matched >= 0
        classes[i] = np.where(pos, y[np.maximum(matched, 0)], np.where(matched == IGNORED, IGNORED, BACKGROUND))
        deltas[i, pos] = box_coder.encode(anchors.boxes[pos], b[matched[pos]], geometry)
    positive = (classes >= 0).astype(dtype)
    return DetectionTargets(classes, deltas, positive, int(positive.sum()))
