"""Depthwise Conv (groups == C == O, one filter per channel) as per-tap multiply-adds over long
contiguous rows, run on the kernel threads over channel blocks that stay in cache.

A stride-s convolution reads, for tap (i, j), the padded input at (r*s0 + i*d0, c*s1 + j*d1).
Splitting the padded input once into s0*s1 phase planes P[p0, p1][a, b] = xp[a*s0 + p0,
b*s1 + p1] (space-to-depth) turns every tap into a plain shift of one phase plane: with
i*d0 = q0*s0 + p0 it reads P[p0, p1][r + q0, c + q1]. Each channel's planes of all samples are
one flat row of N*Hh*Wh elements, so the tap is the row shifted by q0*Wh + q1: the output is
computed on the plane grid (the columns and rows beyond the output are discarded), and every
numpy call runs over a long contiguous row instead of W-element pieces with strided reads.

Forward: y = sum_t w_t * shift_t(P). Backward: dW_t = <dy on the grid, shift_t(P)> per
channel; the phase-plane gradient gathers dy shifted the other way, then returns to the input's
pixels. The channel blocks depend on the shapes only (bit-identical for any thread count).
"""
from __future__ import annotations

import numpy as np

from ... import buffers, parallel
from .._util import scratch
from .geometry import Geom

BLOCK_ELEMS = 1 << 16  # grid elements per channel block (all its buffers: a few times this)
MIN_BLOCKS = 4  # blocks to share out among the threads where there are that many channels


