"""Reading images and label images with Pillow, with errors that name the file.

Images come back as camera images for `preprocess_dl_samples`: uint8 H x W x C with C = 1
(grey) or 3 (colour). Alpha channels are dropped; palette images whose colours are all grey
give grey, other palette and colour modes (CMYK, YCbCr, ...) RGB; multi-frame files (GIF,
TIFF) give their first frame. EXIF orientation is not applied, so that the pixels are the ones
annotations were made on. 16-bit and float images are refused rather than silently rescaled.
Label images (segmentation) must be single-channel: their pixel values are class ids, so
palette PNGs give their palette indices.

Hostile or broken files never crash or exhaust memory: the pixel count is read from the header
and checked against a limit before anything is decoded (a decompression bomb: a small file
declaring a huge image), and whatever Pillow raises on a corrupt or truncated file becomes a
DLSampleError naming the file. The limit is max_image_pixels() (DLBATCH_MAX_IMAGE_PIXELS, or
set_max_image_pixels), or a read's `max_pixels`.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from ..core.errors import DLError, DLParamError, DLSampleError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif"})

_TO_GREY = {"L": None, "LA": "L", "1": "L"}
_LABEL_MODES = frozenset({"L", "P", "1", "I", "I;16", "I;16L", "I;16B"})
DEFAULT_MAX_IMAGE_PIXELS = 2 ** 27  # 134 Mpixel: 400 MB as RGB, far above any training image
_max_pixels: int | None = None


def max_image_pixels() -> int:
    """The largest width x height read: set_max_image_pixels, else $DLBATCH_MAX_IMAGE_PIXELS,
    else DEFAULT_MAX_IMAGE_PIXELS."""
    if _max_pixels is not None:
        return _max_pixels
    env = os.environ.get("DLBATCH_MAX_IMAGE_PIXELS")
    if env:
        try:
            return _check_limit(int(env))
        except (ValueError, DLParamError):
            raise DLParamError(f"DLBATCH_MAX_IMAGE_PIXELS={env!r} is not a positive whole number of pixels") from None
    return DEFAULT_MAX_IMAGE_PIXELS


def set_max_image_pixels(limit: int | None) -> None:
    """Change the pixel limit for this process (None: back to the environment or the default)."""
    global _max_pixels
    _max_pixels = None if limit is None else _check_limit(limit)


def _check_limit(limit) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise DLParamError(f"the image pixel limit must be a positive int, got {limit!r}")
    return limit


def is_image_file(path: Path) -> bool:
    """A regular file whose suffix (any case) Pillow reads as an image."""
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def _open(path: Path, what: str, max_pixels: int | None):
    """The image opened and checked against the pixel limit from its header, not yet decoded."""
    from PIL import Image, UnidentifiedImageError
    limit = max_image_pixels() if max_pixels is None else _check_limit(max_pixels)
    try:
        with warnings.catch_warnings():  # dlbatch's own limit decides; Pillow's would only warn
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except FileNotFoundError:
        raise DLSampleError(f"{path}: {what} file not found; restore it or remove the sample from "
                            "the dataset") from None
    except Image.DecompressionBombError as exc:
        pillow = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise DLSampleError(f"{path}: the {what} has more than the limit of {min(limit, pillow)} "
                            f"pixels ({exc}); shrink it, or raise both PIL.Image.MAX_IMAGE_PIXELS and "
                            "DLBATCH_MAX_IMAGE_PIXELS") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DLSampleError(f"{path}: cannot read the {what} ({exc}); replace the file with a valid "
                            f"image ({', '.join(sorted(IMAGE_SUFFIXES))})") from None
    except Exception as exc:  # a Pillow plugin failing on a malformed header
        raise DLSampleError(f"{path}: the {what} file is corrupt ({type(exc).__name__}: {exc}); replace it") from None
    width, height = image.size
    if width * height > limit:
        image.close()
        raise DLSampleError(f"{path}: the {what} declares {width} x {height} pixels, more than the limit of "
                            f"{limit} (a decompression bomb, or a far larger image than any network needs); "
                            "shrink it, or raise the limit with DLBATCH_MAX_IMAGE_PIXELS or "
                            "dlbatch.datasets.images.set_max_image_pixels")
    if width < 1 or height < 1:
        image.close()
        raise DLSampleError(f"{path}: the {what} has no pixels ({width} x {height}); replace the file")
    return image


class _Decoding:
    """Decoding and converting an opened image: any failure names the file."""

    def __init__(self, path: Path, what: str):
        self.path, self.what = path, what

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None or isinstance(exc, DLError) or not isinstance(exc, Exception):
            return False
        if isinstance(exc, MemoryError):
            raise DLSampleError(f"{self.path}: not enough memory to decode the {self.what}; shrink it or "
                                "lower DLBATCH_MAX_IMAGE_PIXELS") from None
        raise DLSampleError(f"{self.path}: cannot decode the {self.what}, the file is truncated or corrupt "
                            f"({type(exc).__name__}: {exc}); replace it") from None


def read_image(path, max_pixels: int | None = None) -> np.ndarray:
    """The image at `path` as uint8 H x W x C (C = 1 or 3); more than `max_pixels` (default
    max_image_pixels()) is refused before decoding."""
    path = Path(path)
    with _open(path, "image", max_pixels) as image, _Decoding(path, "image"):
        image.load()
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


def read_label_image(path, max_pixels: int | None = None) -> np.ndarray:
    """The label image at `path` as int32 H x W class ids."""
    path = Path(path)
    with _open(path, "label image", max_pixels) as image, _Decoding(path, "label image"):
        image.load()
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
