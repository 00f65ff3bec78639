"""ReduceMean: axes as attribute (opset < 18) or input 1; keepdims (default 1);
noop_with_empty_axes (opset 18)."""
from __future__ import annotations

from ..kernel import TorchKernel
from ._util import ints, norm_axis


class ReduceMean(TorchKernel):
    op_type = "ReduceMean"
    host_inputs = (1,)

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        keep = bool(int(attrs.get("keepdims", 1)))
        if ctx.opset < 18:
            axes = ints(attrs.get("axes")) if attrs.get("axes") is not None else []
        else:
            axes = ints(inputs[1]) if len(inputs) > 1 and inputs[1] is not None else []
            if not axes and int(attrs.get("noop_with_empty_axes", 0)):
                return [x]
        dims = tuple(sorted({norm_axis(a, x.dim(), "ReduceMean") for a in axes})) if axes else tuple(range(x.dim()))
        if not dims:
            return [x]
        return [x.mean(dim=dims, keepdim=keep)]
