"""Sample validation and batching shared by every model type (SPEC section 6)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .errors import DLSampleError


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
                            f"its keys are {sorted(sample)}")
    return sample[key]


def check_image(sample: Mapping, index: int, hp: Mapping[str, Any]) -> None:
    """The image must be H x W x C (or H x W for one channel) in the model's size, finite."""
    image = require_key(sample, index, "image", "every sample needs")
    h, w, c = hp["image_height"], hp["image_width"], hp["image_num_channels"]
    arr = np.asarray(image)
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
    arr = np.asarray(value)
    if arr.size != 1 or arr.dtype.kind not in "iuf" or (arr.dtype.kind == "f" and
                                                       (not np.isfinite(arr).all() or arr.item() != int(arr.item()))):
        raise DLSampleError(f"sample {index}: {key!r} must be one integer class id, got {value!r}")
    cid = int(arr.item())
    if cid not in id_to_index:
        raise DLSampleError(f"sample {index}: {key!r} is {cid}, which is not one of the model's "
                            f"class_ids {sorted(id_to_index)}; fix the label or set class_ids")
    return id_to_index[cid]
