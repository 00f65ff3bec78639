"""groups == 1 Conv forward for few output channels as GEMM-then-shift ("kn2row") on the phase
grid (.phases) instead of im2col-then-GEMM.

im2col copies the input kh*kw times and multiplies it by an O-row weight matrix: with few
output channels that GEMM is thin (O rows, C*kh*kw deep), which OpenBLAS runs at a fraction of
its speed, and the copies cost more than the products. Here each phase plane of the input (no
copies of it) is multiplied once by the stacked weights of that phase's taps, a GEMM of
taps*O rows and C deep, giving every tap's contribution at every grid position; the output is
then the sum of those contributions, each shifted by its tap's flat offset (one contiguous add
of O rows per tap). Work is split into sample chunks (shapes only: the same bits for any
thread count), each chunk's products staying in cache.
"""
from __future__ import annotations

import numpy as np

from ... import buffers, parallel
from .._util import relu_, scratch
from .geometry import Geom
from .phases import phase_grid

BELOW = 32  # output channels below which kn2row is used, where the input has at least
RATIO = 2  # this many times as many channels (measured: 2-2.5x faster at 48->12 and 96->12,
# 1.7x at 32->16, no gain or a loss at C == O, where im2col's GEMM is no thinner than these)
CHUNK_BYTES = 4 << 20  # products (taps*O rows) of one sample chunk
MIN_CHUNKS = 4  # chunks to share out where there are that many samples


def applies(x_shape, w_shape, g: Geom) -> bool:
    """Whether the forward of this groups == 1 Conv goes through kn2row."""
    o, c = w_shape[:2]
    return ENABLED and o < BELOW and c >= RATIO * o and g.k[0] * g.k[1] > 1


ENABLED = True


def _chunks(n: int, per_sample: int):
    step = max(1, min(n, CHUNK_BYTES // max(1, per_sample)))
    if n >= MIN_CHUNKS:
        step = min(step, -(-n // MIN_CHUNKS))
    return [(a, min(n, a + step)) for a in range(0, n, step)]


def kn2row_forward(xc: np.ndarray, w: np.ndarray, b, g: Geom, relu: bool = False) -> np.ndarray:
    """Channel-major x (C, N, H, W) -> C-contiguous channel-major y (O, N, ho, wo) (+ bias, ReLU)."""
    c, n, h, wd = xc.shape
    o = w.shape[0]
    dt = xc.dtype
    grid = phase_grid((n, c, h, wd), g)
    nph = len(grid.phases)
    kk = len(grid.taps)
    wt = w.reshape(o, c, kk).astype(dt, copy=False)
    # per phase: its taps (index t, flat shift) and their stacked weights (taps*O, C)
    phase_taps = [[(t, off) for t, (k, off) in enumerate(grid.taps) if k == p] for p in range(nph)]
    stacked = [np.ascontiguousarray(wt[:, :, [t for t, _ in taps]].transpose(2, 0, 1)).reshape(-1, c)
               for taps in phase_taps]
    bias = None if b is None else b.astype(dt, copy=False).reshape(o, 1)
    y = buffers.empty((o, n, grid.ho, grid.wo), dt)
    most = max(len(t) for t in phase_taps)

    def chunk(r):
        n0, n1 = r
        nb = n1 - n0
        size = nb * grid.plane
        valid = grid.valid(nb)
        planes = scratch("k2r_planes", (nph, c, nb, grid.hh, grid.wh), dt)
        grid.fill_planes(xc[:, n0:n1], planes)
        flat = planes.reshape(nph, c, size)
        prod = scratch("k2r_prod", (most * o, size), dt)
        acc = scratch("k2r_acc", (o, size), dt)
        first = True
        for p, taps in enumerate(phase_taps):
            z = prod[:len(taps) * o]
            np.matmul(stacked[p], flat[p], out=z)
            for i, (_, off) in enumerate(taps):
                src = z[i * o:(i + 1) * o, off:off + valid]
                if first:
                    np.copyto(acc[:, :valid], src)
                    first = False
                else:
                    np.add(acc[:, :valid], src, out=acc[:, :valid])
        out = y[:, n0:n1]
        np.copyto(out, acc.reshape(o, nb, grid.hh, grid.wh)[:, :, :grid.ho, :grid.wo])
        if bias is not None:
            out += bias.reshape(o, 1, 1, 1)
        if relu:
            relu_(out, out)

    per_sample = (most * o + o + nph * c) * grid.plane * dt.itemsize
    parallel.run(chunk, _chunks(n, per_sample))
    return y
