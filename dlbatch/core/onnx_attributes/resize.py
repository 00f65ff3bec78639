"""Resize (and Upsample's rules as opset 10 Resize keeps them): the coordinate and rounding
modes and the optional roi/scales/sizes inputs per opset, the axes scales/sizes refer to, the
output size and scale per axis (keep_aspect_ratio_policy included), and where an output
position samples the input under each coordinate_transformation_mode.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

from .values import float_list, int_list, is_given, normalize_axis, text, unsupported

COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
                    "asymmetric", "tf_crop_and_resize")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


class ResizeOperands(NamedTuple):
    """Resize's coordinate rule, rounding rule and optional roi/scales/sizes (None if absent)."""

    coordinate_mode: str
    nearest_mode: str
    roi: list[float] | None
    scales: list[float] | None
    sizes: list[int] | None


def scales_input_index(op_type: str, opset: int) -> int | None:
    """Where the scales operand sits: Upsample and opset-10 Resize take (X, scales), Resize
    from 11 on (X, roi, scales, sizes); None for other ops."""
    if op_type == "Upsample":
        return 1
    if op_type == "Resize":
        return 1 if opset < 11 else 2
    return None


def resize_operands(opset: int, attrs: dict, inputs: Sequence) -> ResizeOperands:
    """Opset 10 Resize takes (X, scales) and resizes like its Upsample ancestor (asymmetric
    coordinates, floor rounding); from 11 on the inputs are (X, roi, scales, sizes) and the
    attributes choose the rules."""
    def given(i: int):
        value = inputs[i] if i < len(inputs) else None
        return value if is_given(value) else None

    scales = float_list(given(scales_input_index("Resize", opset)))
    if opset < 11:
        return ResizeOperands("asymmetric", "floor", None, scales, None)
    ctm = text(attrs.get("coordinate_transformation_mode"), "half_pixel")
    nearest = text(attrs.get("nearest_mode"), "round_prefer_floor")
    if ctm not in COORDINATE_MODES:
        raise unsupported("Resize", f"coordinate_transformation_mode={ctm!r}", ", ".join(COORDINATE_MODES))
    if nearest not in NEAREST_MODES:
        raise unsupported("Resize", f"nearest_mode={nearest!r}", ", ".join(NEAREST_MODES))
    return ResizeOperands(ctm, nearest, float_list(given(1)), scales, int_list(given(3)))


def resize_axes(attrs: dict, rank: int) -> list[int]:
    """The axes that scales/sizes refer to (the `axes` attribute, opset 18), all by default."""
    axes = int_list(attrs.get("axes"))
    return [normalize_axis("Resize", a, rank) for a in axes] if axes else list(range(rank))


def resize_shape(in_shape: Sequence[int], axes: Sequence[int], scales: Sequence[float] | None,
                 sizes: Sequence[int] | None, policy: str = "stretch") -> tuple[list[float], list[int]]:
    """(scale, output size) per axis of the input. sizes win over scales; with scales the
    output is floor(scale * size); keep_aspect_ratio_policy not_larger/not_smaller give the
    resized axes one common scale (the smallest/largest) and round their sizes."""
    rank = len(in_shape)
    scale, out = [1.0] * rank, [int(s) for s in in_shape]
    if sizes:
        if len(sizes) != len(axes):
            raise unsupported("Resize", f"{len(sizes)} sizes for {len(axes)} axes", "one size per axis")
        for a, s in zip(axes, sizes):
            out[a] = int(s)
            scale[a] = s / in_shape[a]
        if policy != "stretch":
            if policy not in ("not_larger", "not_smaller"):
                raise unsupported("Resize", f"keep_aspect_ratio_policy={policy!r}",
                                  "stretch, not_larger, not_smaller")
            common = (min if policy == "not_larger" else max)(scale[a] for a in axes)
            for a in axes:
                scale[a] = common
                out[a] = int(common * in_shape[a] + 0.5)
        return scale, out
    if scales:
        if len(scales) != len(axes):
            raise unsupported("Resize", f"{len(scales)} scales for {len(axes)} axes", "one scale per axis")
        for a, s in zip(axes, scales):
            scale[a] = float(s)
            out[a] = math.floor(s * in_shape[a])
        return scale, out
    raise unsupported("Resize", "a node with neither scales nor sizes", "a non-empty scales or sizes input")


def source_coordinates(mode: str, out_index, scale: float, in_size: int, out_size: int, roi=None):
    """Input coordinates of output positions `out_index` (a number or a float array, used
    elementwise) under a coordinate_transformation_mode; roi = (start, end) of the axis for
    tf_crop_and_resize (default the whole axis)."""
    y = out_index
    width = scale * in_size
    if mode == "align_corners":
        return y * 0.0 if width == 1 else y * (in_size - 1) / (width - 1)
    if mode == "asymmetric":
        return y / scale
    if mode == "pytorch_half_pixel":
        return y * 0.0 - 0.5 if width == 1 else (y + 0.5) / scale - 0.5
    if mode == "half_pixel":
        return (y + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        offset = in_size / 2 * (1 - out_size / width)
        return offset + (y + 0.5) / scale - 0.5
    if mode == "tf_crop_and_resize":
        lo, hi = roi if roi is not None else (0.0, 1.0)
        if width == 1:
            x = y * 0.0 + (hi - lo) * (in_size - 1) / 2
        else:
            x = y * (hi - lo) * (in_size - 1) / (width - 1)
        return x + lo * (in_size - 1)
    raise unsupported("Resize", f"coordinate_transformation_mode={mode!r}", ", ".join(COORDINATE_MODES))
