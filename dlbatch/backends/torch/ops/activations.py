"""Pointwise activations: Relu, LeakyRelu, Clip, Sigmoid, Tanh, HardSigmoid, HardSwish."""
from __future__ import annotations

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
    """opset < 11: `min`/`max` attributes; from 11 on: optional inputs 1 and 2."""

    op_type = "Clip"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        lo, hi = (v.reshape(()) if torch.is_tensor(v) else v for v in clip_bounds(ctx.opset, attrs, inputs))
        if lo is None and hi is None:
            return [x]
        return [torch.clamp(x, lo, hi)]


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
