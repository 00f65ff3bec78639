"""Seeded synthetic samples in the project's sample format, for tests, examples and
benchmarks of segmentation and detection (rectangle1, rectangle2) model types.

Scenes are shapes on a textured background. Each class has its own shape family and a
characteristic but not exclusive colour, so a model has to learn both shape and colour; the
images come as a camera would give them (uint8, H x W x C), to be scaled by
`dlbatch.preprocess_dl_samples(samples, model)`.

Sample i depends only on (seed, i) (and the scene parameters), never on n: a test can ask for
10 samples and a benchmark for 10 000 and both see the same first ten.
"""
from __future__ import annotations

import operator

import numpy as np

from .families import blob
from .geometry import Footprint, footprint
from .placement import Placed, apart, clipped, oriented, upright
from .scene import Canvas

_STREAMS = {"segmentation": 0, "rectangle1": 1, "rectangle2": 2}
_RECTANGLE1_KEYS = ("bbox_row1", "bbox_col1", "bbox_row2", "bbox_col2")
_RECTANGLE2_KEYS = ("bbox_row", "bbox_col", "bbox_phi", "bbox_length1", "bbox_length2")
_TRIES_REQUIRED, _TRIES_OPTIONAL = 200, 30


def segmentation_samples(n: int, *, height: int = 64, width: int = 64, channels: int = 3,
                         class_ids=(1, 2, 3), background_id: int = 0, seed: int = 0,
                         max_objects: int = 4) -> list[dict]:
    """n samples with `image` (uint8 H x W x C) and `segmentation_image` (int32 H x W; the
    class of the pixel centre, no anti-aliasing, later objects cover earlier ones).

    Each image holds 1..max_objects shapes, which may overlap and cross the border. The class
    at position k of class_ids draws family k of disc, axis-parallel rectangle, triangle, ring,
    cross (cycling). background_id labels everything else and must not be in class_ids.

    Args:
        n: number of samples.
        height: image height.
        width: image width.
        channels: image channels.
        class_ids: object class ids.
        background_id: the label of every other pixel.
        seed: seed of the scenes; sample i depends only on (seed, i).
        max_objects: most shapes per image (>= 1).

    Returns:
        n dicts with `image` and `segmentation_image`.

    Raises:
        ValueError: background_id among class_ids, max_objects < 1 or a bad scene size.

    Examples:
        >>> s = segmentation_samples(2, height=32, width=32, class_ids=(1,))[0]
        >>> s["segmentation_image"].shape, sorted(set(s["segmentation_image"].ravel().tolist())) == [0, 1]
        ((32, 32), True)
    """
    classes = _class_list(class_ids)
    if int(background_id) in classes:
        raise ValueError(f"background_id {background_id} is also in class_ids {classes}")
    _check_scene(n, height, width, channels, seed)
    if max_objects < 1:
        raise ValueError(f"max_objects must be >= 1 for segmentation, got {max_objects}")
    return [_segmentation(_rng(seed, i, "segmentation"), height, width, channels, classes,
                          int(background_id), max_objects) for i in range(n)]


def detection_samples(n: int, *, height: int = 64, width: int = 64, channels: int = 3,
                      class_ids=(1, 2, 3), seed: int = 0, max_objects: int = 4,
                      instance_type: str = "rectangle1", min_objects: int = 0,
                      directed_class_ids=(), return_masks: bool = False) -> list[dict]:
    """n samples with `image` (uint8 H x W x C), `bbox_label_id` (int64) and the boxes of
    `instance_type` as float64 arrays, one entry per object (length 0 for empty images):

    rectangle1: bbox_row1, bbox_col1, bbox_row2, bbox_col2, the exact box of the drawn pixels
      (pixel centres r0..r1 give row1 = r0 - 0.5, row2 = r1 + 0.5); objects may cross the
      border, the class at position k draws the blob family k as in segmentation_samples.
    rectangle2: bbox_row, bbox_col, bbox_phi, bbox_length1, bbox_length2 (HALCON: half
      lengths along d1 = (-sin phi, cos phi) and d2 = (cos phi, sin phi)) of elongated shapes
      wholly inside the image: rectangle, ellipse, pointed hexagon (cycling by class position),
      length1 > length2. A class in directed_class_ids has a contrasting cap at its +d1 end and
      phi in (-pi, pi]; other classes are symmetric and have phi in (-pi/2, pi/2].

    Each image holds min_objects..max_objects objects (fewer than drawn only when one finds no
    free place); they share no pixel and their boxes overlap with IoU < 0.3. return_masks adds
    `object_masks` (bool, objects x H x W), the drawn pixels of each object, for checks and
    plots; it is not a HALCON key.

    Args:
        n: number of samples.
        height: image height.
        width: image width.
        channels: image channels.
        class_ids: object class ids.
        seed: seed of the scenes; sample i depends only on (seed, i).
        max_objects: most objects per image.
        instance_type: "rectangle1" or "rectangle2".
        min_objects: fewest objects per image.
        directed_class_ids: rectangle2 classes with a front (phi in (-pi, pi]).
        return_masks: add `object_masks`.

    Returns:
        n dicts with `image`, `bbox_label_id` and the box keys of instance_type.

    Raises:
        ValueError: an unknown instance_type, directed classes for rectangle1 or not in
            class_ids, min_objects > max_objects or a bad scene size.

    Examples:
        >>> s = detection_samples(1, min_objects=2, max_objects=2, instance_type="rectangle2")[0]
        >>> len(s["bbox_label_id"]), bool((s["bbox_length1"] > s["bbox_length2"]).all())
        (2, True)
    """
    classes = _class_list(class_ids)
    directed = set(_class_list(directed_class_ids, allow_empty=True))
    if instance_type not in ("rectangle1", "rectangle2"):
        raise ValueError(f"instance_type must be 'rectangle1' or 'rectangle2', got {instance_type!r}")
    if directed and instance_type != "rectangle2":
        raise ValueError("directed_class_ids needs instance_type='rectangle2'")
    if not directed <= set(classes):
        raise ValueError(f"directed_class_ids {sorted(directed)} are not all in class_ids {classes}")
    _check_scene(n, height, width, channels, seed)
    if not 0 <= min_objects <= max_objects:
        raise ValueError(f"need 0 <= min_objects <= max_objects, got {min_objects}, {max_objects}")
    return [_detection(_rng(seed, i, instance_type), height, width, channels, classes, directed,
                       (min_objects, max_objects), instance_type, return_masks) for i in range(n)]


