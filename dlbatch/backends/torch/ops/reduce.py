"""ReduceMean: axes as attribute (opset < 18) or input 1; keepdims (default 1);
noop_with_empty_axes (opset 18)."""
from __future__ import annotations

from ....core.onnx_attributes import reduce_axes
from ..kernel import TorchKernel


class ReduceMean(TorchKernel):
    op_type = "ReduceMean"
    host_inputs = (1,)

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        keep = bool(int(attrs.get("keepdims", 1)))
        dims = reduce_axes("ReduceMean", ctx.opset, attrs, inputs, x.dim())
        if not dims:  # noop_with_empty_axes, or a scalar
            return [x]
        return [x.mean(dim=dims, keepdim=keep)]
