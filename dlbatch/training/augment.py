"""augment_dl_samples: HALCON's data augmentation for preprocessed samples of every model type.

As HALCON's augment_dl_samples: each sample is augmented with probability
augmentation_percentage / 100, and an augmented sample gets ONE method, drawn uniformly from
the enabled ones (mirror, rotate, rotate_range, brightness_variation,
brightness_variation_spot, crop_percentage; see augment_params.py for the names). What each
method does:

- mirror 'r' mirrors the rows (upside down), 'c' the columns (left-right), 'rc' one of row,
  column or both, drawn uniformly;
- rotate 90 turns the image by a random quarter turn (90, 180 or 270 degrees, counter-
  clockwise), rotate 180 by 180 degrees; a non-square image only turns by 180 degrees (a
  quarter turn would change the sample's size, which the model fixes);
- rotate_range r turns the image about its centre by an angle drawn uniformly from [-r, r]
  degrees (counter-clockwise positive, as HALCON's phi);
- crop_percentage p cuts a window of p percent of the height and of the width (rounded to
  whole pixels) at a random position and scales it back to the full size (bilinear);
- brightness_variation v adds one value drawn uniformly from [-v, v] grey values to every
  pixel; brightness_variation_spot v adds such a value in a circular spot (centre anywhere in
  the image, radius drawn from a quarter to a half of the shorter side) fading linearly to
  nothing at the spot's rim. Grey values are on HALCON's 0..255 scale and converted to the
  samples' scale: one grey value is (hi - lo) / 255 for `image_range` (lo, hi), so exactly one
  unit for the default -127..128; the result is clipped to [lo, hi], as a camera saturates.

Labels follow the geometric methods (augment_geometry.py): segmentation_image and weight_image
(nearest; weight 0 where a rotation brings in pixels from outside the image), rectangle1 boxes
(exact for mirrors, quarter turns and crops; the enclosing axis-parallel box after rotate_range;
cut to the image, boxes that vanish are dropped with their bbox_label_id) and rectangle2 boxes
(centre, phi and lengths mapped exactly, the direction included; boxes whose centre leaves the
image are dropped). image_label_id and all other keys are kept. Brightness never touches labels.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..core.errors import DLParamError, DLSampleError
from ..models.detection.boxes import RECTANGLE1_KEYS
from ..models.detection.rectangle2 import RECTANGLE2_KEYS
from .augment_geometry import (Affine, as_dtype, crop_map, map_rectangle1, map_rectangle2, mirror_map,
                               rotation_map, warp_image, warp_labels)
from .augment_params import METHODS, AugmentParams

__all__ = ["AugmentParams", "augment_dl_samples", "METHODS"]

LABEL_KEY = "bbox_label_id"


def augment_dl_samples(samples: Sequence[Mapping[str, Any]], params: AugmentParams | Mapping[str, Any] | None,
                       rng: np.random.Generator, *, image_range=(-127, 128)) -> list[dict]:
    """New sample dicts, some augmented (see the module docstring; HALCON's semantics).

    samples: preprocessed samples (model size, `image` float H x W x C or H x W in
    `image_range`; an integer image, e.g. raw uint8 with image_range (0, 255), is rounded and
    saturated); they are never modified, an unaugmented sample comes back as a shallow copy.
    params: AugmentParams or a dict of HALCON names. rng: a numpy Generator, the only source of
    randomness, so the same generator state and samples give the same result bit for bit
    (training saves and restores the state for resume)."""
    params = AugmentParams.from_dict(params)
    if not isinstance(rng, np.random.Generator):
        raise DLParamError(f"augment_dl_samples needs a numpy random Generator (np.random.default_rng(seed)), "
                           f"got {type(rng).__name__}")
    lo, hi = _range(image_range)
    methods = params.enabled_methods()
    out = []
    for index, sample in enumerate(samples):
        if not isinstance(sample, Mapping):
            raise DLSampleError(f"sample {index} is a {type(sample).__name__}, expected a dict")
        if methods and rng.random() * 100.0 < params.augmentation_percentage:
            method = methods[int(rng.integers(len(methods)))]
            out.append(_APPLY[method](sample, index, params, rng, (lo, hi)))
        else:
            out.append(dict(sample))
    return out


def _range(image_range) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in image_range)
    except (TypeError, ValueError):
        raise DLParamError(f"image_range must be (image_range_min, image_range_max), got {image_range!r}") from None
    if not lo < hi:
        raise DLParamError(f"image_range must have min < max, got {image_range!r}")
    return lo, hi


def _image(sample: Mapping[str, Any], index: int) -> np.ndarray:
    if "image" not in sample:
        raise DLSampleError(f"sample {index} has no key 'image'; augmentation needs preprocessed samples")
    image = np.asarray(sample["image"])
    if image.ndim not in (2, 3) or image.dtype.kind not in "fiu":
        raise DLSampleError(f"sample {index}: 'image' must be an H x W or H x W x C array of numbers, "
                            f"got shape {image.shape} dtype {image.dtype}")
    return image


# --- geometric methods ----------------------------------------------------------------------------
def _geometric(sample: Mapping[str, Any], index: int, m: Affine, params: AugmentParams,
               image: np.ndarray) -> dict:
    """The sample with its image, label images and boxes mapped by `m`."""
    new = dict(sample)
    height, width = image.shape[:2]
    new["image"] = warp_image(image, m)
    for key in ("segmentation_image", "weight_image"):
        if key in sample:
            label = np.asarray(sample[key])
            if label.shape[:2] != (height, width):
                raise DLSampleError(f"sample {index}: {key!r} has shape {label.shape} but 'image' is "
                                    f"{height} x {width}; augment preprocessed samples")
            new[key] = warp_labels(label, m, 0 if key == "weight_image" else None)
    if all(k in sample for k in RECTANGLE2_KEYS):
        boxes, labels = _boxes(sample, index, RECTANGLE2_KEYS)
        undirected = np.full(len(boxes), params.ignore_direction)
        if params.class_ids_no_orientation and labels is not None:
            undirected |= np.isin(labels, params.class_ids_no_orientation)
        mapped, kept = map_rectangle2(boxes, m, height, width, undirected)
        _put_boxes(new, RECTANGLE2_KEYS, mapped, kept, labels)
    elif all(k in sample for k in RECTANGLE1_KEYS):
        boxes, labels = _boxes(sample, index, RECTANGLE1_KEYS)
        mapped, kept = map_rectangle1(boxes, m, height, width)
        _put_boxes(new, RECTANGLE1_KEYS, mapped, kept, labels)
    return new


def _boxes(sample, index, keys) -> tuple[np.ndarray, np.ndarray | None]:
    columns = [np.asarray(sample[k], dtype=np.float64).reshape(-1) for k in keys]
    labels = np.asarray(sample[LABEL_KEY]).reshape(-1) if LABEL_KEY in sample else None
    sizes = {len(c) for c in columns} | ({len(labels)} if labels is not None else set())
    if len(sizes) > 1:
        raise DLSampleError(f"sample {index}: the box keys {list(keys)} and {LABEL_KEY!r} must have one entry "
                            f"per box, but their lengths differ")
    return np.stack(columns, axis=1) if columns[0].size else np.zeros((0, len(keys))), labels


def _put_boxes(new: dict, keys, mapped, kept, labels) -> None:
    for j, key in enumerate(keys):
        new[key] = mapped[:, j].copy()
    if labels is not None:
        new[LABEL_KEY] = labels[kept].copy()


def _mirror(sample, index, params, rng, image_range):
    image = _image(sample, index)
    mode = params.mirror if params.mirror != "rc" else ("r", "c", "rc")[int(rng.integers(3))]
    m = mirror_map(*image.shape[:2], rows="r" in mode, cols="c" in mode)
    return _geometric(sample, index, m, params, image)


def _rotate(sample, index, params, rng, image_range):
    image = _image(sample, index)
    height, width = image.shape[:2]
    quarters = 2 if params.rotate == 180 or height != width else int(rng.integers(1, 4))
    return _geometric(sample, index, rotation_map(height, width, 90.0 * quarters), params, image)


def _rotate_range(sample, index, params, rng, image_range):
    image = _image(sample, index)
    degrees = float(rng.uniform(-params.rotate_range, params.rotate_range))
    return _geometric(sample, index, rotation_map(*image.shape[:2], degrees), params, image)


def _crop(sample, index, params, rng, image_range):
    image = _image(sample, index)
    height, width = image.shape[:2]
    crop_h = min(height, max(1, int(round(height * params.crop_percentage / 100.0))))
    crop_w = min(width, max(1, int(round(width * params.crop_percentage / 100.0))))
    top = int(rng.integers(height - crop_h + 1))
    left = int(rng.integers(width - crop_w + 1))
    return _geometric(sample, index, crop_map(height, width, top, left, crop_h, crop_w), params, image)


# --- brightness -----------------------------------------------------------------------------------
def _with_added(sample, image: np.ndarray, added: np.ndarray | float, image_range) -> dict:
    lo, hi = image_range
    if image.ndim == 3 and np.ndim(added) == 2:
        added = added[:, :, None]
    new = dict(sample)
    new["image"] = as_dtype(np.clip(image.astype(np.float64) + added, lo, hi), image.dtype)
    return new


def _brightness(sample, index, params, rng, image_range):
    image = _image(sample, index)
    grey = (image_range[1] - image_range[0]) / 255.0
    delta = float(rng.uniform(-params.brightness_variation, params.brightness_variation)) * grey
    return _with_added(sample, image, delta, image_range)


def _brightness_spot(sample, index, params, rng, image_range):
    image = _image(sample, index)
    height, width = image.shape[:2]
    grey = (image_range[1] - image_range[0]) / 255.0
    centre_r = float(rng.uniform(0.0, height - 1.0))
    centre_c = float(rng.uniform(0.0, width - 1.0))
    radius = float(rng.uniform(0.25, 0.5)) * min(height, width)
    delta = float(rng.uniform(-params.brightness_variation_spot, params.brightness_variation_spot)) * grey
    rows, cols = np.ogrid[:height, :width]
    fade = np.clip(1.0 - np.hypot(rows - centre_r, cols - centre_c) / radius, 0.0, 1.0)
    return _with_added(sample, image, delta * fade, image_range)


_APPLY: dict[str, Callable] = {
    "mirror": _mirror,
    "rotate": _rotate,
    "rotate_range": _rotate_range,
    "brightness_variation": _brightness,
    "brightness_variation_spot": _brightness_spot,
    "crop_percentage": _crop,
}
assert set(_APPLY) == set(METHODS)
