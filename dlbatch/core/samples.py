"""Sample validation and batching shared by every model type (SPEC section 6).

A model type's `check_samples` and `encode` use these helpers, so that every model type
refuses a bad sample with the same kind of message (the sample's index, the key, what was
wrong and what to do) before anything changes the model.

Examples:
    >>> import numpy as np
    >>> hp = {"image_height": 2, "image_width": 3, "image_num_channels": 1}
    >>> samples = [{"image": np.zeros((2, 3)), "image_label_id": 7}]
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import DLSampleError

__all__ = ["as_sample_list", "require_key", "sample_array", "check_image", "check_original_size",
           "images_to_nchw", "class_index", "fits_int64"]

FLOAT32_MAX = float(np.finfo(np.float32).max)
INT64_RANGE = (-(2.0 ** 63), 2.0 ** 63)  # as floats: values outside do not fit an int64 class id


def fits_int64(arr: np.ndarray) -> bool:
    """Whether every value of a numeric array converts to int64 without wrapping.

    Args:
        arr: a numeric numpy array (integers or floats).

    Returns:
        True when every value lies in the int64 range.

    Examples:
        >>> fits_int64(np.array([1.0, 2.0 ** 62])), fits_int64(np.array([2.0 ** 64]))
        (True, False)
    """
    if arr.size == 0 or arr.dtype.kind == "i":
        return True
    return bool(arr.min() >= INT64_RANGE[0]) and bool(arr.max() < INT64_RANGE[1])


def as_sample_list(samples) -> list[Mapping]:
    """The samples of a call as a list of dicts.

    Args:
        samples: one dict or a sequence of dicts (a list, a tuple, a dlbatch.datasets view).

    Returns:
        A new list of the sample dicts (not copied).

    Raises:
        DLSampleError: anything else, or a sequence holding something other than a dict.

    Examples:
        >>> len(as_sample_list(samples[0])), len(as_sample_list(tuple(samples)))
        (1, 1)
    """
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
    """A sample's value under `key`, which must be there.

    Args:
        sample: the sample dict.
        index: its index in the call, for the message.
        key: the key.
        purpose: what needs it, completing "which ..." in the message.

    Returns:
        The value.

    Raises:
        DLSampleError: the key is missing; the message lists the sample's keys.

    Examples:
        >>> require_key(samples[0], 0, "image_label_id", "training needs")
        7
        >>> require_key(samples[0], 0, "weight_image", "training needs")
        Traceback (most recent call last):
        dlbatch.core.errors.DLSampleError: sample 0 has no 'weight_image' key, which training needs; ...
    """
    if key not in sample:
        raise DLSampleError(f"sample {index} has no {key!r} key, which {purpose}; "
                            f"its keys are {sorted(sample, key=str)}")
    return sample[key]


def sample_array(value, index: int, key: str) -> np.ndarray:
    """A sample's value as a numpy array.

    Args:
        value: the value (an array, a nested list, a number).
        index: the sample's index in the call, for the message.
        key: the value's key, for the message.

    Returns:
        `np.asarray(value)`.

    Raises:
        DLSampleError: a value numpy cannot turn into one array (a ragged nested list, an
            object whose conversion fails) or a masked array with masked entries.

    Examples:
        >>> sample_array([[1, 2], [3, 4]], 0, "bbox_row1").shape
        (2, 2)
        >>> sample_array([[1, 2], [3]], 0, "bbox_row1")       # doctest: +ELLIPSIS
        Traceback (most recent call last):
        dlbatch.core.errors.DLSampleError: sample 0: 'bbox_row1' is not an array of numbers ...
    """
    if isinstance(value, np.ma.MaskedArray) and np.ma.is_masked(value):
        raise DLSampleError(f"sample {index}: {key!r} is a masked array with masked entries, which dlbatch "
                            "would read as their hidden values; fill them first (np.ma.filled)")
    try:
        return np.asarray(value)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise DLSampleError(f"sample {index}: {key!r} is not an array of numbers ({type(value).__name__}: "
                            f"{exc})") from None


def check_image(sample: Mapping, index: int, hp: Mapping[str, Any]) -> None:
    """Check a sample's image: H x W x C (or H x W for one channel) in the model's size,
    numbers, finite and within the float32 range; and its `original_image_size`.

    Args:
        sample: the sample dict.
        index: its index in the call, for the message.
        hp: the hyperparameters (image_height, image_width, image_num_channels).

    Raises:
        DLSampleError: no image, a wrong shape or type, a non-finite or too large value, or
            an invalid `original_image_size`; the message says what to do.

    Examples:
        >>> check_image(samples[0], 0, hp)          # fine: returns None
        >>> check_image({"image": np.zeros((3, 3))}, 1, hp)     # doctest: +ELLIPSIS
        Traceback (most recent call last):
        dlbatch.core.errors.DLSampleError: sample 1: 'image' has shape (3, 3), the model needs (2, 3, 1) or (2, 3) ...
    """
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
    # one min and one max, no temporaries: NaN propagates into both, +-inf fails the range test
    lo, hi = (float(arr.min()), float(arr.max())) if arr.dtype.kind == "f" and arr.size else (0.0, 0.0)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise DLSampleError(f"sample {index}: 'image' contains NaN or infinite values")
    if max(-lo, hi) > FLOAT32_MAX:
        raise DLSampleError(f"sample {index}: 'image' has values up to {max(-lo, hi):.3g}, beyond the float32 "
                            f"range ({FLOAT32_MAX:.3g}), which become infinite in the network; scale the image to "
                            "[image_range_min, image_range_max] (preprocess_dl_samples does)")
    check_original_size(sample, index)


def check_original_size(sample: Mapping, index: int) -> None:
    """Check a sample's `original_image_size`, when present.

    preprocess_dl_samples sets it; results are mapped back to it, so it must be
    [height, width], two integers >= 1.

    Args:
        sample: the sample dict.
        index: its index in the call, for the message.

    Raises:
        DLSampleError: anything else.

    Examples:
        >>> check_original_size({"original_image_size": [480, 640]}, 0)
        >>> check_original_size({"original_image_size": [480]}, 0)        # doctest: +ELLIPSIS
        Traceback (most recent call last):
        dlbatch.core.errors.DLSampleError: sample 0: 'original_image_size' must be [height, width], ...
    """
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
    """Stack the samples' images into the network's input array (a model type's `encode`).

    Args:
        samples: checked samples (`check_image`), H x W x C or H x W images.
        hp: the hyperparameters (image_height, image_width, image_num_channels).
        dtype: the model's precision ("float32", "float64").

    Returns:
        One N x C x H x W array of `dtype` whose memory is N x H x W x C, the images' own
        layout (channels_last): stacking is then a plain copy per image, and the torch
        backend's channels_last input needs no transpose; a backend that wants NCHW memory
        makes it in one copy (onnxruntime), the numpy backend reads either.

    Examples:
        >>> images_to_nchw(samples, hp, "float32").shape
        (1, 1, 2, 3)
    """
    h, w, c = hp["image_height"], hp["image_width"], hp["image_num_channels"]
    batch = np.empty((len(samples), h, w, c), dtype=dtype)
    for i, s in enumerate(samples):
        img = np.asarray(s["image"])
        batch[i] = img[:, :, None] if img.ndim == 2 else img
    return batch.transpose(0, 3, 1, 2)


def class_index(sample: Mapping, index: int, key: str, id_to_index: Mapping[int, int]) -> int:
    """A sample's class id as a class index 0..K-1.

    Args:
        sample: the sample dict.
        index: its index in the call, for the message.
        key: the key holding the class id ("image_label_id", ...).
        id_to_index: the model's class id -> index (from the `class_ids` parameter).

    Returns:
        The class index.

    Raises:
        DLSampleError: a missing key, a value that is not one integer, or an id that is not
            one of the model's class ids.

    Examples:
        >>> class_index(samples[0], 0, "image_label_id", {3: 0, 7: 1})
        1
        >>> class_index(samples[0], 0, "image_label_id", {0: 0, 1: 1})       # doctest: +ELLIPSIS
        Traceback (most recent call last):
        dlbatch.core.errors.DLSampleError: sample 0: 'image_label_id' is 7, which is not one of
        the model's class_ids [0, 1]; ...
    """
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
