"""Seeded synthetic classification samples: one shape per image on the textured background of
the detection and segmentation scenes, its shape family telling the class.

The class at position k of class_ids draws blob family k (disc, axis-parallel rectangle,
triangle, ring, cross; cycling, see families.BLOBS) in a colour that is characteristic of the
class but not exclusive (colours.object_colour), so that a classifier has to learn the shape.
The whole shape stays inside the image whenever it fits.

Sample i depends only on (seed, i) and the scene parameters, never on n.
"""
from __future__ import annotations

import operator

import numpy as np

from .families import BLOBS, blob
from .geometry import footprint
from .scene import Canvas

_STREAM = 3  # segmentation, rectangle1 and rectangle2 use streams 0..2 (synthetic._STREAMS)


def classification_samples(n: int, *, height: int = 64, width: int = 64, channels: int = 3,
                           class_ids=(0, 1, 2), seed: int = 0) -> list[dict]:
    """Seeded synthetic classification samples: one shape per image, its family the class.

    Classes are drawn uniformly at random per sample; the class at position k of class_ids
    draws the shape family k (disc, rectangle, triangle, ring, cross, cycling). Sample i depends
    only on (seed, i) and the scene parameters, never on n.

    Args:
        n: number of samples.
        height: image height (>= 8).
        width: image width (>= 8).
        channels: image channels.
        class_ids: the class ids to draw (unique).
        seed: seed of the scenes.

    Returns:
        n dicts with `image` (uint8 H x W x C) and `image_label_id` (one of class_ids).

    Raises:
        ValueError: empty or repeated class ids, or sizes below the minimum.

    Examples:
        >>> samples = classification_samples(4, height=16, width=16, class_ids=(3, 7))
        >>> samples[0]["image"].shape, samples[0]["image"].dtype.name, samples[0]["image_label_id"] in (3, 7)
        ((16, 16, 3), 'uint8', True)
    """
    classes = [operator.index(c) for c in class_ids]
    if not classes:
        raise ValueError("class_ids must not be empty")
    if len(set(classes)) != len(classes):
        raise ValueError(f"class ids must be unique, got {classes}")
    for name, value, least in (("n", n, 0), ("height", height, 8), ("width", width, 8),
                               ("channels", channels, 1), ("seed", seed, 0)):
        if operator.index(value) < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    return [_sample(np.random.default_rng([_STREAM, seed, i]), height, width, channels, classes)
            for i in range(n)]


def family_name(position: int) -> str:
    """The shape family drawn by the class at `position` of class_ids."""
    return BLOBS[position % len(BLOBS)]


def _sample(rng, height, width, channels, classes) -> dict:
    canvas = Canvas(rng, height, width, channels)
    index = int(rng.integers(len(classes)))
    shape = blob(rng, index, min(height, width))
    row = _centre(rng, shape.reach, height)
    col = _centre(rng, shape.reach, width)
    where = footprint(shape.moved(row, col), height, width)
    canvas.paint(where, canvas.colour_for(index, where))
    return {"image": canvas.photograph(), "image_label_id": classes[index]}


def _centre(rng, reach: float, size: int) -> float:
    """A centre coordinate keeping a shape of this reach inside [0, size - 1] when it fits."""
    lo, hi = reach, size - 1 - reach
    if lo >= hi:
        return (size - 1) / 2
    return float(rng.uniform(lo, hi))
