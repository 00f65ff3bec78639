"""Rotated NMS (nms / batched_nms with the exact rotated IoU) against a brute-force greedy loop
whose IoU comes from shapely polygons built from SPEC section 5's corner formula."""
from __future__ import annotations

import numpy as np
import pytest

from dlbatch.models.detection.nms import batched_nms, nms
from dlbatch.models.detection.rotated_iou import rotated_pairwise_iou

shapely = pytest.importorskip("shapely")
from shapely.geometry import Polygon  # noqa: E402


def polygon(box) -> Polygon:
    row, col, phi, l1, l2 = box
    d1, d2 = np.array([-np.sin(phi), np.cos(phi)]), np.array([np.cos(phi), np.sin(phi)])
    centre = np.array([row, col])
    return Polygon([tuple(centre + s1 * l1 * d1 + s2 * l2 * d2) for s1, s2 in ((1, 1), (1, -1), (-1, -1), (-1, 1))])


def greedy_reference(boxes, scores, threshold, classes=None) -> list[int]:
    polys = [polygon(b) for b in boxes]
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    kept: list[int] = []
    for i in order:
        if not any((classes is None or classes[i] == classes[j]) and
                   polys[i].intersection(polys[j]).area / polys[i].union(polys[j]).area > threshold for j in kept):
            kept.append(i)
    return kept


def clustered_oriented(rng, n):
    centres = rng.uniform(10, 90, (max(1, n // 6), 2))
    base = np.concatenate([centres, rng.uniform(-np.pi, np.pi, (len(centres), 1)),
                           rng.uniform(6, 20, (len(centres), 1)), rng.uniform(2, 6, (len(centres), 1))], axis=1)
    boxes = base[rng.integers(0, len(base), n)]
    jitter = np.concatenate([rng.normal(0, 2, (n, 2)), rng.normal(0, 0.3, (n, 1)), rng.normal(0, 1, (n, 2))], axis=1)
    out = boxes + jitter
    out[:, 3:] = np.maximum(out[:, 3:], 1.0)
    return out


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_rotated_nms_equals_the_greedy_loop(threshold):
    rng = np.random.default_rng(int(threshold * 10))
    suppressed = 0
    for _ in range(25):
        n = int(rng.integers(2, 40))
        boxes, scores = clustered_oriented(rng, n), np.round(rng.uniform(0, 1, n), 2)  # ties happen
        keep = nms(boxes, scores, threshold, rotated_pairwise_iou)
        expected = greedy_reference(boxes, scores, threshold)
        assert keep.tolist() == expected
        suppressed += n - len(expected)
        classes = rng.integers(0, 3, n)
        assert batched_nms(boxes, scores, classes, threshold, rotated_pairwise_iou).tolist() == \
            greedy_reference(boxes, scores, threshold, classes)
    assert suppressed > 25  # the sets really exercise suppression
