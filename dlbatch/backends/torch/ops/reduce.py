"""ReduceMean, ReduceSum, ReduceMax: axes as attribute (before opset 18; ReduceSum: 13) or
input 1; keepdims (default 1); noop_with_empty_axes. ReduceMax is torch.amax, whose gradient
splits evenly between tied maxima (the numpy kernel follows it)."""
from __future__ import annotations

import torch

from ....core.onnx_attributes import reduce_axes
from ..kernel import TorchKernel


class _Reduce(TorchKernel):
    host_inputs = (1,)

    def reduce(self, x, dims, keep):
        raise NotImplementedError

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        keep = bool(int(attrs.get("keepdims", 1)))
        dims = reduce_axes(self.op_type, ctx.opset, attrs, inputs, x.dim())
        if not dims:  # noop_with_empty_axes, or a scalar
            return [x]
        return [self.reduce(x, dims, keep)]


class ReduceMean(_Reduce):
    op_type = "ReduceMean"

    def reduce(self, x, dims, keep):
        return x.mean(dim=dims, keepdim=keep)


class ReduceSum(_Reduce):
    op_type = "ReduceSum"

    def reduce(self, x, dims, keep):
        return x.sum(dim=dims, keepdim=keep)


class ReduceMax(_Reduce):
    op_type = "ReduceMax"

    def reduce(self, x, dims, keep):
        if any(x.shape[d] == 0 for d in dims):  # the maximum of an empty set: the lowest value
            shape = [1 if i in dims else s for i, s in enumerate(x.shape) if keep or i not in dims]
            low = False if x.dtype == torch.bool else (
                -torch.inf if x.is_floating_point() else torch.iinfo(x.dtype).min)
            return torch.full(shape, low, dtype=x.dtype, device=x.device)
        return x.amax(dim=dims, keepdim=keep)
