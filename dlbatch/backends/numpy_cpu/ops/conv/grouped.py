"""Grouped Conv with few groups as one groups == 1 convolution per group (.gemm): in the
channel-major layout a group's input, output and gradient channels are contiguous slices, so
each group runs the chunked, threaded GEMM plans of an ordinary convolution (stride-1 backward
from shared columns of dy, per-chunk partial dW) and writes straight into its slice of the
result. The forward runs every group's chunks in one parallel region."""
from __future__ import annotations

import numpy as np

from ... import buffers
from .._util import cm
from .gemm import conv_backward, forward_tasks, run_tasks

GROUP_LOOP_MAX = 16  # more groups (each a tiny GEMM) use the batched GEMM of .convolution


def grouped_forward(xc, w, b, g, groups: int) -> np.ndarray:
    """Channel-major x (C, N, H, W) -> channel-major y (O, N, ho, wo)."""
    c, n = xc.shape[:2]
    o = w.shape[0]
    cg, og = c // groups, o // groups
    y = buffers.empty((o, n) + tuple(g.out), xc.dtype)
    tasks = []
    for k in range(groups):
        ci, oi = slice(k * cg, (k + 1) * cg), slice(k * og, (k + 1) * og)
        bg = None if b is None else b[oi]
        tasks += forward_tasks(cm(xc[ci]), w[oi], bg, g, out=y[oi])[1]
    run_tasks(tasks)
    return y


def grouped_backward(xc, w, dyc, g, groups: int, need_x: bool, need_w: bool):
    """(dx channel-major (C, N, H, W) or None, dW or None) from C-contiguous dy (O, N, ho, wo)."""
    c, n = xc.shape[:2]
    o = w.shape[0]
    cg, og = c // groups, o // groups
    dx = buffers.empty(xc.shape, xc.dtype) if need_x else None
    dw = np.empty(w.shape, dtype=w.dtype) if need_w else None
    for k in range(groups):
        ci, oi = slice(k * cg, (k + 1) * cg), slice(k * og, (k + 1) * og)
        _, dwg = conv_backward(cm(xc[ci]), w[oi], cm(dyc[oi]), g, need_x, need_w,
                               dx_out=dx[ci] if need_x else None)
        if need_w:
            dw[oi] = dwg
    return dx, dw
