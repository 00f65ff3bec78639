"""The input gradient of a strided groups == 1 Conv without strided scatter-adds: dy is laid
on the phase grid (.phases), the column gradients W.T @ dy come out on that grid, and each
tap's rows are added into its phase plane as one flat shifted row (contiguous, unlike col2im's
stride-s writes of W-element pieces); the planes then return to the input's pixels in one pass.
Column gradients at grid positions beyond the outputs are zero (dy is zero there), so the
shifted rows may spill into them harmlessly."""
from __future__ import annotations

import numpy as np

from .._util import scratch
from .columns import scratch_buffer
from .phases import PhaseGrid


def phase_col2im(grid: PhaseGrid, wm: np.ndarray, dyc: np.ndarray, dxc: np.ndarray, n0: int, n1: int) -> None:
    """dx of samples n0:n1 into channel-major dxc (C, N, H, W) (every pixel written) from
    channel-major dy (O, N, ho, wo) and the weight matrix wm (O, C*kh*kw)."""
    o = wm.shape[0]
    c = grid.c
    nb = n1 - n0
    size = nb * grid.plane
    dt = dxc.dtype
    dyg = scratch("ps_dy", (o, nb, grid.hh, grid.wh), dt)
    grid.to_grid(dyc[:, n0:n1], dyg)
    ntaps = len(grid.taps)
    dcols = scratch_buffer(1, c * ntaps * size, dt).reshape(c * ntaps, size)
    np.matmul(wm.T, dyg.reshape(o, size), out=dcols)
    dc = dcols.reshape(c, ntaps, size)
    nph = len(grid.phases)
    planes = scratch("ps_planes", (nph, c, size), dt)
    planes.fill(0)
    for t, (k, off) in enumerate(grid.taps):
        dst = planes[k][:, off:]
        np.add(dst, dc[:, t, :size - off], out=dst)
    grid.planes_to_input(planes.reshape(nph, c, nb, grid.hh, grid.wh), dxc[:, n0:n1])
