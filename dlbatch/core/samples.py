"""Sample validation and batching shared by every model type (SPEC section 6)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .errors import DLSampleError

FLOAT32_MAX = float(np.finfo(np.float32).max)
INT64_RANGE = (-(2.0 ** 63), 2.0 ** 63)  # as floats: values outside do not fit an int64 class id


def fits_int64(arr: np.ndarray) -> bool:
    """Whether every value of a numeric array converts to int64 without wrapping."""
    if arr.size == 0 or arr.dtype.kind == "i":
        return True
    return bool(arr.min() >= INT64_RANGE[0]) and bool(arr.max() < INT64_RANGE[1])


def as_sample_list(samples) -> list[Mapping]:
    """Accept one dict or a sequence of dicts (a list, a tuple, a dlbatch.datasets view);
    anything else is an error that says so."""
    if isinstance(samples, Mapping):
        return [samples]
    if isinstance(samples, Sequence) and not isinstance(samples, (str, bytes)):
        samples = list(samples)  # a dataset view (any Sequence of dicts) is read here
        for i, s in enumerate(samples):
            if not isinstance(s, Mapping):
                raise DLSampleError(f"sample {i} is a {type(s).__name__}, expected a dict with "
                                    "an 'image' key (and label keys for training)")
        return list(samples)
    raise DLSampleError(f"samples must be a dict or a list of dicts, got {type(samples).__name__}")


def require_key(sample: Mapping, index: int, key: str, purpose: str) -> Any:
    if key not in sample:
        raise DLSampleError(f"sample {index} has no {key!r} key, which {purpose}; "
                            f"its keys are {sorted(sample, key=str)}")
    return sample[key]


def sample_array(value, index: int, key: str) -> np.ndarray:
    """np.asarray(value) for the sample's `key`; a value numpy cannot turn into one array (a
    ragged nested list, an object whose conversion fails) is a DLSampleError naming both."""
    if isinstance(value, np.ma.MaskedArray) and np.ma.is_masked(value):
        raise DLSampleError(f"sample {index}: {key!r} is a masked array with masked entries, which dlbatch "
                            "would read as their hidden values; fill them first (np.ma.filled)")
    try:
        return np.asarray(value)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise DLSampleError(f"sample {index}: {key!r} is not an array of numbers ({type(value).__name__}: "
                            f"{exc})") from None


def check_image(sample: Mapping, index: int, hp: Mapping[str, Any]) -> None:
    """The image must be H x W x C (or H x W for one channel) in the model's size, finite."""
    image = require_key(sample, index, "image", "every sample needs")
    h, w, c = hp["image_height"], hp["image_width"], hp["image_num_channels"]
    arr = sample_array(image, index, "image")
    if arr.dtype.kind not in "fiu":
        raise DLSampleError(f"sample {index}: 'image' has dtype {arr.dtype}, expected numbers")
    shape_ok = arr.shape == (h, w, c) or (c == 1 and arr.shape == (h, w))
    if not shape_ok:
        want = f"({h}, {w}, {c})" + (f" or ({h}, {w})" if c == 1 else "")
        raise DLSampleError(f"sample {index}: 'image' has shape {arr.shape}, the model needs {want} "
                            "(height, width, channels); run preprocess_dl_samples(samples, model) "
                            "or set image_width/image_height/image_num_channels")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise DLSampleError(f"sample {index}: 'image' contains NaN or infinite values")
    if arr.dtype.kind == "f" and arr.size and np.abs(arr).max() > FLOAT32_MAX:
        raise DLSampleError(f"sample {index}: 'image' has values up to {np.abs(arr).max():.3g}, beyond the float32 "
                            f"range ({FLOAT32_MAX:.3g}), which become infinite in the network; scale the image to "
                            "[image_range_min, image_range_max] (preprocess_dl_samples does)")
    check_original_size(sample, index)


def check_original_size(sample: Mapping, index: int) -> None:
    """`original_image_size` (set by preprocess_dl_samples; results are mapped back to it) must
    be [height, width], two integers >= 1, when present."""
    value = sample.get("original_image_size")
    if value is None:
        return
    arr = sample_array(value, index, "original_image_size")
    ok = arr.shape == (2,) and arr.dtype.kind in "iuf" and bool(np.isfinite(arr).all()) \
        and bool((arr >= 1).all()) and bool((arr == np.floor(arr)).all())
    if not ok:
        raise DLSampleError(f"sample {index}: 'original_image_size' must be [height, width], two integers >= 1 "
                            f"(the raw image's size), got {value!r:.80}; drop the key if the image was not resized")


def images_to_nchw(samples: Sequence[Mapping], hp: Mapping[str, Any], dtype: str) -> np.ndarray:
    """Stack HWC images into one NCHW array of the model's precision."""
    h, w, c = hp["image_height"], hp["image_width"], hp["image_num_channels"]
    batch = np.empty((len(samples), c, h, w), dtype=dtype)
    for i, s in enumerate(samples):
        img = np.asarray(s["image"])
        if img.ndim == 2:
            img = img[:, :, None]
        batch[i] = img.transpose(2, 0, 1)
    return batch


def class_index(sample: Mapping, index: int, key: str, id_to_index: Mapping[int, int]) -> int:
    """Map the user's class id under `key` to 0..K-1, with a clear error for anything else."""
    value = require_key(sample, index, key, "training this model needs")
    arr = sample_array(value, index, key)
    if arr.size != 1 or arr.dtype.kind not in "iuf" or (arr.dtype.kind == "f" and
                                                       (not np.isfinite(arr).all() or arr.item() != int(arr.item()))):
        raise DLSampleError(f"sample {index}: {key!r} must be one integer class id, got {value!r}")
    cid = int(arr.item())
    if cid not in id_to_index:
        raise DLSampleError(f"sample {index}: {key!r} is {cid}, which is not one of the model's "
                            f"class_ids {sorted(id_to_index)}; fix the label or set class_ids")
    return id_to_index[cid]
