"""write_synthetic_dataset: the dlbatch.data synthetic scenes on disk, so that a newcomer (or a
test, or the CLI's `dlbatch data synth`) has a dataset in every format in one call.

Formats (format=None): classification -> a class folder tree, detection -> COCO JSON (+ "rbox"
for rectangle2), segmentation -> images/ + labels/ + classes.json; format="halcon" writes a
HALCON DLDataset JSON instead. Class names are the shape families the classes draw (disc,
rectangle, ...; "_2", "_3" ... once the families repeat). Reading the returned path with
read_dl_dataset gives the generator's images and labels exactly (PNG is lossless; the COCO box
conversion is exact for the generator's half-pixel boxes).
"""
from __future__ import annotations

from pathlib import Path

from ..core.errors import DLError, DLParamError
from ..data import classification_samples, detection_samples, segmentation_samples
from ..data.families import BARS, BLOBS
from .writers import write_classification_folder, write_coco, write_halcon_json, write_segmentation_folder


def write_synthetic_dataset(model_type: str, out_dir, num_samples: int = 24, seed: int = 0, width: int = 64,
                            height: int = 64, instance_type: str = "rectangle1", *, channels: int = 3,
                            num_classes: int = 3, format: str | None = None, **options) -> Path:
    """Write synthetic samples (`dlbatch.data`) to disk in a dataset format read_dl_dataset reads.

    Class ids: classification 0..num_classes-1 (the sorted positions of the class folder names),
    detection 1..num_classes, segmentation the background id plus 1..num_classes.

    Args:
        model_type: "classification" (class folders), "detection" (COCO JSON) or
            "segmentation" (images/ + labels/).
        out_dir: a new or empty folder.
        num_samples: number of images.
        seed: seed of the scenes.
        width: image width in pixels.
        height: image height in pixels.
        instance_type: "rectangle1" or "rectangle2" (detection).
        channels: 1 (grey PNG) or 3 (RGB PNG).
        num_classes: number of object classes.
        format: None (the type's own format) or "halcon" (a HALCON DLDataset JSON).
        **options: passed to the generator (max_objects, min_objects, directed_class_ids for
            detection; background_id for segmentation, default 0).

    Returns:
        The path read_dl_dataset takes (the folder, or the JSON file).

    Raises:
        DLParamError: an unknown model type or format, bad channels or num_classes.
        DLError: out_dir exists and is not an empty folder.

    Examples:
        >>> from dlbatch.datasets import write_synthetic_dataset, read_dl_dataset
        >>> path = write_synthetic_dataset("segmentation", "seg_data", num_samples=4)
        >>> read_dl_dataset(path).class_ids
        [0, 1, 2, 3]
    """
    if model_type not in ("classification", "detection", "segmentation"):
        raise DLParamError(f"model_type must be classification, detection or segmentation, got {model_type!r}")
    if format not in (None, "halcon"):
        raise DLParamError(f"format must be None (the type's own format) or 'halcon', got {format!r}")
    if channels not in (1, 3):
        raise DLParamError(f"channels must be 1 (grey PNG) or 3 (RGB PNG), got {channels!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise DLParamError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    root = _fresh_folder(out_dir)
    scene = dict(height=height, width=width, channels=channels, seed=seed, **options)
    if model_type == "classification":
        names = _family_names(BLOBS, num_classes)
        order = sorted(names)
        samples = classification_samples(num_samples, class_ids=[order.index(n) for n in names], **scene)
        if format == "halcon":
            return write_halcon_json(root, samples, range(num_classes), order, model_type)
        return write_classification_folder(root, samples, order)
    class_ids = list(range(1, num_classes + 1))
    if model_type == "detection":
        names = _family_names(BLOBS if instance_type == "rectangle1" else BARS, num_classes)
        samples = detection_samples(num_samples, class_ids=class_ids, instance_type=instance_type, **scene)
        if format == "halcon":
            return write_halcon_json(root, samples, class_ids, names, model_type, instance_type)
        return write_coco(root, samples, class_ids, names, instance_type)
    background = int(scene.pop("background_id", 0))
    samples = segmentation_samples(num_samples, class_ids=class_ids, background_id=background, **scene)
    ids, names = [background, *class_ids], ["background", *_family_names(BLOBS, num_classes)]
    if format == "halcon":
        return write_halcon_json(root, samples, ids, names, model_type)
    return write_segmentation_folder(root, samples, ids, names)


def _family_names(families, k: int) -> list[str]:
    """The shape family of each class position, numbered once the families repeat."""
    return [families[i % len(families)] + (f"_{i // len(families) + 1}" if i >= len(families) else "")
            for i in range(k)]


def _fresh_folder(out_dir) -> Path:
    root = Path(out_dir)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise DLError(f"{root}: exists and is not an empty folder; write the synthetic dataset into a new "
                      "folder so that no old file becomes part of it")
    root.mkdir(parents=True, exist_ok=True)
    return root
