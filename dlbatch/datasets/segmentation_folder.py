"""Segmentation datasets as a folder with images and label images:

    root/
      images/  a.jpg  b.png ...
      labels/  a.png  b.png ...     one label PNG per image, same stem, pixel value = class id
      classes.json                  optional: {"class_ids": [0, 1, 2], "class_names": [...]}

Images are the files in images/ that Pillow reads (sorted by name); each needs labels/<stem>.png
of the same size. class_ids: those of classes.json (names optional, default the ids as text),
else the sorted union of the values in all label images, found by reading each label image
once here (the images themselves are not read). A label value outside class_ids is an error
when its sample is read, naming the label file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import DLError, DLSampleError
from .dataset import DLDataset, Record
from .images import is_image_file, read_label_image
from .jsonfile import class_table, load_json

CLASSES_FILE = "classes.json"


def read_segmentation_folder(root, border_tolerance: float = 1.0, skip_bad_images: bool = False) -> DLDataset:
    """The images/ + labels/ folder `root` as a lazy segmentation DLDataset.

    Args:
        root: the dataset folder (see the module docstring).
        border_tolerance: kept on the dataset (boxes do not apply to segmentation).
        skip_bad_images: a missing or unreadable label image is left for
            DLDataset.skip_bad_samples to skip (with read_dl_dataset(skip_bad_images=True))
            instead of being an error here; finding the class ids then ignores it.

    Returns:
        A DLDataset of model type "segmentation".

    Raises:
        DLError: no images/ or labels/ folder, no images, or two images with the same stem.
        DLSampleError: (without skip_bad_images) an image without its label image, or a
            label image that cannot be read while finding the class ids.

    Examples:
        >>> import numpy as np
        >>> from dlbatch.datasets.images import write_image, write_label_image
        >>> Path("seg/images").mkdir(parents=True); Path("seg/labels").mkdir()
        >>> write_image("seg/images/a.png", np.zeros((4, 4, 3), np.uint8))
        >>> write_label_image("seg/labels/a.png", np.eye(4, dtype=np.uint8) * 2)
        >>> read_segmentation_folder("seg").class_ids
        [0, 2]
    """
    root = Path(root)
    images_dir, labels_dir = root / "images", root / "labels"
    if not images_dir.is_dir() or not labels_dir.is_dir():
        raise DLError(f"{root}: a segmentation dataset needs the sub-folders images/ and labels/ (one label PNG "
                      "per image with the same stem, pixel values = class ids)")
    files = sorted(f for f in images_dir.iterdir() if not f.name.startswith(".") and is_image_file(f))
    if not files:
        raise DLError(f"{images_dir}: no images found")
    records, stems = [], {}
    for k, image in enumerate(files):
        if image.stem in stems:
            raise DLError(f"{image}: has the same stem as {stems[image.stem]}, so both would share "
                          f"labels/{image.stem}.png; rename one")
        stems[image.stem] = image.name
        label = labels_dir / f"{image.stem}.png"
        if not label.is_file() and not skip_bad_images:
            raise DLSampleError(f"{image}: no label image {label}; every image needs labels/<same stem>.png")
        records.append(Record(image_path=image, image_file_name=image.name, image_id=k, label_path=label))
    class_ids, class_names = _classes(root, records, skip_bad_images)
    return DLDataset(records, model_type="segmentation", class_ids=class_ids, class_names=class_names,
                     source=root, border_tolerance=border_tolerance)


def _classes(root: Path, records, skip_bad_images: bool) -> tuple[list[int], list[str]]:
    table = root / CLASSES_FILE
    if table.is_file():
        data = load_json(table, "class list")
        if not isinstance(data, dict):
            raise DLError(f"{table}: must be an object {{\"class_ids\": [...], \"class_names\": [...]}}")
        return class_table(data.get("class_ids"), data.get("class_names"), str(table))
    values = set()
    for record in records:
        try:
            values.update(np.unique(read_label_image(record.label_path)).tolist())
        except DLSampleError:
            if not skip_bad_images:
                raise
    ids = sorted(values)
    return ids, [str(c) for c in ids]
