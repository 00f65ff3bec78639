"""preprocess_dl_samples: raw images of any size and type -> the model's input format."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .errors import DLSampleError
from .samples import as_sample_list, require_key


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of an H x W x C float array (half-pixel centres, as cv2/HALCON)."""
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image

    def coords(n_out, n_in):
        x = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        x = np.clip(x, 0, n_in - 1)
        lo = np.floor(x).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (x - lo)

    y0, y1, fy = coords(height, h)
    x0, x1, fx = coords(width, w)
    fy = fy[:, None, None]
    fx = fx[None, :, None]
    top = image[y0][:, x0] * (1 - fx) + image[y0][:, x1] * fx
    bottom = image[y1][:, x0] * (1 - fx) + image[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


def preprocess_image(image, hp: Mapping[str, Any], index: int = 0) -> np.ndarray:
    """Resize to the model's size, convert the channel count, scale grey values 0..255 to
    [image_range_min, image_range_max]."""
    arr = np.asarray(image)
    if arr.dtype.kind not in "fiub" or arr.ndim not in (2, 3):
        raise DLSampleError(f"sample {index}: 'image' must be an H x W or H x W x C array of numbers, "
                            f"got shape {arr.shape} dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise DLSampleError(f"sample {index}: 'image' contains NaN or infinite values")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    c_in, c = arr.shape[2], hp["image_num_channels"]
    if c_in != c:
        if c_in == 1:
            arr = np.repeat(arr, c, axis=2)
        elif c == 1:
            arr = arr.mean(axis=2, keepdims=True)
        else:
            raise DLSampleError(f"sample {index}: 'image' has {c_in} channels and the model {c}; "
                                "only 1 <-> N channel conversion is automatic")
    arr = resize_bilinear(arr, hp["image_height"], hp["image_width"])
    lo, hi = hp["image_range_min"], hp["image_range_max"]
    return (arr * ((hi - lo) / 255.0) + lo).astype(np.float32)


def preprocess_dl_samples(samples, model) -> list[dict]:
    """New sample dicts whose images fit `model`; label keys are copied unchanged."""
    out = []
    for i, s in enumerate(as_sample_list(samples)):
        image = require_key(s, i, "image", "preprocessing needs")
        new = dict(s)
        new["image"] = preprocess_image(image, model._hp, i)
        out.append(new)
    return out
