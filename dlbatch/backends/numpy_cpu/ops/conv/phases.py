"""Phase planes of a strided convolution (space-to-depth): for strides (s0, s1) the padded
input splits into s0*s1 planes P[p0, p1][a, b] = xp[a*s0 + p0, b*s1 + p1], and kernel tap
(i, j) with i*d0 = q0*s0 + p0, j*d1 = q1*s1 + p1 reads P[p0, p1][r + q0, c + q1] for output
(r, c). With every plane hh x wh (the output size plus the largest tap shift), the planes of
one channel and all samples are one flat row, and a tap is that row shifted by q0*wh + q1: a
convolution becomes long contiguous row operations on an output grid of hh x wh per sample
(positions beyond the ho x wo outputs are computed and discarded, or zero in gradients)."""
from __future__ import annotations

import numpy as np

from .geometry import Geom


class PhaseGrid:
    """Phase planes and tap shifts of one geometry (input (N, C, H, W) of x_shape)."""

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
        self.plane = self.hh * self.wh  # grid positions per sample
        self.maxoff = max(t[2] for t in taps) * self.wh + max(t[3] for t in taps)
        # tap t (row-major over (i, j)): (index of its phase plane, flat shift)
        self.taps = [(self.phases.index((p0, p1)), q0 * self.wh + q1) for p0, p1, q0, q1 in taps]

    def valid(self, nb: int) -> int:
        """Grid positions of nb samples that can hold outputs (all ho x wo outputs lie before)."""
        return nb * self.plane - self.maxoff

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
        """Phase planes (phases, C', nb, hh, wh) of channel-major x (C', nb, H, W), zero where
        they fall into the padding (only those borders are written twice)."""
        for k, (p0, p1) in enumerate(self.phases):
            win = self._windows(p0, p1)
            plane = out[k]
            if win is None:
                plane.fill(0)
                continue
            ri, rp, ci, cp = win
            plane[:, :, rp, cp] = xc_block[:, :, ri, ci]
            plane[:, :, :rp.start] = 0
            plane[:, :, rp.stop:] = 0
            plane[:, :, rp, :cp.start] = 0
            plane[:, :, rp, cp.stop:] = 0

    def planes_to_input(self, dplanes: np.ndarray, dx_block: np.ndarray) -> None:
        """The input gradient (C', nb, H, W) from phase-plane gradients (phases, C', nb, hh, wh)."""
        windows = [w for w in (self._windows(p0, p1) for p0, p1 in self.phases)]
        covered = sum((w[1].stop - w[1].start) * (w[3].stop - w[3].start) for w in windows if w is not None)
        if covered < self.h * self.w:  # pixels no tap reads (strides beyond the kernel): zero
            dx_block.fill(0)
        for k, win in enumerate(windows):
            if win is not None:
                ri, rp, ci, cp = win
                dx_block[:, :, ri, ci] = dplanes[k][:, :, rp, cp]

    def to_grid(self, yc: np.ndarray, out: np.ndarray) -> None:
        """(C', nb, ho, wo) values onto the (C', nb, hh, wh) grid, zero elsewhere."""
        out[:, :, :self.ho, :self.wo] = yc
        out[:, :, self.ho:] = 0
        out[:, :, :self.ho, self.wo:] = 0


_grids: dict = {}


def phase_grid(x_shape, g: Geom) -> PhaseGrid:
    """The (cached) PhaseGrid of a geometry."""
    key = (tuple(x_shape), tuple(g.k), tuple(g.s), tuple(g.d), tuple(g.pb), tuple(g.out))
    grid = _grids.get(key)
    if grid is None:
        if len(_grids) > 256:
            _grids.clear()
        grid = _grids[key] = PhaseGrid(x_shape, g)
    return grid
