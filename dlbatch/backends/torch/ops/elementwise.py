"""Add, Sub, Mul, Div (numpy broadcasting; opset < 7 `broadcast`/`axis`), Sum (variadic)."""
from __future__ import annotations

import functools
import operator

import torch

from ..kernel import TorchKernel


def _legacy(ctx, a, b, attrs):
    """Before opset 7, B broadcasts only with broadcast=1, aligned at `axis` (default: trailing)."""
    if ctx.opset < 7 and int(attrs.get("broadcast", 0)) and "axis" in attrs and b.dim() < a.dim():
        axis = int(attrs["axis"])
        axis = axis + a.dim() if axis < 0 else axis
        b = b.reshape(tuple(b.shape) + (1,) * (a.dim() - axis - b.dim()))
    return a, b


class _Binary(TorchKernel):
    fn = staticmethod(operator.add)

    def forward(self, ctx, inputs, attrs):
        a, b = inputs[0], inputs[1]
        if ctx.opset < 7:
            a, b = _legacy(ctx, a, b, attrs)
        return [self.fn(a, b)]


class Add(_Binary):
    op_type = "Add"
    fn = staticmethod(operator.add)


class Sub(_Binary):
    op_type = "Sub"
    fn = staticmethod(operator.sub)


class Mul(_Binary):
    op_type = "Mul"
    fn = staticmethod(operator.mul)


def _div(a, b):
    if not a.is_floating_point() and not b.is_floating_point():
        return torch.div(a, b, rounding_mode="trunc")  # ONNX integer division truncates
    return a / b


class Div(_Binary):
    op_type = "Div"
    fn = staticmethod(_div)


class Sum(TorchKernel):
    op_type = "Sum"

    def forward(self, ctx, inputs, attrs):
        return [functools.reduce(operator.add, [t for t in inputs if t is not None])]
