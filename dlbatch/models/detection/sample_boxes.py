"""Boxes of detection samples: read the instance type's keys, check them with errors that name
the sample index and key, and move them with the image when it is resized."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ...core.errors import DLSampleError
from ...core.preprocess import SampleContext
from ...core.samples import fits_int64, require_key, sample_array

LABEL_KEY = "bbox_label_id"
BORDER_TOLERANCE = 1e-6  # boxes may touch the image border (-0.5 .. side - 0.5) up to rounding


def _vector(sample: Mapping, index: int, key: str, kind: str) -> np.ndarray:
    value = require_key(sample, index, key, "training a detection model needs")
    arr = sample_array(value, index, key)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise DLSampleError(f"sample {index}: {key!r} must be a 1-D array with one entry per box, got shape "
                            f"{arr.shape}")
    if arr.size and arr.dtype.kind not in ("iu" if kind == "int" else "iuf"):
        raise DLSampleError(f"sample {index}: {key!r} must hold numbers, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise DLSampleError(f"sample {index}: {key!r} contains NaN or infinite values (box "
                            f"{int(np.flatnonzero(~np.isfinite(arr))[0])})")
    if kind == "int" and not fits_int64(arr):
        raise DLSampleError(f"sample {index}: {key!r} holds {arr.max()!r}, outside the range of class ids (int64)")
    return arr.astype(np.int64 if kind == "int" else np.float64)


def read_boxes(sample: Mapping, index: int, geometry, hp: Mapping[str, Any],
               class_index: Mapping[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(boxes (n, P), class indices (n,)) of one sample, checked: equal lengths, finite, not
    degenerate, inside the image, known class ids."""
    columns = [_vector(sample, index, key, "float") for key in geometry.keys]
    labels = _vector(sample, index, LABEL_KEY, "int")
    lengths = {key: len(c) for key, c in zip((*geometry.keys, LABEL_KEY), (*columns, labels))}
    if len(set(lengths.values())) > 1:
        raise DLSampleError(f"sample {index}: the box keys must have one entry per box, but their lengths differ: "
                            f"{lengths}")
    boxes = np.stack(columns, axis=1) if columns else np.zeros((0, len(geometry.keys)))
    problem = geometry.check(boxes, hp["image_height"], hp["image_width"], BORDER_TOLERANCE)
    if problem is not None:
        box, key, what = problem
        raise DLSampleError(f"sample {index}: box {box} {what} ({key!r}); fix or drop the box")
    unknown = [int(c) for c in labels if int(c) not in class_index]
    if unknown:
        raise DLSampleError(f"sample {index}: {LABEL_KEY!r} holds class ids {sorted(set(unknown))[:10]}, which are "
                            f"not class_ids {sorted(class_index)}; fix the labels or set class_ids")
    return boxes, np.array([class_index[int(c)] for c in labels], dtype=np.int64)


def scale_sample_boxes(sample: dict, geometry, context: SampleContext) -> None:
    """Move the sample's boxes from raw-image to network-input coordinates (in place)."""
    if not all(k in sample for k in geometry.keys):
        return
    boxes = np.stack([np.asarray(sample[k], dtype=np.float64).reshape(-1) for k in geometry.keys], axis=1)
    scaled = geometry.scale(boxes, context.scale_row, context.scale_col)
    for j, key in enumerate(geometry.keys):
        sample[key] = scaled[:, j]
