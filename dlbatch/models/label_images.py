"""Per-pixel labels of segmentation samples: validation with errors that name the sample and
key, and the mapping of the user's class ids to 0..K-1, vectorised over the whole image."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..core.errors import DLParamError, DLSampleError
from ..core.samples import fits_int64, require_key, sample_array


class LabelMap:
    """The user's class ids (and ids to ignore) -> class indices 0..K-1 for whole images."""

    def __init__(self, class_ids: Sequence[int], ignore_class_ids: Sequence[int] = ()):
        for name, ids in (("class_ids", class_ids), ("ignore_class_ids", ignore_class_ids)):
            beyond = [int(c) for c in ids if not -2 ** 63 <= int(c) < 2 ** 63]
            if beyond:
                raise DLParamError(f"{name} holds {beyond[:3]}, beyond the range of label image ids (int64); "
                                   f"set {name} to ids that a label image can hold")
        self.class_ids = [int(c) for c in class_ids]
        self.ignore = sorted({int(c) for c in ignore_class_ids})
        known = sorted(set(self.class_ids) | set(self.ignore))
        self._sorted = np.array(known, dtype=np.int64)
        index = {c: i for i, c in enumerate(self.class_ids)}
        # ids only in ignore_class_ids map to index 0 with weight 0
        self._index = np.array([index.get(c, 0) for c in known], dtype=np.int64)
        self._ignored = np.isin(self._sorted, self.ignore)

    def positions(self, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position of each pixel's id among the known ids, whether the id is known)."""
        pos = np.clip(np.searchsorted(self._sorted, label), 0, len(self._sorted) - 1)
        return pos, self._sorted[pos] == label

    def encode(self, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(class index per pixel, True where the pixel counts) for a checked label image."""
        pos, _ = self.positions(label)
        return self._index[pos], ~self._ignored[pos]


def _image_2d(value, index: int, key: str, hp: Mapping[str, Any]) -> np.ndarray:
    h, w = hp["image_height"], hp["image_width"]
    arr = sample_array(value, index, key)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.shape != (h, w):
        raise DLSampleError(f"sample {index}: {key!r} has shape {arr.shape}, the model needs ({h}, {w}) "
                            "(height, width), the size of the image; run preprocess_dl_samples(samples, model) "
                            "to resize images and labels together")
    if arr.dtype.kind not in "iuf":
        raise DLSampleError(f"sample {index}: {key!r} has dtype {arr.dtype}, expected numbers")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise DLSampleError(f"sample {index}: {key!r} contains NaN or infinite values")
    return arr


def label_image(sample: Mapping, index: int, hp: Mapping[str, Any], labels: LabelMap) -> np.ndarray:
    """The sample's `segmentation_image` as int64 ids, checked against the known ids."""
    arr = _image_2d(require_key(sample, index, "segmentation_image", "training a segmentation model needs"),
                    index, "segmentation_image", hp)
    if arr.dtype.kind == "f":
        if (arr != np.round(arr)).any():
            raise DLSampleError(f"sample {index}: 'segmentation_image' must hold integer class ids, "
                                "found fractional values")
    if not fits_int64(arr):
        raise DLSampleError(f"sample {index}: 'segmentation_image' holds values from {arr.min()!r} to {arr.max()!r}, "
                            f"outside the range of class ids (int64); class_ids are {labels.class_ids}")
    arr = arr.astype(np.int64)
    _, known = labels.positions(arr)
    if not known.all():
        unknown = sorted(set(np.unique(arr[~known]).tolist()))[:10]
        raise DLSampleError(f"sample {index}: 'segmentation_image' holds class ids {unknown}, which are neither "
                            f"class_ids {labels.class_ids} nor ignore_class_ids {labels.ignore}; fix the labels "
                            "or add them to class_ids / ignore_class_ids")
    return arr


def weight_image(sample: Mapping, index: int, hp: Mapping[str, Any]) -> np.ndarray | None:
    """The sample's optional `weight_image` (finite, >= 0), or None."""
    if sample.get("weight_image") is None:
        return None
    arr = _image_2d(sample["weight_image"], index, "weight_image", hp).astype(np.float64)
    if (arr < 0).any():
        raise DLSampleError(f"sample {index}: 'weight_image' has negative weights; weights must be >= 0 "
                            "(0 ignores a pixel)")
    return arr
