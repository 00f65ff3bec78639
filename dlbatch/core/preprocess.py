"""preprocess_dl_samples: raw images of any size and type -> the model's input format.

The image is resized and rescaled here; labels that live in image coordinates follow it in the
model type's `preprocess_sample` hook (masks with `resize_nearest`, boxes scaled by the
`SampleContext`). Each prepared sample records `original_image_size`, so that results can be
mapped back to the raw image.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .errors import DLSampleError
from .samples import as_sample_list, require_key


@dataclass(frozen=True)
class SampleContext:
    """How one sample's image was prepared: the size fed to the network and the size of the
    raw image it came from (the same when the sample was not preprocessed by dlbatch).
    `scale_row`/`scale_col` map raw-image pixel coordinates to network-input coordinates."""

    index: int
    image_height: int
    image_width: int
    original_height: int
    original_width: int

    @property
    def scale_row(self) -> float:
        return self.image_height / self.original_height

    @property
    def scale_col(self) -> float:
        return self.image_width / self.original_width

    @classmethod
    def of(cls, sample: Mapping[str, Any], hp: Mapping[str, Any], index: int = 0) -> "SampleContext":
        h, w = int(hp["image_height"]), int(hp["image_width"])
        size = sample.get("original_image_size")
        oh, ow = (h, w) if size is None else (int(size[0]), int(size[1]))
        if oh < 1 or ow < 1:
            raise DLSampleError(f"sample {index}: 'original_image_size' must be [height, width] >= 1, "
                                f"got {size!r}")
        return cls(index, h, w, oh, ow)


def _sample_coords(n_out: int, n_in: int) -> np.ndarray:
    """Input coordinate of each output pixel centre (half-pixel centres, as cv2/HALCON/ONNX
    Resize with coordinate_transformation_mode='half_pixel')."""
    return (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of an H x W x C float array (half-pixel centres, as cv2/HALCON)."""
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image

    def coords(n_out, n_in):
        x = np.clip(_sample_coords(n_out, n_in), 0, n_in - 1)
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


def resize_nearest(label: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of an H x W (x ...) array: label images and weight images keep
    their values (class ids are never blended). Each output pixel centre takes the input pixel
    whose area contains it (half-pixel centres, PyTorch's 'nearest-exact')."""
    label = np.asarray(label)
    h, w = label.shape[:2]
    if (h, w) == (height, width):
        return label.copy()

    def index(n_out, n_in):
        return np.clip(np.floor(_sample_coords(n_out, n_in) + 0.5).astype(int), 0, n_in - 1)

    return label[index(height, h)][:, index(width, w)]


def preprocess_image(image, hp: Mapping[str, Any], index: int = 0) -> np.ndarray:
    """One image prepared for a model: resized, channels converted, grey values scaled.

    Args:
        image: H x W or H x W x C array of numbers (grey values 0..255).
        hp: the model's hyperparameters (image_width, image_height, image_num_channels,
            image_range_min, image_range_max).
        index: the sample's index, for error messages.

    Returns:
        float32 array image_height x image_width x image_num_channels in
        [image_range_min, image_range_max].

    Raises:
        DLSampleError: not a finite numeric 2-d or 3-d array, or channels that cannot be converted.
    """
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
    """New sample dicts that fit `model` (HALCON's preprocess_dl_samples).

    The image is resized (bilinear, half-pixel centres) to the model's image_width x
    image_height, its channels converted (1 <-> N), and its grey values 0..255 scaled to
    [image_range_min, image_range_max]. Labels in image coordinates (boxes, label and weight
    images) follow the image through the model type's `preprocess_sample`; each new sample
    records `original_image_size` so that results come back in the raw image's pixels. The
    input samples are not changed.

    Args:
        samples: a sample dict or a sequence of them, each with `image` (H x W or H x W x C,
            any size, usually uint8) and optionally the model type's label keys.
        model: the DLModel the samples are for.

    Returns:
        One new dict per sample.

    Raises:
        DLSampleError: a sample without `image`, an image that is not a finite numeric array, a
            channel count that cannot be converted, or labels the model type refuses.

    Examples:
        >>> import numpy as np, dlbatch
        >>> model = dlbatch.create_dl_model("classification", class_ids=[0, 1], image_dimensions=[8, 8, 1])
        >>> raw = {"image": np.full((20, 30), 255, np.uint8), "image_label_id": 1}
        >>> sample = dlbatch.preprocess_dl_samples([raw], model)[0]
        >>> sample["image"].shape, float(sample["image"].max())
        ((8, 8, 1), 128.0)
    """
    out = []
    hp = model.hyperparameters
    for i, s in enumerate(as_sample_list(samples)):
        require_key(s, i, "image", "preprocessing needs")
        out.append(model.model_type.preprocess_sample(s, hp, i))
    return out
