"""Operands that moved from an attribute to an input at some opset: MOVED_TO_INPUT maps (op,
operand) to its input index and the first opset where it is an input, `operand` reads it from
whichever place the node's opset says, and the per-op helpers turn it into what a kernel needs:
Clip's bounds, Dropout's ratio, Reshape's target, Squeeze/Unsqueeze/Reduce* axes and Pad's
mode, pads and value. Softmax's axis, whose meaning (rather than place) changed at opset 13,
is read here too.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

from .values import float_list, int_list, is_given, normalize_axis, text, unsupported

PAD_MODES = ("constant", "reflect", "edge", "wrap")


# (op type, operand) -> (input index, first opset where it is an input rather than an attribute)
MOVED_TO_INPUT: dict[tuple[str, str], tuple[int, int]] = {
    ("Clip", "min"): (1, 11),
    ("Clip", "max"): (2, 11),
    ("Dropout", "ratio"): (1, 12),
    ("Pad", "pads"): (1, 11),
    ("Pad", "value"): (2, 11),
    ("Reshape", "shape"): (1, 5),
    ("Squeeze", "axes"): (1, 13),
    ("Unsqueeze", "axes"): (1, 13),
    ("Split", "split"): (1, 13),
    ("ReduceSum", "axes"): (1, 13),
    ("ReduceMean", "axes"): (1, 18),
    ("ReduceMax", "axes"): (1, 18),
    ("ReduceMin", "axes"): (1, 18),
    ("ReduceProd", "axes"): (1, 18),
    ("ReduceL1", "axes"): (1, 18),
    ("ReduceL2", "axes"): (1, 18),
    ("ReduceLogSum", "axes"): (1, 18),
    ("ReduceLogSumExp", "axes"): (1, 18),
    ("ReduceSumSquare", "axes"): (1, 18),
    ("Upsample", "scales"): (1, 9),
}


def operand(op: str, name: str, opset: int, attrs: dict, inputs: Sequence, default: Any = None) -> Any:
    """An operand that is an attribute before some opset and an (optional) input from it on
    (see MOVED_TO_INPUT); `default` when absent. Input values are returned as given (array or
    tensor), attribute values as stored."""
    index, since = MOVED_TO_INPUT[(op, name)]
    if opset >= since:
        value = inputs[index] if index < len(inputs) else None
        return default if value is None else value
    return attrs.get(name, default)


def clip_bounds(opset: int, attrs: dict, inputs: Sequence) -> tuple[Any, Any]:
    """Clip's (min, max), None where absent (an empty input counts as absent)."""
    lo = operand("Clip", "min", opset, attrs, inputs)
    hi = operand("Clip", "max", opset, attrs, inputs)
    return (lo if is_given(lo) else None), (hi if is_given(hi) else None)


def dropout_ratio(opset: int, attrs: dict, inputs: Sequence) -> float:
    """Dropout's drop probability, 0.5 unless given."""
    ratio = operand("Dropout", "ratio", opset, attrs, inputs)
    return float_list(ratio)[0] if is_given(ratio) else 0.5


def reshape_target(opset: int, attrs: dict, inputs: Sequence, in_shape: Sequence[int]) -> list[int]:
    """Reshape's target shape with 0 copied from the input (unless allowzero=1); -1 is left
    for the array library to infer."""
    shape = int_list(operand("Reshape", "shape", opset, attrs, inputs)) or []
    if int(attrs.get("allowzero", 0)):
        return shape
    return [int(in_shape[i]) if s == 0 else s for i, s in enumerate(shape)]


def squeeze_axes(opset: int, attrs: dict, inputs: Sequence, in_shape: Sequence[int]) -> list[int]:
    """Squeeze's axes, sorted and non-negative; absent means every size-1 axis."""
    axes = int_list(operand("Squeeze", "axes", opset, attrs, inputs))
    rank = len(in_shape)
    if axes is None:
        return [i for i, s in enumerate(in_shape) if s == 1]
    axes = sorted({normalize_axis("Squeeze", a, rank) for a in axes})
    for a in axes:
        if in_shape[a] != 1:
            raise unsupported("Squeeze", f"axis {a} of size {in_shape[a]}", "axes of size 1")
    return axes


def unsqueeze_axes(opset: int, attrs: dict, inputs: Sequence, rank: int) -> list[int]:
    """Unsqueeze's axes in the output (rank + len(axes)), sorted and non-negative."""
    axes = int_list(operand("Unsqueeze", "axes", opset, attrs, inputs))
    if not axes:
        raise unsupported("Unsqueeze", "a node without axes", "a non-empty list of axes")
    out_rank = rank + len(axes)
    return sorted(normalize_axis("Unsqueeze", a, out_rank) for a in axes)


def reduce_axes(op: str, opset: int, attrs: dict, inputs: Sequence, rank: int) -> tuple[int, ...] | None:
    """The axes a Reduce* op reduces, sorted and non-negative: all of them when none are
    given, or None (the op is the identity) when noop_with_empty_axes=1 says so."""
    axes = int_list(operand(op, "axes", opset, attrs, inputs))
    if not axes:
        _, since = MOVED_TO_INPUT[(op, "axes")]
        if opset >= since and int(attrs.get("noop_with_empty_axes", 0)):
            return None
        return tuple(range(rank))
    return tuple(sorted({normalize_axis(op, a, rank) for a in axes}))


class PadSpec(NamedTuple):
    """Pad's mode, per-axis (begin, end) counts (negative crops) and constant value."""

    mode: str
    begins: list[int]
    ends: list[int]
    value: float


def pad_spec(opset: int, attrs: dict, inputs: Sequence, rank: int) -> PadSpec:
    """Pad: pads (opset 1: `paddings`) and value are attributes before opset 11, inputs 1 and
    2 from then on, with optional `axes` (input 3, opset 18) naming the padded axes."""
    mode = text(attrs.get("mode"), "constant")
    if mode not in PAD_MODES:
        raise unsupported("Pad", f"mode={mode!r}", ", ".join(PAD_MODES))
    if opset < MOVED_TO_INPUT[("Pad", "pads")][1]:
        pads = int_list(attrs.get("pads", attrs.get("paddings"))) or []
        value = float(attrs.get("value", 0.0))
        axes = list(range(rank))
    else:
        pads = int_list(inputs[1]) or []
        constant = inputs[2] if len(inputs) > 2 else None
        value = float_list(constant)[0] if is_given(constant) else 0.0
        given = inputs[3] if len(inputs) > 3 else None
        axes = ([normalize_axis("Pad", a, rank) for a in int_list(given)] if given is not None
                else list(range(rank)))
    n = len(axes)
    if len(pads) != 2 * n:
        raise unsupported("Pad", f"{len(pads)} pad values for {n} axes", f"2 * {n} values")
    begins, ends = [0] * rank, [0] * rank
    for a, b, e in zip(axes, pads[:n], pads[n:]):
        begins[a], ends[a] = b, e
    return PadSpec(mode, begins, ends, value)


def softmax_axis(opset: int, attrs: dict, rank: int) -> tuple[int, bool]:
    """(axis, as_2d): before opset 13 Softmax flattens the input to 2-D at `axis` (default 1)
    and normalizes the second dimension (as_2d True); from 13 on it normalizes along `axis`
    (default -1)."""
    if opset < 13:
        return normalize_axis("Softmax", int(attrs.get("axis", 1)), rank), True
    return normalize_axis("Softmax", int(attrs.get("axis", -1)), rank), False
