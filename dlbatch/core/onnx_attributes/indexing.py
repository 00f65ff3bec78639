"""Operands of the indexing and shape-computation ops that PyTorch exports around attention
blocks and dynamic batch sizes: Gather's axis and index range, Slice's starts/ends/axes/steps,
Split's sizes, Shape's start/end, Expand's target, Range's length, Cast's target type and
ConstantOfShape's value.

These are exactly the places where numpy, torch and ONNX disagree in small ways (ONNX clamps
Slice bounds differently for negative steps, so an end of -1 after clamping means "before the
first element" and not "the last one"; Split's equal split rounds up from opset 18), so each
backend gets its answer from here. Like the rest of the package this imports no array library:
constant inputs are read through `.tolist()`.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from .operands import operand
from .values import int_list, is_given, normalize_axis, unsupported

INT64_MAX = 2 ** 63 - 1


def gather_axis(attrs: dict, rank: int) -> int:
    """Gather's axis (default 0), non-negative."""
    return normalize_axis("Gather", int(attrs.get("axis", 0)), rank)


def check_gather_indices(lo: int, hi: int, size: int) -> None:
    """Gather indices must lie in [-size, size - 1] (negative ones count from the end); `lo`
    and `hi` are the smallest and largest index given (skip the check for no indices)."""
    if lo < -size or hi >= size:
        bad = lo if lo < -size else hi
        raise unsupported("Gather", f"index {bad} for an axis of size {size}",
                          f"indices in [{-size}, {size - 1}]")


def slice_specs(opset: int, attrs: dict, inputs: Sequence, shape: Sequence[int]) -> tuple[slice, ...]:
    """Slice as one Python slice per axis (numpy/torch basic indexing). starts/ends/axes are
    attributes before opset 10, inputs 1..4 (with steps) from then on. Bounds are clamped as
    ONNX says: to [0, dim] for positive steps and to [0, dim-1] (start) / [-1, dim-1] (end) for
    negative ones, where an end of -1 means "past the first element" (stop=None)."""
    rank = len(shape)
    if opset < 10:
        starts, ends = int_list(attrs.get("starts")), int_list(attrs.get("ends"))
        axes, steps = int_list(attrs.get("axes")), None
    else:
        starts, ends = int_list(inputs[1]), int_list(inputs[2])
        axes = int_list(inputs[3]) if len(inputs) > 3 and is_given(inputs[3]) else None
        steps = int_list(inputs[4]) if len(inputs) > 4 and is_given(inputs[4]) else None
    if starts is None or ends is None or len(starts) != len(ends):
        raise unsupported("Slice", "starts and ends of different lengths (or missing)",
                          "one start and one end per sliced axis")
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    if not len(axes) == len(steps) == len(starts):
        raise unsupported("Slice", f"{len(starts)} starts with {len(axes)} axes and {len(steps)} steps",
                          "equally many starts, ends, axes and steps")
    out = [slice(None)] * rank
    seen = set()
    for a, s, e, st in zip(axes, starts, ends, steps):
        a = normalize_axis("Slice", a, rank)
        if a in seen:
            raise unsupported("Slice", f"axis {a} given twice", "each axis at most once")
        seen.add(a)
        if st == 0:
            raise unsupported("Slice", "step 0", "non-zero steps")
        dim = int(shape[a])
        s = s + dim if s < 0 else s
        e = e + dim if e < 0 else e
        if st > 0:
            s, e = min(max(s, 0), dim), min(max(e, 0), dim)
            out[a] = slice(s, e, st)
        else:
            s, e = min(max(s, 0), dim - 1), min(max(e, -1), dim - 1)
            out[a] = slice(s, e if e >= 0 else None, st)
    return tuple(out)


