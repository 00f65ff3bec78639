"""The detection overlay (`dlbatch apply --overlay`): each detected box outlined in its class's
colour with "class confidence" on a label at its upper-left corner.

rectangle1 boxes (row1, col1, row2, col2, pixel-edge convention of boxes.py) are drawn on the
box's own border pixels. rectangle2 boxes (row, col, phi, length1, length2, HALCON) likewise
on their border pixels (pixel centres inside the oriented box, near a side; computed exactly
rather than with Pillow's wide lines, which come out thinner on slopes), plus a line from the
centre to the middle of the +length1 side showing phi (an arrow head where the direction
counts, ignore_direction = false); the label sits at the box's topmost corner.
The most confident boxes are drawn last, on top.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
from PIL import ImageDraw

from ...core.errors import DLParamError
from ...visual.draw import draw_arrow, draw_box_outline, draw_label, font_for, line_width_for, \
    oriented_box_band, paint_mask, to_pil, to_rgb_uint8
from ...visual.palette import colour_of
from .boxes import RECTANGLE1_KEYS
from .rectangle2 import RECTANGLE2_KEYS, corners


def _column(result: Mapping[str, Any], key: str) -> np.ndarray:
    if key not in result:
        raise DLParamError(f"a detection overlay needs the apply_dl_model result key {key!r}; pass one result "
                           "of a detection model with the model's instance_type")
    return np.asarray(result[key], dtype=np.float64).reshape(-1)


def _result_boxes(result: Mapping[str, Any], keys) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """(boxes (N, len(keys)), class ids, class names, confidences) of a detection result."""
    boxes = np.stack([_column(result, k) for k in keys], axis=1) if keys else np.zeros((0, 0))
    ids = _column(result, "bbox_class_id").astype(np.int64)
    confidences = _column(result, "bbox_confidence")
    names = [str(n) for n in result.get("bbox_class_name", [str(c) for c in ids])]
    if not len(boxes) == len(ids) == len(confidences) == len(names):
        raise DLParamError(f"the detection result's keys disagree on the number of boxes: {len(boxes)} boxes, "
                           f"{len(ids)} class ids, {len(confidences)} confidences, {len(names)} names")
    return boxes, ids, names, confidences


def draw_detection_overlay(image, result: Mapping[str, Any], hp: Mapping[str, Any]) -> np.ndarray:
    """RGB uint8 H x W x 3: `image` with the result's boxes (in the image's pixels) drawn."""
    rgb = to_rgb_uint8(image)
    instance_type = hp.get("instance_type", "rectangle1")
    if instance_type not in ("rectangle1", "rectangle2"):
        raise DLParamError(f"cannot draw boxes of instance_type {instance_type!r}; expected rectangle1 or "
                           "rectangle2")
    keys = RECTANGLE1_KEYS if instance_type == "rectangle1" else RECTANGLE2_KEYS
    boxes, ids, names, confidences = _result_boxes(result, keys)
    size = rgb.shape[:2]
    width, font = line_width_for(*size), font_for(*size)
    class_ids = hp.get("class_ids") or []
    directed = not bool(hp.get("ignore_direction", True))
    picture = to_pil(rgb)
    draw = ImageDraw.Draw(picture)
    labels = []
    for j in np.argsort(confidences, kind="stable"):
        colour = colour_of(ids[j], class_ids)
        if instance_type == "rectangle1":
            r0, c0, _, _ = draw_box_outline(draw, boxes[j], colour, width, size)
        else:
            paint_mask(picture, *oriented_box_band(boxes[j], width, size), colour)
            row, col, phi, l1 = boxes[j, :4]
            reach = max(abs(l1) - width, 0.0)
            front = (row - reach * np.sin(phi), col + reach * np.cos(phi))
            draw_arrow(draw, (row, col), front, colour, width, head=directed)
            box_corners = corners(boxes[j:j + 1])[0]
            top = int(np.argmin(box_corners[:, 0]))
            r0, c0 = int(math.ceil(box_corners[top, 0])), int(round(box_corners[top, 1]))
        labels.append((f"{names[j]} {confidences[j]:.2f}", r0, c0, colour))
    for text, r0, c0, colour in labels:  # labels over every outline, so none hides a label
        draw_label(draw, text, r0, c0, colour, font, size)
    return np.asarray(picture, dtype=np.uint8).copy()
