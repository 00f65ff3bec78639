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
    """A new contiguous H x W x 3 uint8 copy of `image`, the form every overlay draws on.

    Args:
        image: H x W, H x W x 1 grey, H x W x 2 grey + alpha, H x W x 3 or more channels (the
            first three are taken as RGB). Values outside 0..255 (other integer or float
            types) are clipped, floats rounded.

    Returns:
        The H x W x 3 uint8 array (grey repeated into the three channels).

    Raises:
        DLParamError: not H x W or H x W x C, an empty side, or not numeric.

    Examples:
        >>> import numpy as np
        >>> from dlbatch.visual import to_rgb_uint8
        >>> rgb = to_rgb_uint8(np.array([[0.4, 300.0]]))
        >>> rgb.shape, rgb.dtype.name, rgb[0].tolist()
        ((1, 2, 3), 'uint8', [[0, 0, 0], [255, 255, 255]])
    """
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
    """An RGB Pillow image of an H x W x 3 uint8 array (a copy), to draw on with ImageDraw.

    Args:
        rgb: an H x W x 3 uint8 array, e.g. from `to_rgb_uint8`.

    Returns:
        A W x H Pillow image in mode "RGB".

    Examples:
        >>> from dlbatch.visual import to_pil
        >>> picture = to_pil(to_rgb_uint8(np.zeros((32, 48))))
        >>> picture.size, picture.mode
        ((48, 32), 'RGB')
    """
    return Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), mode="RGB")


def line_width_for(height: int, width: int) -> int:
    """Outline width in pixels: 2 on small images, growing with the image so that lines stay
    visible when a large picture is shown scaled down.

    Args:
        height: image height in pixels.
        width: image width in pixels.

    Returns:
        The width, max(2, round(longer side / 250)).

    Examples:
        >>> from dlbatch.visual import line_width_for
        >>> line_width_for(64, 64), line_width_for(1000, 2000)
        (2, 8)
    """
    return max(2, round(max(height, width) / 250))


def font_for(height: int, width: int) -> ImageFont.ImageFont:
    """Pillow's built-in font at a size that suits the image (10 px and up), for labels.

    Args:
        height: image height in pixels.
        width: image width in pixels.

    Returns:
        A Pillow font (the fixed bitmap font on Pillow < 10.1).

    Examples:
        >>> from PIL import ImageDraw
        >>> from dlbatch.visual import font_for
        >>> ImageDraw.Draw(picture).textlength("cat", font=font_for(480, 640)) > 0
        True
    """
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
    """The outline of an axis-parallel box in dlbatch's pixel-edge convention, `width`
    pixels wide on the box's own border pixels (the background next to it stays visible).

    Args:
        draw: an ImageDraw of the picture.
        box: (row1, col1, row2, col2), a rectangle1 box; pixels r0..r1 span r0 - 0.5..r1 + 0.5.
        colour: RGB outline colour.
        width: outline width in pixels.
        size: (height, width) of the image; the box is clipped to it.

    Returns:
        The pixel rectangle drawn (r0, c0, r1, c1), inclusive.

    Examples:
        >>> from dlbatch.visual import draw_box_outline
        >>> draw = ImageDraw.Draw(picture)
        >>> draw_box_outline(draw, (3.5, 4.5, 10.5, 20.5), (255, 0, 0), 2, (32, 48))
        (4, 5, 10, 20)
        >>> picture.getpixel((5, 4)), picture.getpixel((12, 7))  # (x, y): on the outline, inside
        ((255, 0, 0), (0, 0, 0))
    """
    r0, r1 = pixel_range(box[0], box[2], size[0])
    c0, c1 = pixel_range(box[1], box[3], size[1])
    draw.rectangle([c0, r0, c1, r1], outline=colour, width=width)
    return r0, c0, r1, c1


