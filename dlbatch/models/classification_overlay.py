"""The classification overlay (`dlbatch apply --overlay`): the raw image with the top class
name and its confidence written in the upper-left corner, on a box in the class's colour."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from PIL import ImageDraw

from ..core.errors import DLParamError
from ..visual.draw import draw_label, font_for, to_pil, to_rgb_uint8
from ..visual.palette import colour_of


def top_class_text(result: Mapping[str, Any]) -> tuple[int, str]:
    """(class id, "name 0.93") of the most confident class of a classification result."""
    try:
        ids = list(result["classification_class_ids"])
        confidences = list(result["classification_confidences"])
    except KeyError as missing:
        raise DLParamError(f"a classification overlay needs the apply_dl_model result key {missing}; "
                           "pass one result of a classification model") from None
    if not ids:
        raise DLParamError("the classification result has no classes to draw")
    names = list(result.get("classification_class_names") or [str(c) for c in ids])
    return int(ids[0]), f"{names[0]} {float(confidences[0]):.2f}"


def draw_classification_overlay(image, result: Mapping[str, Any], hp: Mapping[str, Any]) -> np.ndarray:
    """RGB uint8 H x W x 3: `image` with the top class and its confidence in a corner."""
    rgb = to_rgb_uint8(image)
    class_id, text = top_class_text(result)
    size = rgb.shape[:2]
    picture = to_pil(rgb)
    draw = ImageDraw.Draw(picture)
    draw_label(draw, text, 0, 0, colour_of(class_id, hp.get("class_ids") or []), font_for(*size), size,
               above=False)
    return np.asarray(picture, dtype=np.uint8).copy()
