"""MaxPool, AveragePool (count_include_pad, ceil_mode, dilations, asymmetric pads, auto_pad)
and GlobalAveragePool."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ....core.onnx_attributes import effective_kernel, pool_kernel_shape, sliding_windows, spatial_ints
from ..kernel import TorchKernel
from ._util import torch_pads, unsupported

_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _geometry(op, x, attrs):
    n = x.dim() - 2
    if n not in _MAX:
        raise unsupported(op, f"a rank-{x.dim()} input", "rank 3, 4 or 5 (N, C, 1 to 3 spatial axes)")
    kernel = tuple(pool_kernel_shape(op, attrs))
    if len(kernel) != n:
        raise unsupported(op, f"kernel_shape={list(kernel)} for {n} spatial axes", "one size per spatial axis")
    strides = tuple(spatial_ints(op, attrs, "strides", n, 1))
    dilations = tuple(spatial_ints(op, attrs, "dilations", n, 1))
    ceil_mode = bool(int(attrs.get("ceil_mode", 0)))
    begins, ends, outs = sliding_windows(op, attrs, x.shape[2:], kernel, strides, dilations, ceil_mode)
    k_eff = [effective_kernel(k, d) for k, d in zip(kernel, dilations)]
    # extra room at the end so that every output window lies inside the padded input
    extra = [max(0, (o - 1) * s + ke - (size + b + e))
             for o, s, ke, size, b, e in zip(outs, strides, k_eff, x.shape[2:], begins, ends)]
    return n, kernel, strides, dilations, ceil_mode, begins, ends, outs, extra


def _torch_can_pad(kernel, begins, ends, dilations) -> bool:
    """torch pools pad symmetrically, at most half the (dilated) kernel."""
    return begins == ends and all(p <= ((k - 1) * d + 1) // 2 for p, k, d in zip(begins, kernel, dilations))


class MaxPool(TorchKernel):
    op_type = "MaxPool"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        if ctx.num_outputs > 1:
            raise unsupported("MaxPool", "the Indices output", "the first output (Y) only")
        if int(attrs.get("storage_order", 0)) != 0:
            raise unsupported("MaxPool", "storage_order=1", "storage_order=0")
        n, kernel, strides, dilations, ceil_mode, begins, ends, outs, extra = _geometry("MaxPool", x, attrs)
        if _torch_can_pad(kernel, begins, ends, dilations):
            return [_MAX[n](x, kernel, strides, tuple(begins), dilations, ceil_mode)]
        ends = [e + x_ for e, x_ in zip(ends, extra)]
        x = F.pad(x, torch_pads(begins, ends), value=float("-inf"))
        return [_MAX[n](x, kernel, strides, 0, dilations, False)]


class AveragePool(TorchKernel):
    op_type = "AveragePool"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        include = bool(int(attrs.get("count_include_pad", 0)))
        n, kernel, strides, dilations, ceil_mode, begins, ends, outs, extra = _geometry("AveragePool", x, attrs)
        if all(d == 1 for d in dilations) and _torch_can_pad(kernel, begins, ends, dilations) and (
                not ceil_mode or not include):
            # torch's own kernel agrees with ONNX here (in ceil mode with count_include_pad torch
            # would also count the overhang past the padding, ONNX does not)
            return [_AVG[n](x, kernel, strides, tuple(begins), ceil_mode, include)]
        # general case: a window sum (depthwise conv with ones) divided by the number of counted
        # elements (the same conv over a mask of the counted region)
        c = x.shape[1]
        total_ends = [e + x_ for e, x_ in zip(ends, extra)]
        xp = F.pad(x, torch_pads(begins, total_ends))
        ones = torch.ones((c, 1) + kernel, dtype=x.dtype, device=x.device)
        sums = _CONV[n](xp, ones, None, strides, 0, dilations, c)
        mask = torch.ones((1, 1) + tuple(x.shape[2:]), dtype=x.dtype, device=x.device)
        if include:
            mask = F.pad(mask, torch_pads(begins, ends), value=1.0)
            mask = F.pad(mask, torch_pads([0] * n, extra))
        else:
            mask = F.pad(mask, torch_pads(begins, total_ends))
        counts = _CONV[n](mask, torch.ones((1, 1) + kernel, dtype=x.dtype, device=x.device), None,
                          strides, 0, dilations)
        return [sums / counts]


class GlobalAveragePool(TorchKernel):
    op_type = "GlobalAveragePool"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        return [x.mean(dim=tuple(range(2, x.dim())), keepdim=True)]
