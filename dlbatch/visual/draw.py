"""Pillow drawing helpers for overlays on raw images.

Coordinates follow dlbatch (SPEC): continuous pixels, rows down, columns right, the centre of
the upper-left pixel at (0, 0). Pillow's integer coordinates are pixel centres too, so a point
(row, col) is Pillow's (x=col, y=row). Outlines lie INSIDE the shape they mark: an object's
border pixels are coloured and the background next to it stays visible.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..core.errors import DLParamError
from .palette import text_colour_on

Colour = tuple[int, int, int]


def to_rgb_uint8(image) -> np.ndarray:
    """A new contiguous H x W x 3 uint8 copy of `image` (H x W, H x W x 1 grey, H x W x 2 grey
    + alpha, H x W x 3 or more channels: the first three are taken as RGB). Values outside
    0..255 (other integer or float types) are clipped, floats rounded."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1] < 1 or arr.shape[2] < 1:
        raise DLParamError(f"an overlay needs an image of shape H x W or H x W x C, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DLParamError(f"an overlay needs a numeric image, got dtype {arr.dtype}")
    arr = arr[:, :, :1] if arr.shape[2] < 3 else arr[:, :, :3]
    if arr.dtype != np.uint8:
        arr = np.clip(np.round(arr.astype(np.float64)), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr)


def to_pil(rgb: np.ndarray) -> Image.Image:
    """An RGB Pillow image of an H x W x 3 uint8 array (a copy)."""
    return Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), mode="RGB")


def line_width_for(height: int, width: int) -> int:
    """Outline width in pixels: 2 on small images, growing with the image so that lines stay
    visible when a large picture is shown scaled down."""
    return max(2, round(max(height, width) / 250))


