"""read_dl_dataset: one entry point for every dataset format on disk, told apart by what the
path is:

- a folder with images/ and labels/ sub-folders: "segmentation" (segmentation_folder)
- any other folder: "classification", one sub-folder per class (classification_folder)
- a JSON object with "samples" and "class_ids": "halcon", a HALCON DLDataset (halcon_json)
- a JSON object with "images" and "categories": "coco", detection (coco)
- a folder holding exactly one dataset file of those two (e.g. annotations.json or dataset.json,
  as `dlbatch data synth` writes them) and no class sub-folders: that file
"""
from __future__ import annotations

from pathlib import Path

from ..core.errors import DLError, DLParamError
from .classification_folder import read_classification_folder
from .coco import read_coco
from .dataset import DLDataset
from .halcon_json import read_halcon_json
from .jsonfile import load_json
from .segmentation_folder import read_segmentation_folder

FORMATS = ("classification", "coco", "segmentation", "halcon")


def read_dl_dataset(path, *, format: str | None = None, image_dir=None, border_tolerance: float = 1.0,
                    check_files: bool = True, skip_bad_images: bool = False) -> DLDataset:
    """The dataset at `path` as a lazy DLDataset: an image is opened when a sample is read.

    Args:
        path: a class-folder dataset (classification), an images/ + labels/ folder
            (segmentation), or a JSON file (COCO detection, HALCON DLDataset).
        format: one of FORMATS; None finds it from the path.
        image_dir: replaces the image folder of a JSON dataset.
        border_tolerance: how far (pixels) a box may reach outside its image.
        check_files: check that every image a JSON file lists exists (a stat per file) instead
            of failing only when the sample is read.
        skip_bad_images: read every image (and label image) once now and leave out the
            samples whose files cannot be used (missing, corrupt, truncated, more pixels than
            DLBATCH_MAX_IMAGE_PIXELS, a mode dlbatch does not read, a size that does not match
            the annotations or the image), with one DLDataWarning listing each file and why;
            the others keep their splits. See DLDataset.skip_bad_samples. False: nothing is
            read now and a bad file is a DLSampleError naming it when its sample is read.

    Returns:
        A DLDataset (a sequence of raw sample dicts with class ids, names and splits); with
        skip_bad_images, its skipped_samples lists what was left out.

    Raises:
        DLError: no such path, or a folder where a file is needed (or the reverse); with
            skip_bad_images, no sample left.
        DLParamError: an unknown format, or image_dir for a folder dataset.
        DLSampleError: an annotation that is not a valid sample (naming file and key).

    Examples:
        >>> import dlbatch
        >>> from dlbatch.datasets import write_synthetic_dataset
        >>> path = write_synthetic_dataset("classification", "shapes", num_samples=6)
        >>> data = dlbatch.read_dl_dataset(path)
        >>> len(data), data.class_names
        (6, ['disc', 'rectangle', 'triangle'])
        >>> _ = data.image_path(5).write_bytes(b"truncated")
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     data = dlbatch.read_dl_dataset(path, skip_bad_images=True)
        >>> len(data), len(data.skipped_samples), str(caught[0].message).splitlines()[0]
        (5, 1, 'skipped 1 of 6 samples of ... whose files cannot be read (replace or remove them to use them):')
    """
    dataset = _read(Path(path), format, image_dir, border_tolerance, check_files and not skip_bad_images,
                    skip_bad_images)
    # stacklevel: the warning points at the caller of read_dl_dataset (or of dlbatch.read_dl_dataset)
    return dataset.skip_bad_samples(stacklevel=2) if skip_bad_images else dataset


def _read(path: Path, format, image_dir, border_tolerance, check_files, skip_bad_images) -> DLDataset:
    if not path.exists():
        raise DLError(f"{path}: no such file or folder; pass a dataset folder (classification, "
                      "segmentation) or a JSON file (COCO, HALCON DLDataset)")
    if format is not None and format not in FORMATS:
        raise DLParamError(f"unknown dataset format {format!r}; formats: {', '.join(FORMATS)}")
    data = None
    if path.is_dir() and format in (None, "coco", "halcon"):
        path = _dataset_file_in(path) or path
    if path.is_file():
        data = load_json(path, "dataset file")
    format = format or _detect(path, data)
    if format in ("classification", "segmentation"):
        if not path.is_dir():
            raise DLError(f"{path}: a {format} dataset is a folder, not a file")
        if image_dir is not None:
            raise DLParamError(f"image_dir applies to JSON datasets, not to the {format} folder {path}")
        if format == "classification":
            return read_classification_folder(path, border_tolerance=border_tolerance)
        return read_segmentation_folder(path, border_tolerance=border_tolerance, skip_bad_images=skip_bad_images)
    if data is None:
        raise DLError(f"{path}: a {format} dataset is a JSON file, not a folder")
    reader = read_coco if format == "coco" else read_halcon_json
    return reader(path, data, image_dir=image_dir, border_tolerance=border_tolerance, check_files=check_files)


def _detect(path: Path, data) -> str:
    if path.is_dir():
        return "segmentation" if (path / "images").is_dir() and (path / "labels").is_dir() else "classification"
    if isinstance(data, dict) and "samples" in data and "class_ids" in data:
        return "halcon"
    if isinstance(data, dict) and "images" in data and "categories" in data:
        return "coco"
    raise DLError(f"{path}: cannot tell the dataset format: a COCO file has 'images' and 'categories', a "
                  "HALCON DLDataset file 'class_ids' and 'samples'; or pass format=")


def _dataset_file_in(folder: Path) -> Path | None:
    """The one COCO or HALCON JSON file directly in `folder`, when the folder is not itself a
    class-folder or images/ + labels/ dataset (only images/ beside the file): so that the folder
    `dlbatch data synth detection DIR` wrote can be passed as it is."""
    subfolders = [p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if any(name != "images" for name in subfolders) or (folder / "labels").is_dir():
        return None
    found = []
    for candidate in sorted(folder.glob("*.json")):
        try:
            data = load_json(candidate, "dataset file")
        except DLError:
            continue
        if isinstance(data, dict) and (("samples" in data and "class_ids" in data)
                                       or ("images" in data and "categories" in data)):
            found.append(candidate)
    return found[0] if len(found) == 1 else None
