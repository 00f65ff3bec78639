"""Helpers shared by the torch kernels: the backend's error and the torch order of pads. What
attributes mean (pads, output sizes, operands that moved to inputs) is in
....core.onnx_attributes, shared with the other backends."""
from __future__ import annotations

from typing import Sequence

from ....core.errors import DLPluginError


def unsupported(op: str, what: str, supported: str) -> DLPluginError:
    return DLPluginError(f"{op}: {what} is not supported by the torch backend; supported: {supported}")


def torch_pads(begins: Sequence[int], ends: Sequence[int]) -> list[int]:
    """ONNX per-axis (begin, end) for the trailing axes -> torch.nn.functional.pad order."""
    out: list[int] = []
    for b, e in zip(reversed(begins), reversed(ends)):
        out += [b, e]
    return out
