"""DLDataset: a lazy Sequence of raw sample dicts over images on disk.

Only the index lives in memory (file names, class labels, boxes); `ds[i]` reads the image
(and a segmentation label image) with Pillow at that moment and returns a new dict:

    {"image": uint8 H x W x C, "image_id": int, "image_file_name": str, <label keys of SPEC 6>}

with labels in the raw image's pixels: boxes float64 arrays and bbox_label_id int64
(detection), segmentation_image int32 H x W (segmentation), image_label_id int
(classification). `dlbatch.preprocess_dl_samples` then fits them to a model. Checks that
need the pixels (image size against the index, boxes inside an image of unknown size, label
image values and size) run at that moment too, and their errors name the file.

Subsets and splits are views: they share the index entries and read nothing.
"""
from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..core.errors import DLError, DLParamError, DLSampleError
from .boxes import check_boxes
from .images import read_image, read_label_image

SPLIT_NAMES = ("train", "validation", "test")
MODEL_TYPES = ("classification", "detection", "segmentation")


@dataclass(frozen=True)
class Record:
    """One sample of the index: where its files are and the labels the index holds."""

    image_path: Path
    image_file_name: str
    image_id: int
    labels: Mapping[str, Any] = field(default_factory=dict)
    split: str | None = None
    label_path: Path | None = None  # segmentation label image
    size: tuple[int, int] | None = None  # (height, width) as the index declares it


