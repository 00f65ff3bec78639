"""Helpers shared by the numpy kernels: errors, layout tricks and broadcast-gradient reduction.
Sums are always taken along a contiguous last axis, where numpy uses pairwise summation
(accurate in float32) and runs fastest. What attributes mean (pads, output sizes, operands that
moved to inputs) is not here but in ....core.onnx_attributes, shared with the other backends."""
from __future__ import annotations

import threading

import numpy as np

from ....core.errors import DLPluginError


def unsupported(op: str, what: str, value, supported: str) -> DLPluginError:
    return DLPluginError(f"{op}: {what}={value!r} is not supported by the numpy backend; "
                         f"supported: {supported}")


def needs(ctx, i: int) -> bool:
    """Whether input i needs a gradient (an empty needs_input_grad means all do)."""
    n = ctx.needs_input_grad
    return True if not n or i >= len(n) else bool(n[i])


def is_float(a) -> bool:
    return a is not None and np.issubdtype(np.asarray(a).dtype, np.floating)


def cm(x: np.ndarray) -> np.ndarray:
    """(N, C, ...) -> channel-major view (C, N, ...); free when memory is channel-major."""
    return x.swapaxes(0, 1)


def cm_rows(x: np.ndarray) -> np.ndarray:
    """(N, C, ...) -> (C, N*prod(...)) rows, one contiguous row per channel (copies only when
    the memory is not channel-major)."""
    return np.ascontiguousarray(cm(x)).reshape(x.shape[1], -1)


def channel_sum(x: np.ndarray) -> np.ndarray:
    """Per-channel sum of an (N, C, ...) array, pairwise along contiguous axes."""
    n, c = x.shape[0], x.shape[1]
    xc = cm(x)
    if xc.flags.c_contiguous or not x.flags.c_contiguous:
        return cm_rows(x).sum(axis=1)
    return x.reshape(n, c, -1).sum(axis=2).sum(axis=0)


