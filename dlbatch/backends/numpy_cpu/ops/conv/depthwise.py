"""Depthwise Conv (groups == C == O, one filter per channel) as per-tap multiply-adds over long
contiguous rows, run on the kernel threads over channel blocks that stay in cache.

The input is split into phase planes (.phases: space-to-depth for strides), where every tap is
one flat shift of a channel's row of planes, so every numpy call runs over a long contiguous
row instead of W-element pieces with strided reads.

Forward: y = sum_t w_t * shift_t(P). Backward: dW_t = <dy on the grid, shift_t(P)> per
channel; the phase-plane gradient gathers dy shifted the other way, then returns to the input's
pixels. The channel blocks depend on the shapes only (bit-identical for any thread count).
"""
from __future__ import annotations

import numpy as np

from ... import buffers, parallel
from .._util import scratch
from .geometry import Geom
from .phases import PhaseGrid, phase_grid

BLOCK_ELEMS = 1 << 16  # grid elements per channel block (all its buffers: a few times this)
MIN_BLOCKS = 4  # blocks to share out among the threads where there are that many channels


def channel_blocks(grid: PhaseGrid, c: int):
    """Channel ranges of about BLOCK_ELEMS grid elements per buffer, at least MIN_BLOCKS where
    there are that many channels (depends on the shapes only)."""
    per_channel = grid.n * grid.plane * (len(grid.phases) + 2)
    step = max(1, min(c, (BLOCK_ELEMS * 4) // max(1, per_channel)))
    if c >= MIN_BLOCKS:
        step = min(step, -(-c // MIN_BLOCKS))
    return [(a, min(c, a + step)) for a in range(0, c, step)]


def depthwise_forward(xc: np.ndarray, w: np.ndarray, g: Geom) -> np.ndarray:
    """Channel-major x (C, N, H, W), weights (C, 1, kh, kw) -> y (C, N, ho, wo), C-contiguous."""
    c, n = xc.shape[:2]
    lay = phase_grid((n, c) + tuple(xc.shape[2:]), g)
    dt = xc.dtype
    wt = w.reshape(c, -1).astype(dt, copy=False)
    y = buffers.empty((c, n, lay.ho, lay.wo), dt)
    nph, grid, valid = len(lay.phases), n * lay.plane, lay.valid(n)

    def block(r):
        a, z = r
        b = z - a
        planes = scratch("dwc_planes", (nph, b, n, lay.hh, lay.wh), dt)
        lay.fill_planes(xc[a:z], planes)
        flat = planes.reshape(nph, b, grid)
        acc = scratch("dwc_acc", (b, grid), dt)
        tmp = scratch("dwc_tmp", (b, valid), dt)
        for t, (k, off) in enumerate(lay.taps):
            src = flat[k, :, off:off + valid]
            wcol = wt[a:z, t:t + 1]
            if t == 0:
                np.multiply(src, wcol, out=acc[:, :valid])
            else:
                np.multiply(src, wcol, out=tmp)
                acc[:, :valid] += tmp
        y[a:z] = acc.reshape(b, n, lay.hh, lay.wh)[:, :, :lay.ho, :lay.wo]

    parallel.run(block, channel_blocks(lay, c))
    return y


def depthwise_backward(xc: np.ndarray, w: np.ndarray, dyc: np.ndarray, g: Geom, need_x: bool,
                       need_w: bool):
    """(dx channel-major (C, N, H, W) or None, dW (C, 1, kh, kw) or None)."""
    c, n, h, wd = xc.shape
    lay = phase_grid((n, c, h, wd), g)
    dt = xc.dtype
    wt = w.reshape(c, -1).astype(dt, copy=False)
    ntaps = wt.shape[1]
    dx = buffers.empty((c, n, h, wd), dt) if need_x else None
    dwt = np.empty((c, ntaps), dtype=dt) if need_w else None
    nph, grid, valid, m = len(lay.phases), n * lay.plane, lay.valid(n), lay.maxoff

    def block(r):
        a, z = r
        b = z - a
        # dy on the plane grid, zero beyond the outputs, after m zeros (the gather's margin)
        dyg = scratch("dwc_dy", (b, m + grid), dt)
        dyg[:, :m] = 0
        lay.to_grid(dyc[a:z], dyg[:, m:].reshape(b, n, lay.hh, lay.wh))
        dyv = dyg[:, m:m + valid]
        if need_w:
            planes = scratch("dwc_planes", (nph, b, n, lay.hh, lay.wh), dt)
            lay.fill_planes(xc[a:z], planes)
            flat = planes.reshape(nph, b, grid)
            for t, (k, off) in enumerate(lay.taps):
                dwt[a:z, t] = np.vecdot(dyv, flat[k, :, off:off + valid])
        if need_x:
            dplanes = scratch("dwc_dplanes", (nph, b, grid), dt)
            tmp = scratch("dwc_tmp", (b, grid), dt)
            started = [False] * nph
            for t, (k, off) in enumerate(lay.taps):
                # dP_k[q] += w_t * dy[q - off]: dy shifted right by off (zeros before it)
                src = dyg[:, m - off:m - off + grid]
                wcol = wt[a:z, t:t + 1]
                if not started[k]:
                    np.multiply(src, wcol, out=dplanes[k])
                    started[k] = True
                else:
                    np.multiply(src, wcol, out=tmp)
                    dplanes[k] += tmp
            lay.planes_to_input(dplanes.reshape(nph, b, n, lay.hh, lay.wh), dx[a:z])

    parallel.run(block, channel_blocks(lay, c))
    dw = dwt.astype(w.dtype, copy=False).reshape(w.shape) if need_w else None
    return dx, dw
