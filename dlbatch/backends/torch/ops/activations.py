"""Pointwise activations: Relu, LeakyRelu, Clip, Sigmoid, Tanh, HardSigmoid, HardSwish."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ....core.onnx_attributes import clip_bounds
from ..kernel import TorchKernel


class Relu(TorchKernel):
    op_type = "Relu"

    def forward(self, ctx, inputs, attrs):
        return [torch.relu(inputs[0])]


class LeakyRelu(TorchKernel):
    op_type = "LeakyRelu"

    def forward(self, ctx, inputs, attrs):
        return [F.leaky_relu(inputs[0], float(attrs.get("alpha", 0.01)))]


class Clip(TorchKernel):
    """opset < 11: `min`/`max` attributes; from 11 on: optional inputs 1 and 2.

    Constant bounds (the usual ReLU6) run as `torch.clamp` with Python-number bounds and a
    one-pass backward (`_ClampConst`): torch's clamp with tensor bounds costs a where/ge/le/
    logical_and chain in backward, about 4 passes over the activation. Bounds that need a
    gradient keep torch's tensor clamp."""

    op_type = "Clip"
    host_inputs = (1, 2)

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        lo, hi = clip_bounds(ctx.opset, attrs, inputs)
        if lo is None and hi is None:
            return [x]
        if x.dtype in _FAST_CLIP and not any(torch.is_tensor(v) and v.requires_grad for v in (lo, hi)):
            lo, hi = (None if v is None else float(v.reshape(()) if torch.is_tensor(v) else v) for v in (lo, hi))
            if x.requires_grad:
                return [_ClampConst.apply(x, lo, hi)]
            return [torch.clamp(x, lo, hi)]
        lo, hi = (v.reshape(()) if torch.is_tensor(v) else v for v in (lo, hi))
        return [torch.clamp(x, lo, hi)]


_FAST_CLIP = (torch.float32, torch.float64)


def _next_float(value, toward, dtype) -> float:
    """The float of `dtype` next to `value` in the direction of `toward`, as a Python float."""
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    return float(np.nextafter(np_dtype(value), np_dtype(toward)))


class _ClampConst(torch.autograd.Function):
    """clamp(x, lo, hi) with number bounds; backward passes the gradient where lo <= x <= hi
    (the numpy backend's and torch clamp's rule) in one pass: hardtanh_backward zeroes where
    x <= min or x >= max, so it gets the neighbouring floats outside [lo, hi]."""

    @staticmethod
    def forward(fctx, x, lo, hi):
        fctx.save_for_backward(x)
        fctx.bounds = (-math.inf if lo is None else _next_float(lo, -math.inf, x.dtype),
                       math.inf if hi is None else _next_float(hi, math.inf, x.dtype))
        return torch.clamp(x, lo, hi)

    @staticmethod
    def backward(fctx, g):
        x, = fctx.saved_tensors
        return torch.ops.aten.hardtanh_backward(g, x, *fctx.bounds), None, None


class Sigmoid(TorchKernel):
    op_type = "Sigmoid"

    def forward(self, ctx, inputs, attrs):
        return [torch.sigmoid(inputs[0])]


class Tanh(TorchKernel):
    op_type = "Tanh"

    def forward(self, ctx, inputs, attrs):
        return [torch.tanh(inputs[0])]


class HardSigmoid(TorchKernel):
    """max(0, min(1, alpha * x + beta)), alpha 0.2 and beta 0.5 by default (ONNX, not torch's
    1/6 and 1/2)."""

    op_type = "HardSigmoid"

    def forward(self, ctx, inputs, attrs):
        alpha, beta = float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5))
        return [torch.clamp(inputs[0] * alpha + beta, 0.0, 1.0)]


class HardSwish(TorchKernel):
    op_type = "HardSwish"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        if x.dtype == torch.float64:  # CUDA's hardswish kernel loses float64 precision (~3e-8 relative)
            return [x * torch.clamp(x + 3.0, 0.0, 6.0) / 6.0]
        return [F.hardswish(x)]
