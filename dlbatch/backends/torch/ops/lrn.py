"""LRN (AlexNet local response normalization across channels):
y = x / (bias + alpha / size * sum over channels c - floor((size-1)/2) .. c + ceil((size-1)/2) of x^2)^beta."""
from __future__ import annotations

import torch.nn.functional as F

from ....core.onnx_attributes import lrn_window
from ..kernel import TorchKernel
from ._util import unsupported


class LRN(TorchKernel):
    op_type = "LRN"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        if x.dim() < 3:
            raise unsupported("LRN", f"a rank-{x.dim()} input", "rank >= 3 (N, C, spatial...)")
        size, alpha, beta, bias, front, back = lrn_window(attrs)
        n, c = x.shape[0], x.shape[1]
        sq = (x * x).reshape(n, 1, c, -1)
        sq = F.pad(sq, (0, 0, front, back))
        avg = F.avg_pool2d(sq, (size, 1), stride=1).reshape(x.shape)  # window sum / size
        return [x / (avg * alpha + bias) ** beta]
