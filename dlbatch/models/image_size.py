"""The image-size rule of models that upsample back through their backbone's levels
(segmentation decoders, detection pyramids), as HALCON has it: image sides must be multiples of
the deepest stride, so every x2 upsampling lands exactly on the shallower map's size."""
from __future__ import annotations

from typing import Any, Mapping

from ..core.errors import DLParamError


def check_size_multiple(hp: Mapping[str, Any], multiple: int, what: str) -> None:
    """Raise a DLParamError naming `what` (e.g. "a detection model with max_level=4") and the
    nearest valid size when image_width or image_height is not a multiple of `multiple`."""
    w, h = hp["image_width"], hp["image_height"]
    if w % multiple or h % multiple:
        def near(x):
            return max(multiple, round(x / multiple) * multiple)
        raise DLParamError(f"{what} needs image_width and image_height that are multiples of {multiple}; "
                           f"got {w} x {h}. Use e.g. {near(w)} x {near(h)}")
