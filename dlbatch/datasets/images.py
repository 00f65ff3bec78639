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
set_max_image_pixels), or a read's `max_pixels`. check_image makes the same checks without
converting the pixels, for checking a whole dataset up front (read_dl_dataset(skip_bad_images=True)).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from ..core.errors import DLError, DLParamError, DLSampleError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif"})

_GREY_MODES = frozenset({"L", "LA", "1"})
_LABEL_MODES = frozenset({"L", "P", "1", "I", "I;16", "I;16L", "I;16B"})
DEFAULT_MAX_IMAGE_PIXELS = 2 ** 27  # 134 Mpixel: 400 MB as RGB, far above any training image
_max_pixels: int | None = None


def max_image_pixels() -> int:
    """The largest width x height an image may declare, so that a decompression bomb is
    refused from its header.

    Returns:
        The limit of set_max_image_pixels, else $DLBATCH_MAX_IMAGE_PIXELS, else
        DEFAULT_MAX_IMAGE_PIXELS.

    Raises:
        DLParamError: DLBATCH_MAX_IMAGE_PIXELS is not a positive whole number.

    Examples:
        >>> set_max_image_pixels(None)
        >>> max_image_pixels() > 0
        True
    """
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
    """Change the pixel limit for this process, e.g. for a dataset of very large scans.

    Args:
        limit: the largest width x height read; None goes back to $DLBATCH_MAX_IMAGE_PIXELS
            or DEFAULT_MAX_IMAGE_PIXELS.

    Raises:
        DLParamError: a limit that is not a positive int.

    Examples:
        >>> set_max_image_pixels(4096 * 4096)
        >>> max_image_pixels()
        16777216
        >>> set_max_image_pixels(None)
    """
    global _max_pixels
    _max_pixels = None if limit is None else _check_limit(limit)


def _check_limit(limit) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise DLParamError(f"the image pixel limit must be a positive int, got {limit!r}")
    return limit


def is_image_file(path: Path) -> bool:
    """Whether a folder entry is one of a dataset's images (nothing is read).

    Args:
        path: a pathlib.Path.

    Returns:
        True for a regular file whose suffix (any case) is in IMAGE_SUFFIXES.

    Examples:
        >>> is_image_file(Path("no_such_file.PNG"))
        False
    """
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
    """The image at `path` as camera pixels for `preprocess_dl_samples`.

    Args:
        path: the image file (PNG, JPEG, BMP, TIFF, GIF).
        max_pixels: refuse more than this many pixels (width x height) from the header,
            before decoding; default max_image_pixels().

    Returns:
        uint8 H x W x C with C = 1 (grey) or 3 (colour).

    Raises:
        DLSampleError: the file is missing, corrupt, truncated, too large or of a mode
            dlbatch does not read (16-bit, float); the message names the file.

    Examples:
        >>> import numpy as np
        >>> write_image("grey.png", np.full((4, 6, 1), 7, np.uint8))
        >>> read_image("grey.png").shape
        (4, 6, 1)
    """
    path = Path(path)
    with _open(path, "image", max_pixels) as image, _Decoding(path, "image"):
        image.load()
        kind = _image_kind(image, path)
        if kind == "grey":
            grey = image.convert("L") if image.mode != "L" else image
            return np.asarray(grey, dtype=np.uint8)[:, :, None].copy()
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def check_image(path, max_pixels: int | None = None) -> tuple[int, int]:
    """Check that `path` reads as an image, as read_image would, without converting its pixels.

    The file is opened, its size checked against the pixel limit and its pixels decoded in
    full (so a truncated file is found), and its mode checked; only the conversion to an
    array is left out, so checking a whole dataset costs one decode per image. A JPEG is
    decoded at 1/8 scale (Pillow's draft): its whole compressed stream is still read, so
    truncation and corruption fail as in a full decode, at about 60% of the time.

    Args:
        path: the image file.
        max_pixels: as for read_image.

    Returns:
        (height, width) in pixels.

    Raises:
        DLSampleError: exactly where read_image raises it, with the same message.

    Examples:
        >>> import numpy as np
        >>> write_image("colour.png", np.zeros((5, 3, 3), np.uint8))
        >>> check_image("colour.png")
        (5, 3)
    """
    path = Path(path)
    with _open(path, "image", max_pixels) as image, _Decoding(path, "image"):
        width, height = image.size
        if image.format == "JPEG":
            image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))
        image.load()
        _image_kind(image, path)
        return height, width


