"""How a convolution is cut into chunks whose column matrix stays about COLS_BUDGET bytes:
whole samples for the grouped and transposed paths (batch_chunks), and for groups == 1 a
cached ConvPlan of sample or row chunks with its per-tap copies (im2col) and adds (col2im).
The chunking depends on the shapes only, so results do not depend on the thread count."""
from __future__ import annotations

import numpy as np

from ... import parallel
from .._util import tap_range
from .columns import rows2d_or_copy, scratch_buffer
from .geometry import Geom, is_pointwise


COLS_BUDGET = 8 << 20  # bytes of im2col matrix per chunk (L3-sized; also bounds peak memory)
ROW_BUDGET = 1 << 20  # bytes of im2col matrix per row chunk of one sample (see ConvPlan)
MIN_CHUNKS = 4  # a groups == 1 Conv is split into at least this many chunks where it can be,
SPLIT_MIN_BYTES = 2 << 20  # if its whole column matrix has at least this many bytes
FLAT_MAX = 512  # largest H*W of a plane copied whole by im2col (see ConvPlan)


def batch_chunks(n: int, per_sample_bytes: int):
    """Sample ranges of a batch whose columns take about COLS_BUDGET bytes (grouped Conv and
    ConvTranspose)."""
    step = max(1, min(n, COLS_BUDGET // max(1, per_sample_bytes)))
    return [(a, min(n, a + step)) for a in range(0, n, step)]


class ConvPlan:
    """Chunks and per-tap slices of a groups == 1 Conv for one geometry (cached).

    A chunk is (n0, n1, r0, r1): samples n0:n1 and output rows r0:r1 (several whole samples,
    or a row range of one sample when one sample's columns exceed the budget)."""

    def __init__(self, x_shape, o, g: Geom, itemsize: int, budget: int):
        n, c, h, w = x_shape
        kh, kw = g.k
        ho, wo = g.out
        self.n, self.c, self.o, self.ho, self.wo = n, c, o, ho, wo
        self.ckk = c * kh * kw
        self.direct = is_pointwise(g)  # the input itself is the column matrix
        row_bytes = self.ckk * wo * itemsize
        per_sample = row_bytes * ho
        # small convolutions run as one chunk: splitting them costs more than it saves
        min_chunks = MIN_CHUNKS if per_sample * n >= SPLIT_MIN_BYTES else 1
        if per_sample <= budget and n >= min_chunks:
            nb = max(1, min(budget // max(1, per_sample), -(-n // min_chunks)))
            # near-equal chunks (16 samples at most 3 per chunk: 3,3,3,3,2,2, not 3,3,3,3,3,1,
            # which left one thread 9 samples and the other 7)
            self.chunks = [(a, z, 0, ho) for a, z in parallel.chunks(n, -(-n // nb))]
            self.row_split = False
        else:  # rows of single samples: big samples, or too few samples to share out
            # row chunks are cut to about ROW_BUDGET (L2-sized): their columns are written by
            # im2col and read by the GEMM right after, from cache (a 16-channel 3x3 Conv on one
            # 256x256 image: 5 chunks of 7.7 MB took 21.0 ms fwd+bwd, 36 of 1 MB 18.2 ms); a
            # multiple of the chunks per sample that share it out (4 of 1.2 MB, not 5 of 0.9 MB,
            # which two threads would take 3 and 2)
            q = -(-min_chunks // n)
            row_budget = min(budget, ROW_BUDGET)
            parts = min(ho, max(q, q * round(per_sample / (max(1, row_budget) * q))))
            self.chunks = [(i, i + 1, r0, r1) for i in range(n) for r0, r1 in parallel.chunks(ho, parts)]
            self.row_split = True
        rows = [tap_range(ho, h, i, g.s[0], g.d[0], g.pb[0]) for i in range(kh)]
        cols = [tap_range(wo, w, j, g.s[1], g.d[1], g.pb[1]) for j in range(kw)]
        s0, s1 = g.s
        # a tap that reads every input pixel (stride 1, 'same' padding: the centre tap) can be
        # assigned instead of added in col2im, which then needs no zero-filled destination
        self.full_tap = None
        for i, (rlo, rhi, roff) in enumerate(rows):
            for j, (clo, chi, coff) in enumerate(cols):
                if (s0 == s1 == 1 and rlo + roff == 0 and rhi + roff == h and clo + coff == 0
                        and chi + coff == w and self.full_tap is None):
                    self.full_tap = (i, j)
        all_ = slice(None)
        self.copies, self.zeros = [], []
        for n0, n1, r0, r1 in self.chunks:
            copies, zeros = [], []
            nr = r1 - r0
            full_first = None
            for i, (rlo, rhi, roff) in enumerate(rows):
                a, b = max(rlo, r0), min(rhi, r1)
                for j, (clo, chi, coff) in enumerate(cols):
                    if a >= b or clo >= chi:
                        zeros.append((all_, i, j))
                        continue
                    dst = (all_, i, j, all_, slice(a - r0, b - r0), slice(clo, chi))
                    src = (all_, slice(n0, n1), slice(a * s0 + roff, (b - 1) * s0 + roff + 1, s0),
                           slice(clo * s1 + coff, (chi - 1) * s1 + coff + 1, s1))
                    if (i, j) == self.full_tap:
                        full_first = (dst, src)
                    else:
                        copies.append((dst, src))
                    if a > r0:
                        zeros.append((all_, i, j, all_, slice(0, a - r0)))
                    if b < r1:
                        zeros.append((all_, i, j, all_, slice(b - r0, nr)))
                    if clo > 0:
                        zeros.append((all_, i, j, all_, slice(a - r0, b - r0), slice(0, clo)))
                    if chi < wo:
                        zeros.append((all_, i, j, all_, slice(a - r0, b - r0), slice(chi, wo)))
            if full_first is not None and not self.row_split:
                copies.insert(0, full_first)
            elif full_first is not None:
                copies.append(full_first)
            self.copies.append(copies)
            self.zeros.append(zeros)
        self.assign_first = self.full_tap is not None and not self.row_split
        self.kh, self.kw = kh, kw
        # small 'same'-size stride-1 maps: each tap is one flat shift of whole H*W planes
        # (long copy runs instead of W-element rows), then the columns that wrapped around
        # are zeroed; planes stay under FLAT_MAX elements: glibc copies runs over 2 KiB with
        # `rep movsb`, which on this AMD CPU runs 10x slower when (dst - src) mod 4096 is
        # 4-28 bytes (a one-element tap shift can land there), so flat columns of 16x32x64x64
        # took 3.3-12 ms depending on where the arrays lay, per-tap copies a steady 4.0 ms.
        # (Splitting the flat copies into shorter pieces costs more calls than it saves.)
        self.flat = None
        if (g.s == [1, 1] and ho == h and wo == w and not self.row_split and h * w <= FLAT_MAX
                and not self.direct):
            taps = []
            hw = h * w
            for i in range(kh):
                for j in range(kw):
                    roff, coff = i * g.d[0] - g.pb[0], j * g.d[1] - g.pb[1]
                    delta = roff * w + coff
                    lo, hi = max(0, -delta), min(hw, hw - delta)
                    bad = (slice(0, min(w, -coff)) if coff < 0 else
                           slice(max(0, w - coff), w) if coff > 0 else None)
                    taps.append((i, j, delta, lo, max(lo, hi), bad))
            self.flat = taps

    def chunk_len(self, k: int) -> int:
        n0, n1, r0, r1 = self.chunks[k]
        return (n1 - n0) * (r1 - r0) * self.wo

    def im2col(self, xc: np.ndarray, k: int, ones: bool = False) -> np.ndarray:
        """Columns (C*kh*kw, positions) of chunk k from channel-major `xc` (C, N, H, W). With
        ones=True a last row of ones follows, so that a bias appended to the weight matrix is
        added by the GEMM itself rather than by another pass (ignored by direct plans, whose
        column matrix is x itself)."""
        if ones and not self.direct:
            size = self.ckk * self.chunk_len(k)
            buf = scratch_buffer(0, size + self.chunk_len(k), xc.dtype)
            self._fill_columns(xc, k, buf[:size])
            buf[size:] = 1
            return buf.reshape(self.ckk + 1, -1)
        if self.direct:
            return self._direct_columns(xc, k)
        buf = scratch_buffer(0, self.ckk * self.chunk_len(k), xc.dtype)
        self._fill_columns(xc, k, buf)
        return buf.reshape(self.ckk, -1)

    def _direct_columns(self, xc, k):
        n0, n1, r0, r1 = self.chunks[k]
        return rows2d_or_copy(xc[:, n0:n1, r0:r1], "conv0")

    def _fill_columns(self, xc, k, buf) -> None:
        n0, n1, r0, r1 = self.chunks[k]
        if self.flat is not None:
            try:
                planes = xc[:, n0:n1].view()
                planes.shape = (self.c, n1 - n0, -1)
            except AttributeError:
                planes = None
            if planes is not None:
                self._im2col_flat(planes, buf, n1 - n0)
                return
        cols = buf.reshape(self.c, self.kh, self.kw, n1 - n0, r1 - r0, self.wo)
        for dst, src in self.copies[k]:
            cols[dst] = xc[src]
        for z in self.zeros[k]:
            cols[z] = 0

    def _im2col_flat(self, planes, buf, nb):
        hw = planes.shape[2]
        cols = buf.reshape(self.c, self.kh, self.kw, nb, hw)
        for i, j, delta, lo, hi, bad in self.flat:
            dst = cols[:, i, j]
            if hi > lo:
                dst[:, :, lo:hi] = planes[:, :, lo + delta:hi + delta]
            if lo > 0:
                dst[:, :, :min(lo, hw)] = 0
            if hi < hw:
                dst[:, :, hi:] = 0
            if bad is not None:
                dst.reshape(self.c, nb, self.ho, self.wo)[..., bad] = 0

    def col2im(self, dxc: np.ndarray, dcols: np.ndarray, k: int) -> None:
        """Add chunk k's column gradients (C*kh*kw, positions) into `dxc` (C, N, H, W); with
        assign_first the first tap is assigned (dxc needs no zero fill for this chunk)."""
        n0, n1, r0, r1 = self.chunks[k]
        cols = dcols.reshape(self.c, self.kh, self.kw, n1 - n0, r1 - r0, self.wo)
        first = self.assign_first
        for dst, src in self.copies[k]:
            if first:
                dxc[src] = cols[dst]
                first = False
            else:
                dxc[src] += cols[dst]


_plans: dict = {}


def plan_for(x_shape, o, g: Geom, itemsize: int) -> ConvPlan:
    """The (cached) ConvPlan of a groups == 1 Conv with `o` output channels."""
    key = (tuple(x_shape), o, tuple(g.k), tuple(g.s), tuple(g.d), tuple(g.pb), tuple(g.pe), itemsize,
           COLS_BUDGET, ROW_BUDGET)
    plan = _plans.get(key)
    if plan is None:
        if len(_plans) > 256:
            _plans.clear()
        plan = _plans[key] = ConvPlan(x_shape, o, g, itemsize, COLS_BUDGET)
    return plan
