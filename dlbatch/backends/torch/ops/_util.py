"""Helpers shared by the torch kernels: attribute reading, constant inputs as Python numbers,
and the spatial padding rules of ONNX (pads layout, auto_pad)."""
from __future__ import annotations

import math
from typing import Any, Sequence

from ....core.errors import DLPluginError


def text(value: Any) -> str:
    return value.decode() if isinstance(value, (bytes, bytearray)) else str(value)


def ints(value) -> list[int]:
    """A constant input (tensor, array or sequence) as a list of Python ints."""
    if value is None:
        return []
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (int, float)):
        return [int(value)]
    return [int(v) for v in value]


def floats(value) -> list[float]:
    if value is None:
        return []
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (int, float)):
        return [float(value)]
    return [float(v) for v in value]


def unsupported(op: str, what: str, supported: str) -> DLPluginError:
    return DLPluginError(f"{op}: {what} is not supported by the torch backend; supported: {supported}")


def norm_axis(axis: int, rank: int, op: str) -> int:
    if not -rank <= axis < rank:
        raise DLPluginError(f"{op}: axis {axis} is out of range for a rank-{rank} input")
    return axis + rank if axis < 0 else axis


def torch_pads(begins: Sequence[int], ends: Sequence[int]) -> list[int]:
    """ONNX per-axis (begin, end) for the trailing axes -> torch.nn.functional.pad order."""
    out: list[int] = []
    for b, e in zip(reversed(begins), reversed(ends)):
        out += [b, e]
    return out


def spatial_pads(op: str, attrs: dict, in_shape: Sequence[int], kernel: Sequence[int],
                 strides: Sequence[int], dilations: Sequence[int]) -> tuple[list[int], list[int]]:
    """(begins, ends) per spatial axis from `pads` or `auto_pad` (Conv/pooling rules)."""
    n = len(in_shape)
    auto_pad = text(attrs.get("auto_pad", "NOTSET"))
    if auto_pad in ("NOTSET", ""):
        pads = list(attrs.get("pads", [0] * (2 * n)))
        if len(pads) != 2 * n:
            raise DLPluginError(f"{op}: pads needs {2 * n} values for {n} spatial axes, got {pads}")
        return pads[:n], pads[n:]
    if auto_pad == "VALID":
        return [0] * n, [0] * n
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begins, ends = [], []
        for size, k, s, d in zip(in_shape, kernel, strides, dilations):
            out = -(-size // s)
            total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
            small = total // 2
            begin = small if auto_pad == "SAME_UPPER" else total - small
            begins.append(begin)
            ends.append(total - begin)
        return begins, ends
    raise unsupported(op, f"auto_pad={auto_pad!r}", "NOTSET, VALID, SAME_UPPER, SAME_LOWER")


def pool_out_size(size: int, k_eff: int, s: int, begin: int, end: int, ceil_mode: bool) -> int:
    """ONNX pooling output size; in ceil mode a window that would start inside the end padding
    is dropped (the ONNX and PyTorch rule)."""
    span = size + begin + end - k_eff
    out = (math.ceil(span / s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + begin:
        out -= 1
    return out
