"""One colour per class for overlays: saturated, bright hues spread by the golden ratio.

Not dlbatch.data.colours' class colours: the synthetic scenes paint each class's objects in
those mid-tone colours, so an outline in the same colour would vanish on its own object."""
from __future__ import annotations

import colorsys
from typing import Sequence


def class_colour_rgb(index: int) -> tuple[int, int, int]:
    """The RGB overlay colour of the class at position `index` of class_ids; neighbouring
    positions get clearly different hues.

    Args:
        index: the class's position in the model's class_ids (not its id).

    Returns:
        (r, g, b), 0..255 each.

    Examples:
        >>> from dlbatch.visual import class_colour_rgb
        >>> class_colour_rgb(0), class_colour_rgb(1)
        ((38, 255, 255), (255, 192, 38))
    """
    hue = (0.5 + int(index) * 0.618034) % 1.0  # opposite the synthetic scenes' hue of the class
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return round(255 * r), round(255 * g), round(255 * b)


def class_index_colours(class_ids: Sequence[int]) -> dict[int, tuple[int, int, int]]:
    """{class id: RGB colour} by position in `class_ids`, the colours of a model's classes.

    Args:
        class_ids: the model's class ids, in order.

    Returns:
        {class id: (r, g, b)}.

    Examples:
        >>> from dlbatch.visual import class_index_colours
        >>> class_index_colours([3, 7])
        {3: (38, 255, 255), 7: (255, 192, 38)}
    """
    return {int(c): class_colour_rgb(i) for i, c in enumerate(class_ids)}


def colour_of(class_id: int, class_ids: Sequence[int]) -> tuple[int, int, int]:
    """The colour of `class_id`; an id that is not in class_ids (a model whose classes changed
    after it was applied) gets a colour past the known ones rather than an error."""
    ids = [int(c) for c in class_ids]
    cid = int(class_id)
    return class_colour_rgb(ids.index(cid) if cid in ids else len(ids) + abs(cid))


def text_colour_on(background: Sequence[int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on `background` (Rec. 601 luma), for label text.

    Args:
        background: an RGB colour (further channels are ignored).

    Returns:
        (0, 0, 0) on a light background, else (255, 255, 255).

    Examples:
        >>> from dlbatch.visual import text_colour_on
        >>> text_colour_on((255, 255, 0)), text_colour_on((0, 0, 128))
        ((0, 0, 0), (255, 255, 255))
    """
    r, g, b = (float(v) for v in background[:3])
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b >= 128 else (255, 255, 255)
