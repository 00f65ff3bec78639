"""Shape computations: Shape, ConstantOfShape, Range, Cast, Equal, Mod. Outputs live on the
program's device like the graph's integer constants they are combined with; operands read as
numbers arrive on the host (host_inputs)."""
from __future__ import annotations

import torch

from ....core.onnx_attributes import float_list, int_list
from ....core.onnx_attributes.indexing import (FLOAT_TYPES, cast_target, constant_of_shape_value, range_length,
                                               shape_range)
from ..kernel import TorchKernel


class Shape(TorchKernel):
    op_type = "Shape"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        start, end = shape_range(attrs, x.dim())
        return [torch.tensor(tuple(x.shape)[start:end], dtype=torch.int64, device=x.device)]


class ConstantOfShape(TorchKernel):
    op_type = "ConstantOfShape"
    host_inputs = (0,)

    def forward(self, ctx, inputs, attrs):
        shape = int_list(inputs[0])
        value = constant_of_shape_value(attrs)
        if value is None:
            return [torch.zeros(shape, dtype=torch.float32, device=ctx.device)]
        t = torch.from_numpy(value.reshape(-1)[:1].copy())
        return [torch.full(shape, t.item(), dtype=t.dtype, device=ctx.device)]


class Range(TorchKernel):
    op_type = "Range"
    host_inputs = (0, 1, 2)

    def forward(self, ctx, inputs, attrs):
        start, limit, delta = inputs
        n = range_length(float_list(start)[0], float_list(limit)[0], float_list(delta)[0])
        steps = torch.arange(n, device=ctx.device, dtype=torch.promote_types(start.dtype, delta.dtype))
        return [(start.reshape(()).to(ctx.device) + steps * delta.reshape(()).to(ctx.device)).to(start.dtype)]


class Cast(TorchKernel):
    """Float to float keeps the model's precision; anything else converts."""

    op_type = "Cast"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        to = cast_target(attrs)
        if to in FLOAT_TYPES and x.is_floating_point():
            return [x]
        return [x.to(getattr(torch, to))]


class Equal(TorchKernel):
    op_type = "Equal"

    def forward(self, ctx, inputs, attrs):
        return [torch.eq(inputs[0], inputs[1])]


class Mod(TorchKernel):
    """fmod=0: sign of the divisor (torch.remainder); fmod=1: sign of the dividend (torch.fmod)."""

    op_type = "Mod"

    def forward(self, ctx, inputs, attrs):
        a, b = inputs
        fn = torch.fmod if int(attrs.get("fmod", 0)) else torch.remainder
        return [fn(a, b)]
