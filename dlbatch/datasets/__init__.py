"""Datasets on disk: class folders, COCO JSON, image/label folders and HALCON DLDataset JSON
read lazily as DLDataset (a Sequence of raw sample dicts), split like HALCON, and the synthetic
scenes written in those formats. Bad image files are DLSampleErrors naming the file when a
sample is read, or, with read_dl_dataset(skip_bad_images=True), skipped with a DLDataWarning."""
from __future__ import annotations

from .dataset import DLDataset
from .skipping import DLDataWarning
from .read import FORMATS, read_dl_dataset
from .split import split_dl_dataset
from .synth import write_synthetic_dataset

__all__ = ["DLDataWarning", "DLDataset", "FORMATS", "read_dl_dataset", "split_dl_dataset",
           "write_synthetic_dataset"]
