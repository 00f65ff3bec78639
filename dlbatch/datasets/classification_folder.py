"""Classification datasets as a folder with one sub-folder per class:

    root/
      cat/  img1.png  img2.jpg ...
      dog/  ...

The sub-folder name is the class name; class ids are the positions of the names in sorted
order (0, 1, ...), so a sorted listing always gives the same ids. Images are the files
directly inside a class folder with a suffix Pillow reads (png, jpg, jpeg, bmp, tif, tiff,
gif, any case), sorted by name; other files and hidden entries (".name") are ignored. An empty
class folder still is a class (it keeps the ids of the others).
"""
from __future__ import annotations

from pathlib import Path

from ..core.errors import DLError
from .dataset import DLDataset, Record
from .images import IMAGE_SUFFIXES, is_image_file


def read_classification_folder(root, border_tolerance: float = 1.0) -> DLDataset:
    """The class-folder dataset `root` as a lazy classification DLDataset (no image is read).

    Args:
        root: the folder with one sub-folder of images per class.
        border_tolerance: kept on the dataset (boxes do not apply to classification).

    Returns:
        A DLDataset whose class names are the sorted sub-folder names and class ids their
        positions.

    Raises:
        DLError: not a folder, no class sub-folders, or no images in them.

    Examples:
        >>> import numpy as np
        >>> from dlbatch.datasets.images import write_image
        >>> for name in ("cat", "dog"):
        ...     Path("pets", name).mkdir(parents=True)
        ...     write_image(f"pets/{name}/1.png", np.zeros((2, 2, 3), np.uint8))
        >>> data = read_classification_folder("pets")
        >>> data.class_names, data.annotations(1)["image_label_id"]
        (['cat', 'dog'], 1)
    """
    root = Path(root)
    if not root.is_dir():
        raise DLError(f"{root}: not a folder; a classification dataset is a folder with one sub-folder "
                      "of images per class")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DLError(f"{root}: no class sub-folders found; put the images of each class into a sub-folder "
                      "named after the class (root/<class name>/<image>)")
    records = []
    for class_id, name in enumerate(classes):
        files = sorted(f for f in (root / name).iterdir() if not f.name.startswith(".") and is_image_file(f))
        records += [Record(image_path=f, image_file_name=f"{name}/{f.name}", image_id=len(records) + k,
                           labels={"image_label_id": class_id}) for k, f in enumerate(files)]
    if not records:
        raise DLError(f"{root}: the class folders {classes} hold no images (suffixes "
                      f"{', '.join(sorted(IMAGE_SUFFIXES))})")
    return DLDataset(records, model_type="classification", class_ids=list(range(len(classes))),
                     class_names=classes, source=root, border_tolerance=border_tolerance)