class DLDataset(Sequence):
    """Raw samples of one model type with their class ids and names (see the module docstring).

    Usually made by `dlbatch.read_dl_dataset`; `ds[i]` reads sample i from disk, `len(ds)`
    counts the samples, slices and `subset`/`split` give views without reading anything.

    Args:
        records: the index entries (`Record`), one per sample.
        model_type: "classification", "detection" or "segmentation".
        class_ids: the class ids (unique).
        class_names: one name per class id (default: the ids as text).
        instance_type: "rectangle1" or "rectangle2" for detection, else None.
        source: the folder or JSON file the dataset was read from.
        border_tolerance: how far (pixels) a box may reach outside its image.

    Raises:
        DLParamError: an unknown model type, instance_type missing for detection (or given for
            another type), or class ids and names that do not match.

    Examples:
        >>> from dlbatch.datasets import read_dl_dataset, write_synthetic_dataset
        >>> data = read_dl_dataset(write_synthetic_dataset("detection", "coco_data", num_samples=3))
        >>> len(data), data.model_type, data.instance_type, sorted(data[0])[:3]
        (3, 'detection', 'rectangle1', ['bbox_col1', 'bbox_col2', 'bbox_label_id'])
    """

    def __init__(self, records, *, model_type: str, class_ids, class_names=None,
                 instance_type: str | None = None, source=None, border_tolerance: float = 1.0):
        if model_type not in MODEL_TYPES:
            raise DLParamError(f"model_type must be one of {', '.join(MODEL_TYPES)}, got {model_type!r}")
        if (model_type == "detection") != (instance_type is not None):
            raise DLParamError("instance_type ('rectangle1' or 'rectangle2') is needed for detection "
                               f"datasets and only for them, got {instance_type!r} for {model_type}")
        self._records = tuple(records)
        self._model_type = model_type
        self._instance_type = instance_type
        self._class_ids = [int(c) for c in class_ids]
        names = [str(c) for c in self._class_ids] if class_names is None else [str(n) for n in class_names]
        if len(names) != len(self._class_ids) or len(set(self._class_ids)) != len(self._class_ids):
            raise DLParamError(f"class_ids must be unique and match class_names one to one, got "
                               f"{self._class_ids} and {names}")
        self._class_names = names
        self._source = None if source is None else Path(source)
        self._tolerance = float(border_tolerance)

    # --- what the dataset is ----------------------------------------------------------------
    @property
    def model_type(self) -> str:
        """The model type the samples are labelled for."""
        return self._model_type

    @property
    def instance_type(self) -> str | None:
        """rectangle1 or rectangle2 for detection datasets, else None."""
        return self._instance_type

    @property
    def class_ids(self) -> list[int]:
        """The class ids (a copy)."""
        return list(self._class_ids)

    @property
    def class_names(self) -> list[str]:
        """One name per class id (a copy)."""
        return list(self._class_names)

    @property
    def source(self) -> Path | None:
        """The folder or JSON file the dataset was read from."""
        return self._source

    def __len__(self) -> int:
        return len(self._records)

    def __repr__(self) -> str:
        kind = self._model_type + (f" ({self._instance_type})" if self._instance_type else "")
        splits = {s: sum(r.split == s for r in self._records) for s in self.split_names()}
        return (f"DLDataset({kind}, {len(self)} samples, {len(self._class_ids)} classes"
                + (f", splits {splits}" if splits else "") + (f", from {self._source}" if self._source else "") + ")")

    # --- samples --------------------------------------------------------------------------
    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.subset(range(len(self))[index])
        return self._load(self._records[self._position(index)])

    def annotations(self, index: int) -> dict:
        """What the index knows about a sample, without reading any file.

        Args:
            index: the sample's position (negative counts from the end).

        Returns:
            image_id, image_file_name, split, image_size ([height, width] where the index
            declares it, as COCO files do, else None) and the labels held in memory (boxes,
            image_label_id).

        Raises:
            IndexError: no such sample.
        """
        record = self._records[self._position(index)]
        size = None if record.size is None else list(record.size)
        return {"image_id": record.image_id, "image_file_name": record.image_file_name,
                "split": record.split, "image_size": size, **_copy(record.labels)}

    def image_path(self, index: int) -> Path:
        """The image file of sample `index` (nothing is read)."""
        return self._records[self._position(index)].image_path

    def _position(self, index) -> int:
        try:
            i = operator.index(index)
        except TypeError:
            raise TypeError(f"DLDataset indices must be integers or slices, not {type(index).__name__}") from None
        if not -len(self) <= i < len(self):
            raise IndexError(f"sample index {i} is out of range for a dataset of {len(self)} samples")
        return i % len(self)

    def _load(self, record: Record) -> dict:
        image = read_image(record.image_path)
        height, width = image.shape[:2]
        if record.size is not None and tuple(record.size) != (height, width):
            raise DLSampleError(f"{record.image_path}: the image is {height} x {width} pixels (rows x columns) "
                                f"but the dataset index says {record.size[0]} x {record.size[1]}; fix the "
                                "index or the image")
        sample = {"image": image, "image_id": record.image_id, "image_file_name": record.image_file_name,
                  **_copy(record.labels)}
        if self._model_type == "detection" and record.size is None:
            where = f"{record.image_path} (image {record.image_id} of {self._source})"
            check_boxes(sample, self._instance_type, where, (height, width), self._tolerance)
        if self._model_type == "segmentation":
            sample["segmentation_image"] = self._label_image(record, (height, width))
        return sample

    def _label_image(self, record: Record, size) -> np.ndarray:
        label = read_label_image(record.label_path)
        if label.shape != size:
            raise DLSampleError(f"{record.label_path}: the label image is {label.shape[0]} x {label.shape[1]} "
                                f"pixels but its image {record.image_path.name} is {size[0]} x {size[1]}; "
                                "they must have the same size")
        unknown = np.setdiff1d(np.unique(label), self._class_ids)
        if unknown.size:
            raise DLSampleError(f"{record.label_path}: label values {unknown.tolist()[:10]} are not among the "
                                f"dataset's class_ids {self._class_ids}; fix the label image or list those "
                                "ids in the dataset's classes")
        return label

    # --- views ----------------------------------------------------------------------------
    def subset(self, indices) -> "DLDataset":
        """The samples at `indices` (in that order) as a dataset sharing this one's index.

        Args:
            indices: sample positions.

        Returns:
            A new DLDataset (a view; nothing is read).
        """
        return self._with([self._records[self._position(i)] for i in indices])

    def split_names(self) -> list[str]:
        """The split names samples carry: train, validation, test first, others sorted."""
        present = {r.split for r in self._records if r.split is not None}
        return [s for s in SPLIT_NAMES if s in present] + sorted(present - set(SPLIT_NAMES))

    def split(self, name: str) -> "DLDataset":
        """The samples whose split is `name` (possibly none, e.g. test after a 80/20 split).

        Args:
            name: "train", "validation", "test" or another split name the samples carry.

        Returns:
            A new DLDataset (a view).

        Raises:
            DLError: the dataset has no splits (use `dlbatch.split_dl_dataset`).
            DLParamError: an unknown split name.
        """
        names = self.split_names()
        if not names:
            raise DLError("this dataset has no splits; call dlbatch.split_dl_dataset(dataset, train_percent, "
                          "validation_percent) first")
        if name not in names and name not in SPLIT_NAMES:
            raise DLParamError(f"unknown split {name!r}; this dataset has {', '.join(names)}")
        return self._with([r for r in self._records if r.split == name])

    def with_splits(self, splits) -> "DLDataset":
        """A copy whose sample i has split splits[i].

        Args:
            splits: one split name (or None) per sample.

        Returns:
            A new DLDataset.

        Raises:
            DLParamError: not one split per sample.
        """
        splits = list(splits)
        if len(splits) != len(self):
            raise DLParamError(f"need one split per sample ({len(self)}), got {len(splits)}")
        return self._with([replace(r, split=None if s is None else str(s))
                           for r, s in zip(self._records, splits)])

    def _with(self, records) -> "DLDataset":
        return DLDataset(records, model_type=self._model_type, class_ids=self._class_ids,
                         class_names=self._class_names, instance_type=self._instance_type,
                         source=self._source, border_tolerance=self._tolerance)


def _copy(labels: Mapping[str, Any]) -> dict:
    """Fresh label values, so that changing a returned sample never changes the index."""
    return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in labels.items()}