def split_sizes(opset: int, attrs: dict, inputs: Sequence, shape: Sequence[int], n_outputs: int
                ) -> tuple[int, list[int]]:
    """(axis, sizes) of Split: explicit sizes (attribute `split` before opset 13, input 1 from
    then on) must add up to the axis; otherwise the axis is split into `num_outputs` (opset 18)
    or as many parts as the node has outputs (`n_outputs`, 0 when the caller cannot tell): equal parts before opset 18, parts of
    ceil(dim / n) with a smaller last one from 18 on."""
    rank = len(shape)
    axis = normalize_axis("Split", int(attrs.get("axis", 0)), rank)
    dim = int(shape[axis])
    given = operand("Split", "split", opset, attrs, inputs)
    if is_given(given):
        sizes = int_list(given)
        if sum(sizes) != dim or any(s < 0 for s in sizes):
            raise unsupported("Split", f"split={sizes} for an axis of size {dim}",
                              f"non-negative sizes adding up to {dim}")
        return axis, sizes
    n = int(attrs.get("num_outputs", n_outputs))
    if n <= 0:
        raise unsupported("Split", "a split without sizes whose number of parts is not known here",
                          "an explicit `split` (attribute or input), or num_outputs (opset 18)")
    if opset < 18:
        if dim % n:
            raise unsupported("Split", f"an axis of size {dim} into {n} equal parts",
                              "sizes that divide the axis (or an explicit split)")
        return axis, [dim // n] * n
    part = -(-dim // n)
    sizes = [min(part, max(dim - i * part, 0)) for i in range(n)]
    return axis, sizes


def shape_range(attrs: dict, rank: int) -> tuple[int, int]:
    """Shape's [start, end) (opset 15; defaults 0 and rank), negative counting from the end,
    clamped to [0, rank]."""
    def clamp(v: int) -> int:
        v = v + rank if v < 0 else v
        return min(max(v, 0), rank)

    start = clamp(int(attrs.get("start", 0)))
    end = clamp(int(attrs.get("end", rank)))
    return start, max(start, end)


def broadcast_shape(op: str, a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    """numpy/ONNX multidirectional broadcasting of two shapes."""
    n = max(len(a), len(b))
    a = (1,) * (n - len(a)) + tuple(int(v) for v in a)
    b = (1,) * (n - len(b)) + tuple(int(v) for v in b)
    out = []
    for x, y in zip(a, b):
        if x != y and 1 not in (x, y):
            raise unsupported(op, f"shapes {a} and {b}", "shapes that broadcast (equal sizes or 1)")
        out.append(y if x == 1 else x)
    return tuple(out)


def expand_shape(in_shape: Sequence[int], target: Any) -> tuple[int, ...]:
    """Expand's output shape: the input broadcast with the target (a 1 in the target keeps
    the input's size, so the output may be larger than the target)."""
    return broadcast_shape("Expand", in_shape, int_list(target) or [])


def range_length(start: float, limit: float, delta: float) -> int:
    """Number of elements of Range: max(ceil((limit - start) / delta), 0)."""
    if delta == 0:
        raise unsupported("Range", "delta=0", "a non-zero delta")
    return max(int(math.ceil((limit - start) / delta)), 0)


# TensorProto data type codes -> dtype names understood by numpy (and, via getattr, torch)
CAST_TYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
              9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16"}
FLOAT_TYPES = ("float16", "bfloat16", "float32", "float64")


def cast_target(attrs: dict) -> str:
    """Cast's target type `to` as a dtype name. A cast between float types keeps the
    precision the model computes in (the kernels leave float inputs as they are): an exported
    float32 -> float32 or float32 -> float64 cast is an artefact of the export, while the
    model's precision is the user's choice."""
    to = int(attrs.get("to", 0))
    if to not in CAST_TYPES:
        raise unsupported("Cast", f"to={to}", ", ".join(f"{k} ({v})" for k, v in CAST_TYPES.items()))
    return CAST_TYPES[to]


def constant_of_shape_value(attrs: dict) -> Any:
    """ConstantOfShape's fill value: a one-element tensor attribute (numpy array after import),
    float32 zero by default. Returned as given; None means the default."""
    value = attrs.get("value")
    if value is not None and getattr(value, "size", 1) != 1:
        raise unsupported("ConstantOfShape", f"a value of {value.size} elements", "a one-element tensor")
    return value