def unbroadcast(g: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum a broadcast gradient back to `shape` (numpy broadcasting rules)."""
    shape = tuple(shape)
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    full = (1,) * lead + shape
    # the common bias-like case: (N, C, ...) reduced to C along axis 1
    if g.ndim >= 3 and full[1] == g.shape[1] and all(s == 1 for i, s in enumerate(full) if i != 1):
        return channel_sum(g).reshape(shape)
    axes = tuple(i for i, s in enumerate(full) if s == 1 and g.shape[i] != 1)
    out = g.sum(axis=axes, keepdims=True) if axes else g
    return out.reshape(shape)


def check_4d(op: str, x: np.ndarray):
    if x.ndim != 4:
        raise DLPluginError(f"{op}: the numpy backend supports 2-D spatial inputs (N, C, H, W) only; "
                            f"got an input of rank {x.ndim} with shape {x.shape}")


def tap(xp: np.ndarray, i: int, j: int, d, s, ho: int, wo: int) -> np.ndarray:
    """The (C, N, ho, wo) view of padded channel-major `xp` seen by kernel tap (i, j)."""
    h0, w0 = i * d[0], j * d[1]
    return xp[:, :, h0:h0 + s[0] * (ho - 1) + 1:s[0], w0:w0 + s[1] * (wo - 1) + 1:s[1]]


def tap_range(n_out: int, n_in: int, t: int, s: int, d: int, pb: int):
    """Outputs [lo, hi) whose tap-t input index o*s + t*d - pb lies inside [0, n_in)."""
    off = t * d - pb
    lo = max(0, -(off // s))
    hi = min(n_out, (n_in - 1 - off) // s + 1) if n_in - 1 - off >= 0 else 0
    return lo, max(lo, hi), off


def pad_cm(xc: np.ndarray, pb, pe, hp: int, wp: int, value=0.0) -> np.ndarray:
    """Channel-major (C, N, H, W) -> padded (C, N, hp, wp); hp/wp may exceed H+pads (ceil_mode)."""
    c, n, h, w = xc.shape
    if pb[0] == pb[1] == 0 and hp == h and wp == w:
        return xc
    out = np.empty((c, n, hp, wp), dtype=xc.dtype)
    if value == 0.0:
        out.fill(0)
    else:
        out.fill(value)
    out[:, :, pb[0]:pb[0] + h, pb[1]:pb[1] + w] = xc
    return out


TASK_ELEMS = 1 << 16  # elements per parallel task of the row-wise (per-channel) kernels


def row_blocks(rows: int, per_row: int, min_blocks: int = 4):
    """Ranges of rows (channels) of about TASK_ELEMS elements each, for parallel.run: small
    enough to stay in cache through a kernel's passes, and at least `min_blocks` where there
    are that many rows (one range for arrays too small to split). Depends on the shape only."""
    if rows * per_row < 2 * TASK_ELEMS:
        return [(0, rows)]  # too small to be worth a parallel region
    step = max(1, min(TASK_ELEMS // max(1, per_row), -(-rows // min_blocks)))
    return [(a, min(rows, a + step)) for a in range(0, rows, step)]


FLAT_TASK_ELEMS = 1 << 17  # elements per parallel task of the elementwise kernels


def flat_views(*arrays):
    """1-D views, in memory order, of equally shaped arrays that share one memory layout
    (e.g. all channel-major), or None. Elementwise work on them then splits into flat ranges."""
    a0 = arrays[0]
    axes = sorted(range(a0.ndim), key=lambda i: -a0.strides[i])
    out = []
    for a in arrays:
        if a.shape != a0.shape or a.dtype != a0.dtype:
            return None
        t = a.transpose(axes)
        if not t.flags.c_contiguous:
            return None
        out.append(t.reshape(-1))
    return out


def flat_ranges(size: int):
    step = FLAT_TASK_ELEMS
    return [(a, min(size, a + step)) for a in range(0, size, step)]


def parallel_ew(fn, out, *ins) -> bool:
    """fn(out_part, *in_parts) over flat ranges on the kernel threads, when `out` and `ins`
    share one contiguous layout and are big enough to split; False when it did nothing."""
    if out.size < 2 * FLAT_TASK_ELEMS:
        return False
    views = flat_views(out, *ins)
    if views is None:
        return False
    from .. import parallel
    o, rest = views[0], views[1:]
    parallel.run(lambda r: fn(o[r[0]:r[1]], *(v[r[0]:r[1]] for v in rest)), flat_ranges(o.size))
    return True



_zeros: dict = {}


def zeros_like_block(a: np.ndarray) -> np.ndarray:
    """A read-only zero array shaped like `a` (shared). np.maximum(a, zeros) runs several
    times faster than np.maximum(a, 0): numpy's scalar-operand path for it is not vectorised."""
    key = a.dtype.char
    z = _zeros.get(key)
    if z is None or z.size < a.size:
        z = np.zeros(max(a.size, FLAT_TASK_ELEMS), dtype=a.dtype)
        z.flags.writeable = False
        _zeros[key] = z
    return z[:a.size].reshape(a.shape)


def relu_(a: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = max(a, 0) (out may be a)."""
    return np.maximum(a, zeros_like_block(a), out=out)


_scratch = threading.local()


def scratch(slot: str, shape, dtype) -> np.ndarray:
    """A per-thread reusable buffer (uninitialised) for temporaries of parallel tasks: memory
    allocated inside worker threads costs page faults that serialise the threads on the kernel's
    memory-map lock, so tasks take their temporaries from here instead."""
    bufs = getattr(_scratch, "bufs", None)
    if bufs is None:
        bufs = _scratch.bufs = {}
    dtype = np.dtype(dtype)
    size = 1
    for v in shape:
        size *= int(v)
    key = (slot, dtype.char)
    buf = bufs.get(key)
    if buf is None or buf.size < size:
        buf = bufs[key] = np.empty(max(size, 1), dtype=dtype)
    return buf[:size].reshape(shape)