class _Layout:
    """Phase planes and tap shifts of one depthwise geometry."""

    def __init__(self, x_shape, g: Geom):
        n, c, h, w = x_shape
        self.n, self.c, self.h, self.w = n, c, h, w
        self.ho, self.wo = g.out
        s0, s1 = g.s
        self.s, self.pb = (s0, s1), g.pb
        kh, kw = g.k
        taps = []
        for i in range(kh):
            q0, p0 = divmod(i * g.d[0], s0)
            for j in range(kw):
                q1, p1 = divmod(j * g.d[1], s1)
                taps.append((p0, p1, q0, q1))
        self.phases = sorted({(p0, p1) for p0, p1, _, _ in taps})
        self.hh = self.ho + max(t[2] for t in taps)
        self.wh = self.wo + max(t[3] for t in taps)
        self.grid = n * self.hh * self.wh  # flat grid length per channel
        self.maxoff = max(t[2] for t in taps) * self.wh + max(t[3] for t in taps)
        self.valid = self.grid - self.maxoff  # grid positions computed (all outputs lie before)
        # tap t: (index of its phase plane, flat shift)
        self.taps = [(self.phases.index((p0, p1)), q0 * self.wh + q1) for p0, p1, q0, q1 in taps]
        per_channel = self.grid * (len(self.phases) + 2)
        step = max(1, min(c, (BLOCK_ELEMS * 4) // max(1, per_channel)))
        if c >= MIN_BLOCKS:
            step = min(step, -(-c // MIN_BLOCKS))
        self.blocks = [(a, min(c, a + step)) for a in range(0, c, step)]

    def _windows(self, p0: int, p1: int):
        """(input row slice, plane row slice, input column slice, plane column slice) of the
        pixels of phase (p0, p1), or None where the phase holds none."""
        out = []
        for p, pb, s, size, planes in ((p0, self.pb[0], self.s[0], self.h, self.hh),
                                       (p1, self.pb[1], self.s[1], self.w, self.wh)):
            a0 = max(0, -(-(pb - p) // s))  # first plane index whose input index a*s + p - pb >= 0
            first = a0 * s + p - pb
            a1 = min(planes, (size - 1 - (p - pb)) // s + 1) if size - 1 - (p - pb) >= 0 else 0
            if a1 <= a0:
                return None
            out.append((slice(first, first + (a1 - a0 - 1) * s + 1, s), slice(a0, a1)))
        (ri, rp), (ci, cp) = out
        return ri, rp, ci, cp

    def fill_planes(self, xc_block: np.ndarray, out: np.ndarray) -> None:
        """Phase planes (phases, B, N, hh, wh) of a channel block of channel-major x (zero
        where they fall into the padding)."""
        out.fill(0)
        for k, (p0, p1) in enumerate(self.phases):
            win = self._windows(p0, p1)
            if win is not None:
                ri, rp, ci, cp = win
                out[k][:, :, rp, cp] = xc_block[:, :, ri, ci]

    def planes_to_input(self, dplanes: np.ndarray, dx_block: np.ndarray) -> None:
        """The input gradient (B, N, H, W) of a block from its phase-plane gradients."""
        covered = 0
        for k, (p0, p1) in enumerate(self.phases):
            win = self._windows(p0, p1)
            if win is not None:
                ri, rp, ci, cp = win
                dx_block[:, :, ri, ci] = dplanes[k][:, :, rp, cp]
                covered += (rp.stop - rp.start) * (cp.stop - cp.start)
        if covered < self.h * self.w:  # pixels no tap reads (strides beyond the kernel)
            mask = np.ones((self.h, self.w), dtype=bool)
            for p0, p1 in self.phases:
                win = self._windows(p0, p1)
                if win is not None:
                    mask[win[0], win[2]] = False
            dx_block[:, :, mask] = 0


_layouts: dict = {}


def layout_for(x_shape, g: Geom) -> _Layout:
    key = (tuple(x_shape), tuple(g.k), tuple(g.s), tuple(g.d), tuple(g.pb), tuple(g.out))
    lay = _layouts.get(key)
    if lay is None:
        if len(_layouts) > 256:
            _layouts.clear()
        lay = _layouts[key] = _Layout(x_shape, g)
    return lay


def depthwise_forward(xc: np.ndarray, w: np.ndarray, g: Geom) -> np.ndarray:
    """Channel-major x (C, N, H, W), weights (C, 1, kh, kw) -> y (C, N, ho, wo), C-contiguous."""
    c, n = xc.shape[:2]
    lay = layout_for((n, c) + tuple(xc.shape[2:]), g)
    dt = xc.dtype
    wt = w.reshape(c, -1).astype(dt, copy=False)
    y = buffers.empty((c, n, lay.ho, lay.wo), dt)
    nph, grid, valid = len(lay.phases), lay.grid, lay.valid

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

    parallel.run(block, lay.blocks)
    return y


def depthwise_backward(xc: np.ndarray, w: np.ndarray, dyc: np.ndarray, g: Geom, need_x: bool,
                       need_w: bool):
    """(dx channel-major (C, N, H, W) or None, dW (C, 1, kh, kw) or None)."""
    c, n, h, wd = xc.shape
    lay = layout_for((n, c, h, wd), g)
    dt = xc.dtype
    wt = w.reshape(c, -1).astype(dt, copy=False)
    ntaps = wt.shape[1]
    dx = buffers.empty((c, n, h, wd), dt) if need_x else None
    dwt = np.empty((c, ntaps), dtype=dt) if need_w else None
    nph, grid, valid, m = len(lay.phases), lay.grid, lay.valid, lay.maxoff

    def block(r):
        a, z = r
        b = z - a
        # dy on the plane grid, zero beyond the outputs, after m zeros (the gather's margin)
        dyg = scratch("dwc_dy", (b, m + grid), dt)
        dyg[:, :m] = 0
        grid4 = dyg[:, m:].reshape(b, n, lay.hh, lay.wh)
        grid4[:, :, :lay.ho, :lay.wo] = dyc[a:z]
        grid4[:, :, lay.ho:] = 0
        grid4[:, :, :lay.ho, lay.wo:] = 0
        dyv = dyg[:, m:m + valid]
        if need_w:
            planes = scratch("dwc_planes", (nph, b, n, lay.hh, lay.wh), dt)
            lay.fill_planes(xc[a:z], planes)
            flat = planes.reshape(nph, b, grid)
            for t, (k, off) in enumerate(lay.taps):
                dwt[a:z, t] = np.einsum("ij,ij->i", dyv, flat[k, :, off:off + valid])
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

    parallel.run(block, lay.blocks)
    dw = dwt.astype(w.dtype, copy=False).reshape(w.shape) if need_w else None
    return dx, dw