def _rng(seed: int, index: int, stream: str) -> np.random.Generator:
    return np.random.default_rng([_STREAMS[stream], seed, index])


def _class_list(class_ids, allow_empty: bool = False) -> list[int]:
    classes = [operator.index(c) for c in class_ids]
    if not classes and not allow_empty:
        raise ValueError("class_ids must not be empty")
    if len(set(classes)) != len(classes):
        raise ValueError(f"class ids must be unique, got {classes}")
    return classes


def _check_scene(n, height, width, channels, seed) -> None:
    for name, value, least in (("n", n, 0), ("height", height, 8), ("width", width, 8),
                               ("channels", channels, 1), ("seed", seed, 0)):
        if operator.index(value) < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")


def _segmentation(rng, height, width, channels, classes, background_id, max_objects) -> dict:
    canvas = Canvas(rng, height, width, channels)
    label = np.full((height, width), background_id, dtype=np.int32)
    for _ in range(int(rng.integers(1, max_objects + 1))):
        index = int(rng.integers(len(classes)))
        where = _visible_blob(rng, index, height, width)
        canvas.paint(where, canvas.colour_for(index, where))
        label[where.rows, where.cols][where.inside] = classes[index]
    return {"image": canvas.photograph(), "segmentation_image": label}


def _visible_blob(rng, index, height, width) -> Footprint:
    """A blob crossing the border at most so far that MIN_VISIBLE of it stays in view; a
    centre inside the image achieves that within a few tries; the image centre is the last resort."""
    shape = blob(rng, index, min(height, width))
    for _ in range(_TRIES_REQUIRED):
        where = clipped(rng, shape, height, width)
        if where is not None:
            return where
    return footprint(shape.moved((height - 1) / 2, (width - 1) / 2), height, width)


def _detection(rng, height, width, channels, classes, directed, counts, instance_type,
               return_masks) -> dict:
    canvas = Canvas(rng, height, width, channels)
    taken = np.zeros((height, width), dtype=bool)
    placed: list[Placed] = []
    for number in range(int(rng.integers(counts[0], counts[1] + 1))):
        index = int(rng.integers(len(classes)))
        is_directed = classes[index] in directed
        found = _place(rng, index, height, width, instance_type, is_directed, taken, placed,
                       _TRIES_REQUIRED if number < counts[0] else _TRIES_OPTIONAL)
        if found is None and number < counts[0]:
            raise ValueError(f"found no free place for object {number + 1} of min_objects="
                             f"{counts[0]} in a {height} x {width} image; lower min_objects")
        if found is not None:
            canvas.paint(found.where, canvas.colour_for(index, found.where), is_directed)
            taken[found.where.rows, found.where.cols] |= found.where.inside
            placed.append(found)
    return _detection_sample(canvas.photograph(), placed, classes, instance_type,
                             (height, width) if return_masks else None)


def _place(rng, index, height, width, instance_type, is_directed, taken, placed, tries):
    for _ in range(tries):
        if instance_type == "rectangle1":
            candidate = upright(rng, index, height, width)
        else:
            candidate = oriented(rng, index, height, width, is_directed)
        if candidate is not None and apart(candidate, taken, placed):
            return candidate
    return None


def _detection_sample(image, placed, classes, instance_type, mask_size) -> dict:
    keys = _RECTANGLE1_KEYS if instance_type == "rectangle1" else _RECTANGLE2_KEYS
    values = np.array([p.box for p in placed], dtype=np.float64).reshape(-1, len(keys))
    sample = {"image": image, **{key: values[:, j].copy() for j, key in enumerate(keys)},
              "bbox_label_id": np.array([classes[p.index] for p in placed], dtype=np.int64)}
    if mask_size is not None:
        masks = [p.where.mask(*mask_size) for p in placed]
        sample["object_masks"] = np.array(masks, dtype=bool).reshape(-1, *mask_size)
    return sample
