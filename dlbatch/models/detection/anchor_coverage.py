"""How many boxes of a data set get a positive anchor: the verification step of
detection_params_from_samples, for axis-parallel and oriented boxes.

Every image's boxes are matched as in training (matcher.match_iou, boxes competing for
anchors); a box is covered when an anchor matched to it has IoU >= the threshold (and, for
directed oriented boxes, points its way). Only pairs that can overlap are scored: for
rectangle1 the anchors near a box (anchors.anchors_near); for rectangle2 the pairs listed
from the anchor grid whose areas and centres allow the threshold (see _candidate_pairs), so
the exact rotated IoU runs on about 1 % of the pairs with the same result.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ...core.errors import DLParamError
from .anchors import BASE_SIZE_PER_STRIDE, Anchors, anchors_near, generate_anchors, generate_oriented_anchors
from .boxes import Rectangle1
from .matcher import NEGATIVE_THRESHOLD, match_iou
from .rectangle2 import wrap_angle
from .rotated_iou import NEGLIGIBLE_IOU, bounding_boxes, half_extents, intersection_area

CENTRE_TEST_FROM = 0.5  # rectangle2: from this IoU threshold on, a pair needs each centre inside the other box


def _paired_iou(boxes: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """(K,) rotated IoU of boxes[k] with anchors[k] (both (K, 5), lengths > 0), computed as
    rotated_iou.rotated_pairwise_iou computes each pair (same operand order, same rounding)."""
    area_b, area_a = 4.0 * boxes[:, 3] * boxes[:, 4], 4.0 * anchors[:, 3] * anchors[:, 4]
    iou = np.zeros(len(boxes))
    for first in range(0, len(boxes), 1 << 14):  # bounded memory
        part = slice(first, first + (1 << 14))
        inter = np.clip(intersection_area(boxes[part], anchors[part]), 0.0, np.minimum(area_b[part], area_a[part]))
        value = inter / (area_b[part] + area_a[part] - inter)
        iou[part] = np.where(value >= NEGLIGIBLE_IOU, np.minimum(value, 1.0), 0.0)
    return iou


def _inside(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(K,) whether points[k] (row, col) lies in the rectangle2 boxes[k], boundary included with
    a margin for rounding (a point on the boundary can still give IoU = 1/2 exactly)."""
    d_row, d_col = points[:, 0] - boxes[:, 0], points[:, 1] - boxes[:, 1]
    sin, cos = np.sin(boxes[:, 2]), np.cos(boxes[:, 2])
    return ((np.abs(-d_row * sin + d_col * cos) <= boxes[:, 3] * (1 + 1e-9) + 1e-9)
            & (np.abs(d_row * cos + d_col * sin) <= boxes[:, 4] * (1 + 1e-9) + 1e-9))


