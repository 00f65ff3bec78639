"""Gemm and MatMul: BLAS products forward and backward; broadcast inputs get their gradient
summed back to their own shape."""
from __future__ import annotations

import numpy as np

from ..kernel import NumpyKernel
from ._util import is_float, needs, unbroadcast


class Gemm(NumpyKernel):
    """Y = alpha * A' @ B' + beta * C with A' = A.T if transA, B' = B.T if transB."""

    op_type = "Gemm"

    def forward(self, ctx, inputs, attrs):
        a, b = inputs[0], inputs[1]
        c = inputs[2] if len(inputs) > 2 else None
        alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
        ta, tb = int(attrs.get("transA", 0)), int(attrs.get("transB", 0))
        t = a.dtype.type
        y = (a.T if ta else a) @ (b.T if tb else b)
        if alpha != 1.0:
            y *= t(alpha)
        if c is not None and beta != 0.0:
            y += c * t(beta) if beta != 1.0 else c
        return [y], (a, b, None if c is None else c.shape)

    def backward(self, ctx, saved, grads, attrs):
        a, b, cshape = saved
        dy = grads[0]
        alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
        ta, tb = int(attrs.get("transA", 0)), int(attrs.get("transB", 0))
        t = dy.dtype.type
        g = dy * t(alpha) if alpha != 1.0 else dy
        bb = b.T if tb else b  # B' (K, N)
        aa = a.T if ta else a  # A' (M, K)
        da = db = dc = None
        if needs(ctx, 0):
            da = (bb @ g.T) if ta else (g @ bb.T)  # dA' = g @ B'.T
        if needs(ctx, 1):
            db = (g.T @ aa) if tb else (aa.T @ g)  # dB' = A'.T @ g
        out = [da, db]
        if cshape is not None:
            if needs(ctx, 2) and beta != 0.0:
                dc = unbroadcast(dy, cshape)
                if beta != 1.0:
                    dc = dc * t(beta)
            out.append(dc)
        return out


def _matmul_grads(a, b, dy, need_a, need_b):
    """Gradients of a @ b (numpy semantics incl. 1-D promotion and batch broadcasting)."""
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    g = dy
    if a.ndim == 1:
        g = np.expand_dims(g, -2)
    if b.ndim == 1:
        g = np.expand_dims(g, -1)
    da = db = None
    if need_a:
        da = unbroadcast(g @ np.swapaxes(b2, -1, -2), a2.shape).reshape(a.shape)
    if need_b:
        db = unbroadcast(np.swapaxes(a2, -1, -2) @ g, b2.shape).reshape(b.shape)
    return da, db


class MatMul(NumpyKernel):
    op_type = "MatMul"

    def forward(self, ctx, inputs, attrs):
        a, b = inputs
        return [np.matmul(a, b)], (a, b)

    def backward(self, ctx, saved, grads, attrs):
        a, b = saved
        da, db = _matmul_grads(a, b, grads[0], needs(ctx, 0) and is_float(a), needs(ctx, 1) and is_float(b))
        return [da, db]
