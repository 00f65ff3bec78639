"""Reading images and label images with Pillow, with errors that name the file.

Images come back as camera images for `preprocess_dl_samples`: uint8 H x W x C with C = 1
(grey) or 3 (colour). Alpha channels are dropped; palette images whose colours are all grey
give grey, other palette and colour modes (CMYK, YCbCr, ...) RGB; multi-frame files (GIF,
TIFF) give their first frame. EXIF orientation is not applied, so that the pixels are the ones
annotations were made on. 16-bit and float images are refused rather than silently rescaled.
Label images (segmentation) must be single-channel: their pixel values are class ids, so
palette PNGs give their palette indices.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import DLSampleError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif"})

_TO_GREY = {"L": None, "LA": "L", "1": "L"}
_LABEL_MODES = frozenset({"L", "P", "1", "I", "I;16", "I;16L", "I;16B"})


def is_image_file(path: Path) -> bool:
    """A regular file whose suffix (any case) Pillow reads as an image."""
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def _open(path: Path, what: str):
    from PIL import Image, UnidentifiedImageError
    try:
        image = Image.open(path)
        image.load()
        return image
    except FileNotFoundError:
        raise DLSampleError(f"{path}: {what} file not found; restore it or remove the sample from "
                            "the dataset") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DLSampleError(f"{path}: cannot read the {what} ({exc}); replace the file with a valid "
                            f"image ({', '.join(sorted(IMAGE_SUFFIXES))})") from None


def read_image(path) -> np.ndarray:
    """The image at `path` as uint8 H x W x C (C = 1 or 3)."""
    path = Path(path)
    with _open(path, "image") as image:
        mode = image.mode
        if mode in _TO_GREY:
            grey = image.convert("L") if _TO_GREY[mode] else image
            return np.asarray(grey, dtype=np.uint8)[:, :, None].copy()
        if mode == "P" and _grey_palette(image):
            return np.asarray(image.convert("L"), dtype=np.uint8)[:, :, None].copy()
        if mode.startswith(("I", "F")):
            raise DLSampleError(f"{path}: the image has mode {mode!r} (16-bit or float grey values); "
                                "dlbatch reads 8-bit images, convert it to 8 bits first")
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def _grey_palette(image) -> bool:
    """A palette image whose colours are all grey (e.g. a grey GIF) is a grey image."""
    palette = image.getpalette() or []
    return len(palette) % 3 == 0 and palette[0::3] == palette[1::3] == palette[2::3]


def read_label_image(path) -> np.ndarray:
    """The label image at `path` as int32 H x W class ids."""
    path = Path(path)
    with _open(path, "label image") as image:
        if image.mode not in _LABEL_MODES:
            raise DLSampleError(f"{path}: a label image must have one channel whose values are class "
                                f"ids (PNG mode L, P or I;16), got mode {image.mode!r}")
        return np.asarray(image).astype(np.int32)


def write_image(path, image: np.ndarray) -> None:
    """Write uint8 H x W x C (C = 1 or 3) or H x W as a lossless PNG."""
    from PIL import Image
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3)):
        raise DLSampleError(f"{path}: can only write uint8 H x W x 1 or H x W x 3 images, got shape "
                            f"{arr.shape} dtype {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    Image.fromarray(arr).save(path, format="PNG")


def write_label_image(path, label: np.ndarray) -> None:
    """Write H x W class ids as a PNG: 8-bit when they fit, else 16-bit."""
    from PIL import Image
    arr = np.asarray(label)
    if arr.ndim != 2 or arr.dtype.kind not in "iu" or (arr.size and (arr.min() < 0 or arr.max() > 65535)):
        raise DLSampleError(f"{path}: a label image must be H x W integers in 0..65535, got shape "
                            f"{arr.shape} dtype {arr.dtype}")
    if arr.size == 0 or arr.max() <= 255:
        Image.fromarray(arr.astype(np.uint8)).save(path, format="PNG")
    else:
        Image.fromarray(arr.astype(np.uint16)).save(path, format="PNG")
