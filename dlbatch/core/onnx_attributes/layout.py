"""Attributes of the layout ops and LRN: Concat's axis (required from opset 4), Flatten's axis
(in [0, rank]), Transpose's permutation (reversed axes by default) and LRN's size, alpha, beta,
bias and the channel window around each channel.
"""
from __future__ import annotations

from typing import NamedTuple

from .values import int_list, normalize_axis, unsupported


def concat_axis(opset: int, attrs: dict, rank: int) -> int:
    """Concat's axis: 1 by default before opset 4, required from then on."""
    if "axis" not in attrs and opset >= 4:
        raise unsupported("Concat", "a node without axis", "axis is required from opset 4")
    return normalize_axis("Concat", int(attrs.get("axis", 1)), rank)


def flatten_axis(attrs: dict, rank: int) -> int:
    """Flatten's axis (default 1) in [0, rank]: the output is (prod(shape[:axis]), rest)."""
    axis = int(attrs.get("axis", 1))
    if not -rank <= axis <= rank:
        raise unsupported("Flatten", f"axis={axis} for a rank-{rank} input", f"-{rank} <= axis <= {rank}")
    return axis + rank if axis < 0 else axis


def transpose_perm(attrs: dict, rank: int) -> list[int]:
    """Transpose's permutation; absent means reversing the axes."""
    return int_list(attrs.get("perm")) or list(range(rank))[::-1]


class LRNWindow(NamedTuple):
    """LRN's parameters: the channel window [c - before, c + after] of `size` channels."""

    size: int
    alpha: float
    beta: float
    bias: float
    before: int
    after: int


def lrn_window(attrs: dict) -> LRNWindow:
    """LRN's size (required), alpha, beta, bias and window: floor((size-1)/2) channels before,
    ceil((size-1)/2) after."""
    if "size" not in attrs:
        raise unsupported("LRN", "a node without size", "size is required")
    size = int(attrs["size"])
    before = (size - 1) // 2
    return LRNWindow(size, float(attrs.get("alpha", 1e-4)), float(attrs.get("beta", 0.75)),
                     float(attrs.get("bias", 1.0)), before, size - 1 - before)
