"""Gemm (alpha, beta, transA, transB, optional C) and MatMul."""
from __future__ import annotations

import torch

from ..kernel import TorchKernel


class Gemm(TorchKernel):
    op_type = "Gemm"

    def forward(self, ctx, inputs, attrs):
        a, b = inputs[0], inputs[1]
        c = inputs[2] if len(inputs) > 2 else None
        alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
        if int(attrs.get("transA", 0)):
            a = a.t()
        if int(attrs.get("transB", 0)):
            b = b.t()
        if c is None or beta == 0.0:
            y = a @ b
            return [y if alpha == 1.0 else y * alpha]
        return [torch.addmm(c, a, b, beta=beta, alpha=alpha)]


class MatMul(TorchKernel):
    op_type = "MatMul"

    def forward(self, ctx, inputs, attrs):
        return [torch.matmul(inputs[0], inputs[1])]
