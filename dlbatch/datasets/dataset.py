"""DLDataset: a lazy Sequence of raw sample dicts over images on disk.

Only the index lives in memory (file names, class labels, boxes); `ds[i]` reads the image
(and a segmentation label image) with Pillow at that moment and returns a new dict:

    {"image": uint8 H x W x C, "image_id": int, "image_file_name": str, <label keys of SPEC 6>}

with labels in the raw image's pixels: boxes float64 arrays and bbox_label_id int64
(detection), segmentation_image int32 H x W (segmentation), image_label_id int
(classification). `dlbatch.preprocess_dl_samples` then fits them to a model. Checks that
need the pixels (image size against the index, boxes inside an image of unknown size, label
image values and size) run at that moment too, and their errors name the file.

Subsets and splits are views: they share the index entries and read nothing. An index entry and
the checks of its files are `dlbatch.datasets.records` (Record, re-exported here).
"""
from __future__ import annotations

import operator
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ..core.errors import DLError, DLParamError
from .images import read_image
from .records import Record, RecordChecks, copy_labels
from .skipping import DLDataWarning, check_in_threads, describe_skipped

__all__ = ["DLDataset", "Record", "SPLIT_NAMES", "MODEL_TYPES"]  # Record: re-exported for the readers

SPLIT_NAMES = ("train", "validation", "test")
MODEL_TYPES = ("classification", "detection", "segmentation")


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
        skipped: (image path, reason) of the samples left out when the dataset was read
            (see skip_bad_samples); views keep it.

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
                 instance_type: str | None = None, source=None, border_tolerance: float = 1.0,
                 skipped=()):
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
        self._skipped = tuple((Path(path), str(reason)) for path, reason in skipped)
        self._checks = RecordChecks(model_type, instance_type, self._class_ids, self._source, self._tolerance)

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

    @property
    def skipped_samples(self) -> list[tuple[Path, str]]:
        """(image path, reason) of each sample skip_bad_samples (or read_dl_dataset with
        skip_bad_images=True) left out; empty when none was."""
        return list(self._skipped)

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

        Examples:
            >>> facts = data.annotations(0)
            >>> facts["image_size"], facts["bbox_label_id"].dtype
            ([64, 64], dtype('int64'))
        """
        record = self._records[self._position(index)]
        size = None if record.size is None else list(record.size)
        return {"image_id": record.image_id, "image_file_name": record.image_file_name,
                "split": record.split, "image_size": size, **copy_labels(record.labels)}

    def image_path(self, index: int) -> Path:
        """The image file of a sample (nothing is read).

        Args:
            index: the sample's position (negative counts from the end).

        Returns:
            The path of its image file.

        Raises:
            IndexError: no such sample.

        Examples:
            >>> data.image_path(-1).name
            '000002.png'
        """
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
        """The raw sample of `record`, read now, with the checks `bad_samples` makes too."""
        image = read_image(record.image_path)
        self._checks.check_size(record, image.shape[:2])
        sample = {"image": image, "image_id": record.image_id, "image_file_name": record.image_file_name,
                  **copy_labels(record.labels)}
        if self._model_type == "segmentation":
            sample["segmentation_image"] = self._checks.label_image(record, image.shape[:2])
        return sample

    # --- checking every file ----------------------------------------------------------------
    def bad_samples(self) -> list[tuple[int, str]]:
        """The samples that cannot be read, found by reading each one's files once now.

        Each image (and segmentation label image) is opened, checked against the pixel limit
        (DLBATCH_MAX_IMAGE_PIXELS) and decoded in full, so corrupt, truncated, huge and
        wrongly-moded files are found, and the checks of reading a sample (image size against
        the index, boxes inside the image, label image size and values) are made, all exactly
        as `ds[i]` makes them. Up to skipping.CHECK_THREADS files are checked at once.

        Returns:
            (index, reason) per sample `ds[index]` would refuse, in index order; the reason is
            that DLSampleError's message, naming the file.

        Raises:
            DLParamError: DLBATCH_MAX_IMAGE_PIXELS is not a valid limit.

        Examples:
            >>> from dlbatch.datasets import read_dl_dataset, write_synthetic_dataset
            >>> checked = read_dl_dataset(write_synthetic_dataset("classification", "checked", num_samples=3))
            >>> checked.bad_samples()
            []
        """
        reasons = check_in_threads(self._checks.problem, self._records)
        return [(i, reason) for i, reason in enumerate(reasons) if reason is not None]

    def skip_bad_samples(self, stacklevel: int = 2) -> "DLDataset":
        """This dataset without the samples whose files cannot be read, with one warning.

        The samples bad_samples finds are left out (the others keep their order and splits),
        and one DLDataWarning says how many and lists each with its reason (the first
        skipping.LISTED_SKIPS, then how many more). The new dataset's skipped_samples holds them all.

        Args:
            stacklevel: passed to warnings.warn, so that the warning points at the caller.

        Returns:
            A new DLDataset (this one when nothing is bad: then there is no warning).

        Raises:
            DLError: every sample is bad (the message lists them).
            DLParamError: DLBATCH_MAX_IMAGE_PIXELS is not a valid limit.

        Examples:
            >>> from dlbatch.datasets import read_dl_dataset, write_synthetic_dataset
            >>> path = write_synthetic_dataset("classification", "skipping", num_samples=4)
            >>> unchecked = read_dl_dataset(path)
            >>> _ = unchecked.image_path(0).write_bytes(b"not an image")
            >>> import warnings
            >>> with warnings.catch_warnings(record=True) as caught:
            ...     warnings.simplefilter("always")
            ...     kept = unchecked.skip_bad_samples()
            >>> len(kept), len(kept.skipped_samples), caught[0].category.__name__
            (3, 1, 'DLDataWarning')
        """
        bad = self.bad_samples()
        if not bad:
            return self
        listed = describe_skipped([r for _, r in bad])
        if len(bad) == len(self):
            raise DLError(f"{self._source or 'the dataset'}: none of its {len(self)} samples can be read, so "
                          f"none is left to skip to:\n{listed}")
        out = set(i for i, _ in bad)
        skipped = self._skipped + tuple((self._records[i].image_path, reason) for i, reason in bad)
        kept = DLDataset([r for i, r in enumerate(self._records) if i not in out], **self._settings(),
                         skipped=skipped)
        warnings.warn(f"skipped {len(bad)} of {len(self)} samples of {self._source or 'the dataset'} whose files "
                      f"cannot be read (replace or remove them to use them):\n{listed}", DLDataWarning,
                      stacklevel=stacklevel + 1)
        return kept

    # --- views ----------------------------------------------------------------------------
    def subset(self, indices) -> "DLDataset":
        """The samples at `indices` (in that order) as a dataset sharing this one's index.

        Args:
            indices: sample positions.

        Returns:
            A new DLDataset (a view; nothing is read).

        Raises:
            IndexError: an index out of range.

        Examples:
            >>> [data.subset([2, 0]).image_path(i).name for i in range(2)]
            ['000002.png', '000000.png']
        """
        return self._with([self._records[self._position(i)] for i in indices])

    def split_names(self) -> list[str]:
        """The split names samples carry.

        Returns:
            train, validation, test (those present) first, then other names sorted; empty for
            a dataset without splits.

        Examples:
            >>> data.split_names(), data.with_splits(["test", "custom", "train"]).split_names()
            ([], ['train', 'test', 'custom'])
        """
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

        Examples:
            >>> parts = data.with_splits(["train", "train", "validation"])
            >>> len(parts.split("train")), len(parts.split("test"))
            (2, 0)
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

        Examples:
            >>> [data.with_splits(["train", None, "test"]).annotations(i)["split"] for i in range(3)]
            ['train', None, 'test']
        """
        splits = list(splits)
        if len(splits) != len(self):
            raise DLParamError(f"need one split per sample ({len(self)}), got {len(splits)}")
        return self._with([replace(r, split=None if s is None else str(s))
                           for r, s in zip(self._records, splits)])

    def _with(self, records) -> "DLDataset":
        return DLDataset(records, **self._settings(), skipped=self._skipped)

    def _settings(self) -> dict:
        return dict(model_type=self._model_type, class_ids=self._class_ids, class_names=self._class_names,
                    instance_type=self._instance_type, source=self._source, border_tolerance=self._tolerance)

