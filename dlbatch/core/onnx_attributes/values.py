"""Reading attribute values: ONNX strings (stored as bytes) as text, int and float lists from
attributes or constant inputs (scalars, sequences, arrays or tensors, read through `.tolist()`),
whether an optional operand is present (not None and not empty), a possibly negative axis
made non-negative, and `unsupported`, the DLPluginError for a value a rule does not cover. Every
other module of the package builds on these; none of them imports an array library.
"""
from __future__ import annotations

from typing import Any

from ..errors import DLPluginError


def unsupported(op: str, what: str, supported: str) -> DLPluginError:
    """The error for an attribute value a rule does not cover, naming the allowed ones."""
    return DLPluginError(f"{op}: {what} is not supported; supported: {supported}")


def text(value: Any, default: str = "") -> str:
    """A string attribute: ONNX stores strings as bytes."""
    if value is None:
        return default
    return value.decode() if isinstance(value, (bytes, bytearray)) else str(value)


def _flat(value: Any) -> list:
    """Numbers of a scalar, sequence, array or tensor (read with .tolist()), flattened."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        return [value]
    out: list = []
    for v in value:
        out.extend(_flat(v))
    return out


def int_list(value: Any) -> list[int] | None:
    """An int-list attribute or constant input as Python ints; None stays None."""
    return None if value is None else [int(v) for v in _flat(value)]


def float_list(value: Any) -> list[float] | None:
    """A float-list attribute or constant input as Python floats; None stays None."""
    return None if value is None else [float(v) for v in _flat(value)]


def is_given(value: Any) -> bool:
    """Whether an optional operand is present: not None and not an empty tensor."""
    if value is None:
        return False
    numel = getattr(value, "numel", None)
    if callable(numel):  # a torch tensor
        return numel() > 0
    size = getattr(value, "size", None)
    if isinstance(size, int):  # a numpy array
        return size > 0
    return len(value) > 0 if isinstance(value, (list, tuple)) else True


def normalize_axis(op: str, axis: int, rank: int) -> int:
    """A possibly negative axis in [0, rank); raises when out of range."""
    if not -rank <= axis < rank:
        raise DLPluginError(f"{op}: axis {axis} is out of range for a rank-{rank} input")
    return axis + rank if axis < 0 else axis
