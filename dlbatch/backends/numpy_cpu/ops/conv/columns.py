"""Column matrices: im2col/col2im over whole (padded) inputs, one slice copy per kernel tap, and
2-D row views of channel-major blocks that GEMMs can write into."""
from __future__ import annotations

import numpy as np

from .._util import scratch, tap


def im2col(xp, kh, kw, d, s, ho, wo):
    """(C, n, Hp, Wp) -> (C, kh, kw, n, ho, wo), one slice copy per tap."""
    c, n = xp.shape[:2]
    cols = np.empty((c, kh, kw, n, ho, wo), dtype=xp.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, i, j] = tap(xp, i, j, d, s, ho, wo)
    return cols


def col2im_add(dst, cols, kh, kw, d, s, ho, wo):
    """Inverse of im2col: add each tap's (C, n, ho, wo) block into padded `dst`."""
    for i in range(kh):
        for j in range(kw):
            tap(dst, i, j, d, s, ho, wo)[...] += cols[:, i, j]


def scratch_buffer(slot: int, size: int, dtype) -> np.ndarray:
    """Per-thread chunk-sized buffers (0: columns, 1: column gradients): they stay in cache
    and cost no page faults."""
    return scratch(f"conv{slot}", (size,), dtype)


def rows2d(a: np.ndarray) -> np.ndarray:
    """(R, ...) view -> (R, prod(...)) view; raises rather than copy."""
    v = a.view()
    v.shape = (a.shape[0], -1)
    return v


def rows2d_or_copy(a: np.ndarray, scratch_slot: str) -> np.ndarray:
    """rows2d(a), or where memory does not allow that view, a copy in per-thread scratch."""
    try:
        return rows2d(a)
    except AttributeError:
        buf = scratch(scratch_slot, a.shape, a.dtype)
        np.copyto(buf, a)
        return buf.reshape(a.shape[0], -1)
