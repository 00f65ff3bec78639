"""HALCON DLDataset dictionaries saved as JSON, for users coming from HALCON:

    {"class_ids": [...], "class_names": [...], "image_dir": "images",
     "segmentation_dir": "labels",                                 (segmentation only)
     "samples": [{"image_file_name": "a.png", "image_id": 0, "split": "train",
                  + classification: "image_label_id": 2
                  + detection rectangle1: "bbox_row1": [...], "bbox_col1": [...], "bbox_row2": [...],
                                          "bbox_col2": [...], "bbox_label_id": [...]
                  + detection rectangle2: "bbox_row", "bbox_col", "bbox_phi", "bbox_length1",
                                          "bbox_length2", "bbox_label_id" (lists)
                  + segmentation: "segmentation_file_name": "a.png"}, ...]}

Boxes are in HALCON's pixel-centre coordinates, which are dlbatch's (a single box may be
written as numbers instead of one-element lists). image_dir and segmentation_dir are relative
to the JSON file's folder unless absolute (an image_dir= argument replaces image_dir). Splits are kept.
The model type is told by the label keys the samples carry; every sample of a classification
dataset needs image_label_id, a detection sample without boxes is an empty image. The file
has no image sizes, so boxes are checked against the image when a sample is read.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import DLError, DLSampleError
from .boxes import RECTANGLE1_KEYS, RECTANGLE2_KEYS, box_keys, check_boxes
from .dataset import DLDataset, Record
from .jsonfile import class_table, integer, load_json, require

_KIND_KEYS = {("classification", None): ("image_label_id",),
              ("detection", "rectangle1"): RECTANGLE1_KEYS,
              ("detection", "rectangle2"): RECTANGLE2_KEYS,
              ("segmentation", None): ("segmentation_file_name",)}


def read_halcon_json(path, data=None, *, image_dir=None, border_tolerance: float = 1.0,
                     check_files: bool = True) -> DLDataset:
    """A HALCON DLDataset saved as JSON as a lazy DLDataset, splits kept (see the module docstring).

    Args:
        path: the JSON file.
        data: its content when already loaded (else it is read).
        image_dir: replaces the file's image_dir.
        border_tolerance: how far (pixels) a box may reach outside its image.
        check_files: check that every image (and label image) exists (a stat each) now.

    Returns:
        A DLDataset whose model type the samples' label keys tell.

    Raises:
        DLError: not an object, missing keys, or not exactly one kind of label.
        DLSampleError: an invalid sample, or (with check_files) a missing file; the message
            names the file and the sample.

    Examples:
        >>> import json
        >>> import numpy as np
        >>> from dlbatch.datasets.images import write_image
        >>> Path("hal").mkdir()
        >>> write_image("hal/a.png", np.zeros((4, 4, 1), np.uint8))
        >>> dataset = {"class_ids": [0, 1], "class_names": ["ok", "nok"], "image_dir": "hal",
        ...            "samples": [{"image_file_name": "a.png", "image_label_id": 1, "split": "train"}]}
        >>> _ = Path("hal.json").write_text(json.dumps(dataset))
        >>> data = read_halcon_json("hal.json")
        >>> data.model_type, data.split_names()
        ('classification', ['train'])
    """
    path = Path(path)
    data = load_json(path, "HALCON DLDataset file") if data is None else data
    if not isinstance(data, dict):
        raise DLError(f"{path}: a HALCON DLDataset file is a JSON object with class_ids, class_names, "
                      "image_dir and samples")
    where = str(path)
    class_ids, class_names = class_table(data.get("class_ids"), data.get("class_names"), where)
    base = Path(image_dir) if image_dir is not None else path.parent / require(data, "image_dir", where, str)
    samples = require(data, "samples", where, list)
    model_type, instance_type = _kind(samples, where)
    label_dir = None
    if model_type == "segmentation":
        label_dir = path.parent / require(data, "segmentation_dir", where, str)
    known = set(class_ids)
    records = [_record(s, k, where, base, label_dir, model_type, instance_type, known, check_files)
               for k, s in enumerate(samples)]
    return DLDataset(records, model_type=model_type, class_ids=class_ids, class_names=class_names,
                     instance_type=instance_type, source=path, border_tolerance=border_tolerance)


def _kind(samples, where) -> tuple[str, str | None]:
    found = [kind for kind, keys in _KIND_KEYS.items()
             if any(isinstance(s, dict) and keys[0] in s for s in samples)]
    if len(found) != 1:
        described = " and ".join(f"{m}{f' {i}' if i else ''}" for m, i in found) or "no labels"
        raise DLError(f"{where}: the samples carry {described}; a dataset needs exactly one kind of label "
                      "(image_label_id, bbox_row1.., bbox_row.., or segmentation_file_name)")
    return found[0]


def _record(sample, k, where, base, label_dir, model_type, instance_type, known, check_files) -> Record:
    at = f"{where}: samples[{k}]"
    name = require(sample, "image_file_name", at, str)
    at = f"{at} ({name!r})"
    image_id = integer(sample.get("image_id", k), at, "'image_id'")
    split = sample.get("split")
    if split is not None and not isinstance(split, str):
        raise DLSampleError(f"{at}: 'split' must be a name such as 'train', got {split!r}")
    labels, label_path = {}, None
    if model_type == "classification":
        cid = integer(require(sample, "image_label_id", at), at, "'image_label_id'")
        if cid not in known:
            raise DLSampleError(f"{at}: image_label_id {cid} is not among the class_ids {sorted(known)}")
        labels = {"image_label_id": cid}
    elif model_type == "detection":
        labels = _boxes(sample, at, instance_type, known)
    else:
        label_path = label_dir / require(sample, "segmentation_file_name", at, str)
        if check_files and not label_path.is_file():
            raise DLSampleError(f"{label_path}: label image not found ({at})")
    image_path = base / name
    if check_files and not image_path.is_file():
        raise DLSampleError(f"{image_path}: image file not found ({at}); restore it, fix 'image_dir' or "
                            "'image_file_name', or pass image_dir=")
    return Record(image_path=image_path, image_file_name=name, image_id=image_id, labels=labels,
                  split=split, label_path=label_path)


def _boxes(sample, at, instance_type, known) -> dict:
    keys = box_keys(instance_type) + ("bbox_label_id",)
    labels = {}
    for key in keys:
        raw = sample.get(key, [])
        try:
            labels[key] = np.atleast_1d(np.asarray(raw, dtype=np.float64))
        except (TypeError, ValueError):
            raise DLSampleError(f"{at}: {key!r} must be a number or a list of numbers, got {raw!r}") from None
        if labels[key].ndim != 1:
            raise DLSampleError(f"{at}: {key!r} must be a flat list, got {raw!r}")
    counts = {key: len(v) for key, v in labels.items()}
    if len(set(counts.values())) != 1:
        raise DLSampleError(f"{at}: the box keys must have one entry per box each, got lengths {counts}")
    ids = labels["bbox_label_id"]
    if not np.all(np.isfinite(ids) & (ids == np.round(ids))):
        raise DLSampleError(f"{at}: 'bbox_label_id' must be integer class ids, got {ids.tolist()}")
    labels["bbox_label_id"] = ids.astype(np.int64)
    unknown = sorted(set(labels["bbox_label_id"].tolist()) - known)
    if unknown:
        raise DLSampleError(f"{at}: bbox_label_id {unknown} not among the class_ids {sorted(known)}")
    check_boxes(labels, instance_type, at)
    return labels
