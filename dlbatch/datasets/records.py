"""One entry of a dataset's index (`Record`) and the checks of its files (`RecordChecks`): the
checks that need the pixels, which a dataset makes when it reads a sample (`ds[i]`) and when it
checks every file (`bad_samples`, with one decode of each file and no conversion), so that both
refuse exactly the same samples with the same message.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..core.errors import DLSampleError
from .boxes import check_boxes
from .images import check_image, read_label_image


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


class RecordChecks:
    """The checks of one dataset's index entries: what they need to know of the dataset.

    Args:
        model_type: "classification", "detection" or "segmentation".
        instance_type: "rectangle1" or "rectangle2" for detection, else None.
        class_ids: the dataset's class ids (label image values must be among them).
        source: the folder or JSON file the dataset was read from (named in errors).
        border_tolerance: how far (pixels) a box may reach outside its image.
    """

    def __init__(self, model_type: str, instance_type: str | None, class_ids: list[int], source: Path | None,
                 border_tolerance: float):
        self.model_type = model_type
        self.instance_type = instance_type
        self.class_ids = class_ids
        self.source = source
        self.border_tolerance = border_tolerance

    def problem(self, record: Record) -> str | None:
        """Why reading `record`'s sample would fail (its DLSampleError message), else None:
        `check_size` and `label_image` with one decode of each file and no conversion of the
        image's pixels."""
        try:
            size = check_image(record.image_path)
            self.check_size(record, size)
            if self.model_type == "segmentation":
                self.label_image(record, size)
        except DLSampleError as exc:
            return str(exc)
        return None

    def check_size(self, record: Record, size) -> None:
        """The image's (height, width) against the index and, without sizes there, its boxes.

        Raises:
            DLSampleError: a size or box that does not fit, naming the file.
        """
        height, width = size
        if record.size is not None and tuple(record.size) != (height, width):
            raise DLSampleError(f"{record.image_path}: the image is {height} x {width} pixels (rows x columns) "
                                f"but the dataset index says {record.size[0]} x {record.size[1]}; fix the "
                                "index or the image")
        if self.model_type == "detection" and record.size is None:
            where = f"{record.image_path} (image {record.image_id} of {self.source})"
            check_boxes(record.labels, self.instance_type, where, (height, width), self.border_tolerance)

    def label_image(self, record: Record, size) -> np.ndarray:
        """The segmentation label image of `record`, checked against its image's (height,
        width) and the dataset's class ids.

        Raises:
            DLSampleError: a label image that cannot be read, or of another size, or with
                values that are no class ids, naming the file.
        """
        label = read_label_image(record.label_path)
        if label.shape != tuple(size):
            raise DLSampleError(f"{record.label_path}: the label image is {label.shape[0]} x {label.shape[1]} "
                                f"pixels but its image {record.image_path.name} is {size[0]} x {size[1]}; "
                                "they must have the same size")
        unknown = np.setdiff1d(np.unique(label), self.class_ids)
        if unknown.size:
            raise DLSampleError(f"{record.label_path}: label values {unknown.tolist()[:10]} are not among the "
                                f"dataset's class_ids {self.class_ids}; fix the label image or list those "
                                "ids in the dataset's classes")
        return label


def copy_labels(labels: Mapping[str, Any]) -> dict:
    """Fresh label values, so that changing a returned sample never changes the index."""
    return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in labels.items()}