def _candidate_pairs(anchors: Anchors, boxes: np.ndarray, num_subscales: int,
                     threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(box index, anchor index), sorted by box, of the rectangle2 pairs whose IoU can reach
    `threshold`, found on the anchor grid without looking at the others: per level and subscale
    the boxes whose area is within a factor threshold of the anchors' (IoU <= smaller / larger
    area), and of the cells whose centre lies in the box's bounding box (threshold >= 1/2: the
    anchor's centre must lie in the box) or in it grown by the subscale's largest anchor half
    extents (else: every anchor that can overlap the box); then for threshold >= 1/2 only pairs
    with each centre inside the other box, else pairs whose bounding boxes overlap."""
    narrow = threshold >= CENTRE_TEST_FROM
    bbox = bounding_boxes(boxes)
    size = 2.0 * np.sqrt(boxes[:, 3] * boxes[:, 4])
    root = math.sqrt(threshold)
    found_box, found_anchor, offset = [], [], 0
    for level, rows, cols, count in anchors.per_level:  # a few levels and subscales, boxes and cells in array ops
        per_cell = count // (rows * cols)
        block = per_cell // num_subscales  # the ratio x angle anchors of one subscale
        stride = 2 ** level
        for i in range(num_subscales):
            anchor_size = BASE_SIZE_PER_STRIDE * stride * 2.0 ** (i / num_subscales)
            fit = np.flatnonzero((anchor_size >= root * size * (1 - 1e-9)) & (anchor_size * root <= size * (1 + 1e-9)))
            if not fit.size:
                continue
            first = offset + i * block  # this subscale's anchors of cell (0, 0)
            grow = np.zeros(2) if narrow else half_extents(anchors.boxes[first:first + block]).max(axis=0)
            y0 = np.maximum(np.ceil((bbox[fit, 0] - grow[0] + 0.5) / stride - 0.5 - 1e-9), 0).astype(np.int64)
            y1 = np.minimum(np.floor((bbox[fit, 2] + grow[0] + 0.5) / stride - 0.5 + 1e-9), rows - 1).astype(np.int64)
            x0 = np.maximum(np.ceil((bbox[fit, 1] - grow[1] + 0.5) / stride - 0.5 - 1e-9), 0).astype(np.int64)
            x1 = np.minimum(np.floor((bbox[fit, 3] + grow[1] + 0.5) / stride - 0.5 + 1e-9), cols - 1).astype(np.int64)
            ny, nx = np.maximum(y1 - y0 + 1, 0), np.maximum(x1 - x0 + 1, 0)
            cells = ny * nx
            which = np.repeat(np.arange(len(fit)), cells)  # each box's cells, enumerated
            k = np.arange(len(which)) - np.repeat(np.cumsum(cells) - cells, cells)
            y, x = y0[which] + k // nx[which], x0[which] + k % nx[which]
            g = fit[which]
            if narrow:  # the cell centre, which is the anchors' centre, inside the box
                centre = np.stack([(y + 0.5) * stride - 0.5, (x + 0.5) * stride - 0.5], axis=1)
                keep = _inside(centre, boxes[g])
                g, y, x = g[keep], y[keep], x[keep]
            found_box.append(np.repeat(g, block))
            found_anchor.append(((first + (y * cols + x) * per_cell)[:, None] + np.arange(block)).reshape(-1))
        offset += count
    g = np.concatenate(found_box) if found_box else np.zeros(0, dtype=np.int64)
    a = np.concatenate(found_anchor) if found_anchor else np.zeros(0, dtype=np.int64)
    if narrow:
        keep = _inside(boxes[g, :2], anchors.boxes[a])
    else:
        box_b, box_a = bbox[g], bounding_boxes(anchors.boxes[a])
        keep = ((np.minimum(box_b[:, 2], box_a[:, 2]) > np.maximum(box_b[:, 0], box_a[:, 0]))
                & (np.minimum(box_b[:, 3], box_a[:, 3]) > np.maximum(box_b[:, 1], box_a[:, 1])))
    g, a = g[keep], a[keep]
    order = np.argsort(g, kind="stable")
    return g[order], a[order]


def _covered_oriented(boxes: np.ndarray, owner: np.ndarray, anchors: Anchors, num_subscales: int,
                      threshold: float, ignore_direction: bool) -> np.ndarray:
    """covered_boxes for rectangle2 boxes: the candidate pairs of all images clipped at once,
    then each image's boxes matched against the anchors of its pairs (every other anchor has IoU
    below the threshold with all its boxes; see the module docstring)."""
    g, a = _candidate_pairs(anchors, boxes, num_subscales, threshold)
    iou = _paired_iou(boxes[g], anchors.boxes[a])
    g, a, iou = g[iou > 0], a[iou > 0], iou[iou > 0]
    covered = np.zeros(len(boxes), dtype=bool)
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]]) if len(owner) else np.zeros(0, dtype=int)
    stops = np.r_[starts[1:], len(owner)]
    for start, stop, lo, hi in zip(starts, stops, np.searchsorted(g, starts), np.searchsorted(g, stops)):
        if lo == hi:
            continue  # no anchor reaches the threshold with a box of this image
        local, column = np.unique(a[lo:hi], return_inverse=True)
        matrix = np.zeros((stop - start, len(local)))
        matrix[g[lo:hi] - start, column] = iou[lo:hi]
        matched = match_iou(matrix, positive_threshold=threshold, negative_threshold=min(NEGATIVE_THRESHOLD, threshold))
        positive = np.flatnonzero(matched >= 0)
        winners = matched[positive]
        good = matrix[winners, positive] >= threshold
        if not ignore_direction:
            turn = wrap_angle(boxes[start + winners, 2] - anchors.boxes[local[positive], 2], ignore_direction=False)
            good &= np.abs(turn) < math.pi / 2
        covered[start + winners[good]] = True
    return covered


def covered_boxes(boxes: np.ndarray, owner: np.ndarray, image_height: int, image_width: int, min_level: int,
                  max_level: int, num_subscales: int, aspect_ratios: Sequence[float],
                  iou_threshold: float = 0.5, *, angles: Sequence[float] | None = None,
                  ignore_direction: bool = True) -> np.ndarray:
    """(N,) bool: whether the matcher gives box i (of image owner[i], boxes of an image
    consecutive) an anchor with IoU >= iou_threshold. Boxes (N, 4) are rectangle1; boxes (N, 5)
    are rectangle2, matched with the rotated IoU against the oriented anchors of `angles`, and
    with ignore_direction=False the anchor must also point the box's way (|phi difference| <
    pi/2 on the full circle)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim == 2 and boxes.shape[1] == 5:
        if angles is None:
            raise DLParamError("rectangle2 boxes need the anchor angles (angles=...)")
        anchors = generate_oriented_anchors(image_height, image_width, min_level, max_level, num_subscales,
                                            aspect_ratios, angles)
        return _covered_oriented(boxes, owner, anchors, num_subscales, iou_threshold, ignore_direction)
    anchors = generate_anchors(image_height, image_width, min_level, max_level, num_subscales, aspect_ratios)
    covered = np.zeros(len(boxes), dtype=bool)
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]]) if len(owner) else np.zeros(0, dtype=int)
    for start, stop in zip(starts, np.r_[starts[1:], len(owner)]):  # one image at a time
        image_boxes = boxes[start:stop]
        near = anchors_near(anchors, image_boxes)
        iou = Rectangle1.pairwise_iou(image_boxes, anchors.boxes[near])
        matched = match_iou(iou, positive_threshold=iou_threshold,
                            negative_threshold=min(NEGATIVE_THRESHOLD, iou_threshold))
        positive = np.flatnonzero(matched >= 0)
        winners = matched[positive]
        covered[start + winners[iou[winners, positive] >= iou_threshold]] = True
    return covered
