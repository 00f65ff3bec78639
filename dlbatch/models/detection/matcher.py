"""Anchor-to-box matching of one image (SPEC section 5), pure numpy, for any box geometry.

For the IoU matrix iou (G boxes x A anchors) each anchor gets:

- the box with its highest IoU when that IoU >= positive_threshold (0.5),
- BACKGROUND (-1) when its highest IoU < negative_threshold (0.4),
- IGNORED (-2) in between (no classification or box loss);

and in addition every box claims its best anchors: all anchors whose IoU with the box equals
the box's maximum IoU, provided that maximum is > 0 (torchvision's allow_low_quality_matches),
even below negative_threshold, so a box smaller than every anchor still trains.

When boxes compete for an anchor, the box with the higher IoU wins it, claimed anchors
included: a claim never steals an anchor from a box with a higher IoU there (that box gets
the anchor, as in torchvision, even when its IoU is below the thresholds). On equal IoU a box
that claims the anchor wins, then the lowest box index. No boxes: every anchor is BACKGROUND.
A NaN IoU counts as 0.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ...core.errors import DLParamError
from .boxes import Rectangle1

BACKGROUND = -1
IGNORED = -2
POSITIVE_THRESHOLD = 0.5
NEGATIVE_THRESHOLD = 0.4

PairwiseIoU = Callable[[np.ndarray, np.ndarray], np.ndarray]


def match_iou(iou: np.ndarray, *, positive_threshold: float = POSITIVE_THRESHOLD,
              negative_threshold: float = NEGATIVE_THRESHOLD, claim_best: bool = True) -> np.ndarray:
    """(A,) int64: per anchor the index of its box (>= 0), BACKGROUND or IGNORED, from the
    (G, A) IoU of the image's G boxes with its A anchors (see the module docstring)."""
    if not 0 <= negative_threshold <= positive_threshold:
        raise DLParamError(f"need 0 <= negative_threshold <= positive_threshold, got {negative_threshold} and "
                           f"{positive_threshold}")
    iou = np.asarray(iou, dtype=np.float64)
    if iou.ndim != 2:
        raise ValueError(f"iou must be a (boxes, anchors) matrix, got shape {iou.shape}")
    if iou.shape[0] == 0:
        return np.full(iou.shape[1], BACKGROUND, dtype=np.int64)
    if iou.shape[1] == 0:
        return np.zeros(0, dtype=np.int64)
    iou = np.where(np.isnan(iou), 0.0, iou)
    best = iou.max(axis=0)  # (A,) each anchor's highest IoU
    if claim_best:
        box_best = iou.max(axis=1, keepdims=True)  # (G, 1) each box's highest IoU
        claims = (iou == box_best) & (box_best > 0)  # (G, A)
    else:
        claims = np.zeros(iou.shape, dtype=bool)
    # the winner: among the boxes at the anchor's highest IoU, a claiming box first, then the lowest index
    preference = (iou == best).astype(np.int8) * (1 + claims.astype(np.int8))
    winner = preference.argmax(axis=0)
    matched = np.where(best >= positive_threshold, winner,
                       np.where(best < negative_threshold, BACKGROUND, IGNORED)).astype(np.int64)
    claimed = claims.any(axis=0)
    matched[claimed] = winner[claimed]
    return matched


def match_anchors(anchors: np.ndarray, boxes: np.ndarray, *, pairwise_iou: PairwiseIoU = Rectangle1.pairwise_iou,
                  positive_threshold: float = POSITIVE_THRESHOLD, negative_threshold: float = NEGATIVE_THRESHOLD,
                  claim_best: bool = True) -> np.ndarray:
    """match_iou(pairwise_iou(boxes, anchors)): pass the geometry's `pairwise_iou` for boxes
    other than rectangle1."""
    return match_iou(pairwise_iou(boxes, anchors), positive_threshold=positive_threshold,
                     negative_threshold=negative_threshold, claim_best=claim_best)