def _image_kind(image, path: Path) -> str:
    """"grey" or "rgb": what read_image makes of the decoded image's mode; 16-bit and float
    modes are refused."""
    mode = image.mode
    if mode in _GREY_MODES or (mode == "P" and _grey_palette(image)):
        return "grey"
    if mode.startswith(("I", "F")):
        raise DLSampleError(f"{path}: the image has mode {mode!r} (16-bit or float grey values); "
                            "dlbatch reads 8-bit images, convert it to 8 bits first")
    return "rgb"


def _grey_palette(image) -> bool:
    """A palette image whose colours are all grey (e.g. a grey GIF) is a grey image."""
    palette = image.getpalette() or []
    return len(palette) % 3 == 0 and palette[0::3] == palette[1::3] == palette[2::3]


def read_label_image(path, max_pixels: int | None = None) -> np.ndarray:
    """The segmentation label image at `path`: each pixel's value is its class id.

    Args:
        path: a single-channel image file (PNG mode L, P or I;16).
        max_pixels: as for read_image.

    Returns:
        int32 H x W class ids (palette images give their palette indices).

    Raises:
        DLSampleError: missing, corrupt, truncated or too large, or more than one channel;
            the message names the file.

    Examples:
        >>> import numpy as np
        >>> write_label_image("label.png", np.array([[0, 1], [2, 300]]))
        >>> read_label_image("label.png").tolist()
        [[0, 1], [2, 300]]
    """
    path = Path(path)
    with _open(path, "label image", max_pixels) as image, _Decoding(path, "label image"):
        image.load()
        if image.mode not in _LABEL_MODES:
            raise DLSampleError(f"{path}: a label image must have one channel whose values are class "
                                f"ids (PNG mode L, P or I;16), got mode {image.mode!r}")
        return np.asarray(image).astype(np.int32)


def write_image(path, image: np.ndarray) -> None:
    """Write an image as a lossless PNG, so that read_image gives its pixels back exactly.

    Args:
        path: the file to write.
        image: uint8 H x W x C (C = 1 or 3) or H x W.

    Raises:
        DLSampleError: another dtype or shape.

    Examples:
        >>> import numpy as np
        >>> write_image("out.png", np.zeros((2, 2, 3), np.uint8))
    """
    from PIL import Image
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3)):
        raise DLSampleError(f"{path}: can only write uint8 H x W x 1 or H x W x 3 images, got shape "
                            f"{arr.shape} dtype {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    Image.fromarray(arr).save(path, format="PNG")


def write_label_image(path, label: np.ndarray) -> None:
    """Write class ids as a PNG label image: 8-bit when they fit, else 16-bit.

    Args:
        path: the file to write.
        label: H x W integers in 0..65535.

    Raises:
        DLSampleError: another shape, a non-integer dtype or values out of range.

    Examples:
        >>> import numpy as np
        >>> write_label_image("ids.png", np.zeros((3, 3), np.int64))
    """
    from PIL import Image
    arr = np.asarray(label)
    if arr.ndim != 2 or arr.dtype.kind not in "iu" or (arr.size and (arr.min() < 0 or arr.max() > 65535)):
        raise DLSampleError(f"{path}: a label image must be H x W integers in 0..65535, got shape "
                            f"{arr.shape} dtype {arr.dtype}")
    if arr.size == 0 or arr.max() <= 255:
        Image.fromarray(arr.astype(np.uint8)).save(path, format="PNG")
    else:
        Image.fromarray(arr.astype(np.uint16)).save(path, format="PNG")