def font_for(height: int, width: int) -> ImageFont.ImageFont:
    """Pillow's built-in font at a size that suits the image (10 px and up)."""
    size = int(min(36, max(10, round(max(height, width) / 40))))
    try:
        return ImageFont.load_default(size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font only
        return ImageFont.load_default()


def pixel_range(low: float, high: float, n: int) -> tuple[int, int]:
    """The first and last pixel (index) whose centre lies in [low, high], clipped to 0..n-1.
    A box (row1, row2) = (r0 - 0.5, r1 + 0.5) of pixels r0..r1 gives (r0, r1)."""
    first = math.ceil(low - 1e-9)
    last = math.floor(high + 1e-9)
    if last < first:  # thinner than a pixel: the pixel nearest its middle
        first = last = math.floor((low + high) / 2 + 0.5)
    return min(max(first, 0), n - 1), min(max(last, 0), n - 1)


def draw_box_outline(draw: ImageDraw.ImageDraw, box: Sequence[float], colour: Colour, width: int,
                     size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The outline of an axis-parallel box (row1, col1, row2, col2) in dlbatch's pixel-edge
    convention, `width` pixels wide on the box's own border pixels. `size` = (height, width)
    of the image. Returns the pixel rectangle drawn (r0, c0, r1, c1), inclusive."""
    r0, r1 = pixel_range(box[0], box[2], size[0])
    c0, c1 = pixel_range(box[1], box[3], size[1])
    draw.rectangle([c0, r0, c1, r1], outline=colour, width=width)
    return r0, c0, r1, c1


def oriented_box_band(box: Sequence[float], width: int, size: tuple[int, int]
                      ) -> tuple[np.ndarray, int, int]:
    """The outline of a rectangle2 box (row, col, phi, length1, length2; HALCON: half lengths
    along d1 = (-sin phi, cos phi) and d2 = (cos phi, sin phi)) as a pixel mask: the pixels whose
    centre lies inside the box and less than `width` from one of its sides, the rotated
    counterpart of draw_box_outline. Returns (mask, row0, col0): the mask covers the box's
    bounding window in the image, starting at pixel (row0, col0); it is empty when the box
    lies outside the image. A box too thin to hold a pixel centre marks its nearest pixel."""
    row, col, phi, l1, l2 = (float(v) for v in box)
    l1, l2 = abs(l1), abs(l2)
    sin, cos = math.sin(phi), math.cos(phi)
    half_rows, half_cols = l1 * abs(sin) + l2 * abs(cos), l1 * abs(cos) + l2 * abs(sin)
    r0, r1 = max(math.floor(row - half_rows), 0), min(math.ceil(row + half_rows), size[0] - 1)
    c0, c1 = max(math.floor(col - half_cols), 0), min(math.ceil(col + half_cols), size[1] - 1)
    if r1 < r0 or c1 < c0:
        return np.zeros((0, 0), dtype=bool), 0, 0
    dr = np.arange(r0, r1 + 1, dtype=np.float64)[:, None] - row
    dc = np.arange(c0, c1 + 1, dtype=np.float64)[None, :] - col
    u = np.abs(-sin * dr + cos * dc)  # distance from the centre along d1 ...
    v = np.abs(cos * dr + sin * dc)   # ... and along d2
    eps = 1e-9
    inside = (u <= l1 + eps) & (v <= l2 + eps)
    band = inside & ((u > l1 - width + eps) | (v > l2 - width + eps))
    if not inside.any():
        nearest = np.unravel_index(np.argmin(np.hypot(dr, dc)), band.shape)
        band[nearest] = True
    return band, r0, c0


def paint_mask(picture: Image.Image, mask: np.ndarray, row0: int, col0: int, colour: Colour) -> None:
    """Set the pixels of `mask` (placed with its first pixel at (row0, col0)) to `colour`."""
    if mask.size and mask.any():
        stencil = Image.fromarray(mask.astype(np.uint8) * 255, mode="L")
        picture.paste(colour, (col0, row0, col0 + mask.shape[1], row0 + mask.shape[0]), stencil)


def draw_arrow(draw: ImageDraw.ImageDraw, start, end, colour: Colour, width: int, head: bool = True) -> None:
    """A line from `start` to `end` ((row, col) each) with, when `head`, an arrow head at `end`."""
    (r0, c0), (r1, c1) = start, end
    draw.line([(c0, r0), (c1, r1)], fill=colour, width=width)
    length = math.hypot(r1 - r0, c1 - c0)
    if not head or length < 1e-6:
        return
    size = min(max(3.0 * width, 4.0), 0.5 * length)
    ur, uc = (r1 - r0) / length, (c1 - c0) / length
    back_r, back_c = r1 - size * ur, c1 - size * uc
    half = 0.6 * size
    draw.polygon([(c1, r1), (back_c - half * ur, back_r + half * uc), (back_c + half * ur, back_r - half * uc)],
                 fill=colour)


def draw_label(draw: ImageDraw.ImageDraw, text: str, row: int, col: int, colour: Colour,
               font: ImageFont.ImageFont, size: tuple[int, int], *, above: bool = True) -> tuple[int, int, int, int]:
    """`text` on a box filled with `colour` (text black or white, whichever reads better).

    The label's left edge is at `col`; with `above` its bottom row is `row - 1` (just above an
    outline starting at `row`), or its top row is `row` when there is no room above. It is
    moved inside the image where it fits (a label wider than the image starts at column 0 and
    is cut). Returns the label's box in the image (r0, c0, r1, c1), inclusive."""
    pad = 1
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left + 2 * pad, bottom - top + 2 * pad
    height, width = size
    r0 = row - h if above and row - h >= 0 else row
    r0 = max(0, min(r0, height - h))
    c0 = max(0, min(col, width - w))
    draw.rectangle([c0, r0, c0 + w - 1, r0 + h - 1], fill=colour)
    draw.text((c0 + pad - left, r0 + pad - top), text, fill=text_colour_on(colour), font=font)
    return r0, c0, min(r0 + h, height) - 1, min(c0 + w, width) - 1


def class_edges(class_map: np.ndarray) -> np.ndarray:
    """H x W bool: pixels with a 4-neighbour of another class (the image border is no edge)."""
    edge = np.zeros(class_map.shape, dtype=bool)
    vertical = class_map[1:, :] != class_map[:-1, :]
    horizontal = class_map[:, 1:] != class_map[:, :-1]
    edge[1:, :] |= vertical
    edge[:-1, :] |= vertical
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    return edge


def blend_classes(rgb: np.ndarray, class_map: np.ndarray, colours: Mapping[int, Colour], alpha: float,
                  *, edges: bool = True) -> np.ndarray:
    """`rgb` (H x W x 3 uint8) with each pixel whose class (in `class_map`, H x W ids) has a
    colour in `colours` blended towards it, round((1 - alpha) * pixel + alpha * colour), and,
    with `edges`, the border pixels of those regions set to the full colour so neighbouring
    regions stay apart. Pixels of classes without a colour stay unchanged."""
    class_map = np.asarray(class_map)
    if class_map.shape != rgb.shape[:2]:
        raise DLParamError(f"a class map of shape {class_map.shape} cannot be blended over an image of "
                           f"{rgb.shape[0]} x {rgb.shape[1]} pixels")
    out = rgb.copy()
    border = class_edges(class_map) if edges else None
    for class_id, colour in colours.items():
        where = class_map == class_id
        if not where.any():
            continue
        c = np.asarray(colour, dtype=np.float64)
        out[where] = np.round((1.0 - alpha) * rgb[where].astype(np.float64) + alpha * c).astype(np.uint8)
        if border is not None:
            out[where & border] = np.asarray(colour, dtype=np.uint8)
    return out
