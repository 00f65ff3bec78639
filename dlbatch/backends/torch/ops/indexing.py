"""Gather, Slice, Split, Expand, Where as torch indexing and broadcasting; autograd gives
the scatter-add, zero-filled and summed gradients. Indices, slice bounds, split sizes and
target shapes are read on the host (host_inputs: cached for graph constants)."""
from __future__ import annotations

import torch

from ....core.onnx_attributes.indexing import (check_gather_indices, expand_shape, gather_axis, slice_specs,
                                               split_sizes)
from ..kernel import TorchKernel


class Gather(TorchKernel):
    """index_select along `axis` with the indices flattened, then reshaped to
    data.shape[:axis] + indices.shape + data.shape[axis+1:]; negative indices count from the end."""

    op_type = "Gather"
    host_inputs = (1,)

    def forward(self, ctx, inputs, attrs):
        data, idx = inputs
        axis = gather_axis(attrs, data.dim())
        size = data.shape[axis]
        idx = idx.to(torch.int64)
        if idx.numel():
            check_gather_indices(int(idx.min()), int(idx.max()), size)
        flat = torch.where(idx < 0, idx + size, idx).reshape(-1).to(data.device)
        y = torch.index_select(data, axis, flat)
        return [y.reshape(tuple(data.shape[:axis]) + tuple(idx.shape) + tuple(data.shape[axis + 1:]))]


class Slice(TorchKernel):
    """Positive steps as basic slicing (a view); negative steps as index_select of the
    positions ONNX picks (torch slicing has no negative steps)."""

    op_type = "Slice"
    host_inputs = (1, 2, 3, 4)

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        specs = slice_specs(ctx.opset, attrs, inputs, tuple(x.shape))
        if all((s.step or 1) > 0 for s in specs):
            return [x[specs]]
        for axis, s in enumerate(specs):
            if (s.step or 1) > 0:
                x = x[(slice(None),) * axis + (s,)]
            else:
                pos = torch.arange(*s.indices(x.shape[axis]), device=x.device)
                x = torch.index_select(x, axis, pos)
        return [x]


class Split(TorchKernel):
    op_type = "Split"
    host_inputs = (1,)

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        axis, sizes = split_sizes(ctx.opset, attrs, inputs, tuple(x.shape), ctx.num_outputs)
        return list(torch.split(x, sizes, dim=axis))


class Expand(TorchKernel):
    op_type = "Expand"
    host_inputs = (1,)

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        return [x.expand(expand_shape(tuple(x.shape), inputs[1]))]


class Where(TorchKernel):
    op_type = "Where"

    def forward(self, ctx, inputs, attrs):
        c, x, y = inputs
        return [torch.where(c.to(torch.bool), x, y)]