def oriented_box_band(box: Sequence[float], width: int, size: tuple[int, int]
                      ) -> tuple[np.ndarray, int, int]:
    """The outline of a rectangle2 box as a pixel mask, the rotated counterpart of
    draw_box_outline (paint it with `paint_mask`).

    The mask holds the pixels whose centre lies inside the box and less than `width` from one
    of its sides. A box too thin to hold a pixel centre marks its nearest pixel.

    Args:
        box: (row, col, phi, length1, length2): HALCON's half lengths along
            d1 = (-sin phi, cos phi) and d2 = (cos phi, sin phi).
        width: outline width in pixels.
        size: (height, width) of the image; the mask is clipped to it.

    Returns:
        (mask, row0, col0): a bool mask over the box's bounding window in the image, whose
        first pixel is (row0, col0); empty when the box lies outside the image.

    Examples:
        >>> from dlbatch.visual import oriented_box_band
        >>> mask, row0, col0 = oriented_box_band((16, 24, 0.0, 8, 4), 1, (32, 48))
        >>> mask.shape, (row0, col0), int(mask.sum())  # a 9 x 17 pixel ring
        ((9, 17), (12, 16), 48)
    """
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
    """Set the pixels of `mask` to `colour`, e.g. the band of `oriented_box_band`.

    Args:
        picture: the Pillow image, changed in place.
        mask: H' x W' bool mask.
        row0: image row of the mask's first row.
        col0: image column of the mask's first column.
        colour: RGB colour.

    Examples:
        >>> from dlbatch.visual import paint_mask
        >>> paint_mask(picture, mask, row0, col0, (0, 255, 0))
        >>> picture.getpixel((16, 12)), picture.getpixel((24, 16))  # (x, y): the ring, the centre
        ((0, 255, 0), (0, 0, 0))
    """
    if mask.size and mask.any():
        stencil = Image.fromarray(mask.astype(np.uint8) * 255, mode="L")
        picture.paste(colour, (col0, row0, col0 + mask.shape[1], row0 + mask.shape[0]), stencil)


def draw_arrow(draw: ImageDraw.ImageDraw, start, end, colour: Colour, width: int, head: bool = True) -> None:
    """A line from `start` to `end` with, when `head`, an arrow head at `end` (e.g. the
    direction of a rectangle2 box).

    Args:
        draw: an ImageDraw of the picture.
        start: (row, col) of the tail.
        end: (row, col) of the tip.
        colour: RGB colour.
        width: line width in pixels.
        head: whether to draw the arrow head.

    Examples:
        >>> from dlbatch.visual import draw_arrow
        >>> draw_arrow(draw, (28, 4), (28, 40), (255, 255, 0), 2)
        >>> picture.getpixel((40, 28)), picture.getpixel((20, 28))  # (x, y): tip, shaft
        ((255, 255, 0), (255, 255, 0))
    """
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

    The label is moved inside the image where it fits (a label wider than the image starts at
    column 0 and is cut).

    Args:
        draw: an ImageDraw of the picture.
        text: the label, e.g. a class name and confidence.
        row: with `above`, the label's bottom row is `row - 1` (just above an outline
            starting at `row`), or its top row is `row` when there is no room above.
        col: the label's left column.
        colour: RGB fill colour.
        font: a Pillow font, e.g. from `font_for`.
        size: (height, width) of the image.
        above: place the label above `row` (True) or from `row` down.

    Returns:
        The label's box in the image (r0, c0, r1, c1), inclusive.

    Examples:
        >>> from dlbatch.visual import draw_label
        >>> r0, c0, r1, c1 = draw_label(draw, "cat", 4, 5, (255, 0, 0), font_for(32, 48), (32, 48))
        >>> r0 == 4, c0  # no room above row 4: the label starts there
        (True, 5)
    """
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
    """A segmentation overlay: each pixel whose class has a colour is blended towards it,
    round((1 - alpha) * pixel + alpha * colour); pixels of classes without one stay unchanged.

    Args:
        rgb: H x W x 3 uint8 image (not changed).
        class_map: H x W class ids.
        colours: {class id: RGB colour} of the classes to show (e.g. from
            `class_index_colours`, without the background).
        alpha: blending weight of the colour, 0..1.
        edges: also set the border pixels of the coloured regions to the full colour, so
            neighbouring regions stay apart.

    Returns:
        A new H x W x 3 uint8 image.

    Raises:
        DLParamError: `class_map` is not of the image's height and width.

    Examples:
        >>> from dlbatch.visual import blend_classes
        >>> rgb = np.zeros((2, 3, 3), np.uint8)
        >>> class_map = np.array([[0, 1, 1], [0, 1, 1]])
        >>> blend_classes(rgb, class_map, {1: (200, 100, 0)}, 0.5, edges=False)[0].tolist()
        [[0, 0, 0], [100, 50, 0], [100, 50, 0]]
    """
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
