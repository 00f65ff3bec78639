"""x * s with s one factor per (sample, channel) or per channel, shapes (N, C, H, W) and
(N or 1, C, 1, 1): squeeze-excitation and attention gates. Runs on channel-major rows (C, N,
H*W) in cache-sized channel blocks on the kernel threads; the backward gives the factor's
gradient as one dot product per row (np.vecdot, no full-size temporary), then sums the samples
for a per-channel factor."""
from __future__ import annotations

import numpy as np

from .. import buffers, parallel
from ._util import cm, row_blocks


def scale_operands(a, b):
    """(x, s, index of x) when a * b is such a scaling of channel-major x, else None."""
    for x, s, i in ((a, b, 0), (b, a, 1)):
        if (isinstance(x, np.ndarray) and isinstance(s, np.ndarray) and x.ndim == 4 and s.ndim == 4
                and x.dtype == s.dtype and np.issubdtype(x.dtype, np.floating)
                and s.shape[1] == x.shape[1] and s.shape[0] in (1, x.shape[0]) and s.shape[2:] == (1, 1)
                and cm(x).flags.c_contiguous and x.shape[2] * x.shape[3] > 1):
            return x, s, i
    return None


def _factors(s, n):
    """(C, N, 1) factors of s (N or 1, C, 1, 1)."""
    f = s.reshape(s.shape[0], s.shape[1]).T
    return np.broadcast_to(f[:, :, None], (f.shape[0], n, 1)) if f.shape[1] != n else f[:, :, None]


def scale_forward(x, s):
    n, c, h, w = x.shape
    rows = cm(x).reshape(c, n, h * w)
    f = _factors(s, n)
    y = buffers.empty((c, n, h * w), x.dtype)
    parallel.run(lambda r: np.multiply(rows[r[0]:r[1]], f[r[0]:r[1]], out=y[r[0]:r[1]]),
                 row_blocks(c, n * h * w))
    return cm(y.reshape(c, n, h, w))


def scale_backward(x, s, dy, need_x: bool, need_s: bool):
    """(dx or None, ds or None)."""
    n, c, h, w = x.shape
    rows = cm(x).reshape(c, n, h * w)
    g = np.ascontiguousarray(cm(dy)).reshape(c, n, h * w)
    f = _factors(s, n)
    dx = buffers.empty((c, n, h * w), x.dtype) if need_x else None
    dots = np.empty((c, n), dtype=x.dtype) if need_s else None

    def block(r):
        a, z = r
        if need_x:
            np.multiply(g[a:z], f[a:z], out=dx[a:z])
        if need_s:
            dots[a:z] = np.vecdot(g[a:z], rows[a:z])

    parallel.run(block, row_blocks(c, n * h * w))
    ds = None
    if need_s:
        ds = dots.T if s.shape[0] == n else dots.sum(axis=1)[None, :]
        ds = np.ascontiguousarray(ds).reshape(s.shape)
    return (cm(dx.reshape(c, n, h, w)) if need_x else None), ds
