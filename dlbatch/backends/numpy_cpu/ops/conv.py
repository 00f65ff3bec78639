"""Conv and ConvTranspose (2-D spatial) as im2col + GEMM, computed channel-major.

Conv (groups == 1) works on chunks of the output positions (whole samples, or row ranges of
one sample for large images) whose column matrix (C*kh*kw, positions) is about COLS_BUDGET
bytes. Each chunk builds its columns straight from the unpadded channel-major input into a
per-thread scratch buffer (one slice copy per kernel tap with the padding written as zeros, or
for small 'same'-size maps one flat shift per tap of whole H*W planes) and runs one GEMM whose
output is the chunk's slice of the channel-major result. Chunks run on the kernel threads
(..parallel); BLAS itself is single-threaded meanwhile.

Backward: for stride 1, dx is the forward convolution of dy with the flipped, transposed
kernel (gathering columns of dy beats scatter-adding column gradients), and the same columns
of dy give dW as x @ cols.T (flipped), so x is not expanded again; otherwise dcols = W.T @ dy
is scattered back with col2im per chunk and dW is recomputed from the columns of x (kh*kw times
the input, too big to keep). dW is the sum of per-chunk partial products in chunk order, or,
for small maps with many channels, one GEMM over all positions split into row blocks. The
chunking depends on the shapes only, so results are bit-identical for any number of threads.

Grouped convolutions use a batched GEMM over chunks of the batch; depthwise (groups == C ==
O) a sum of per-tap broadcast multiplies; ConvTranspose the adjoint (GEMM then col2im).
"""
from __future__ import annotations

import numpy as np

from ....core.backend import OpContext
from ....core.onnx_attributes import conv_kernel_shape, conv_transpose_windows, sliding_windows, spatial_ints
from .. import buffers, parallel
from ..kernel import NumpyKernel
from ._util import (channel_blocks, check_4d, channel_sum, cm, needs, pad_cm, relu_, scratch, tap, tap_range,
                    unsupported)

COLS_BUDGET = 8 << 20  # bytes of im2col matrix per chunk (L3-sized; also bounds peak memory)
MIN_CHUNKS = 4  # a groups == 1 Conv is split into at least this many chunks where it can be,
SPLIT_MIN_BYTES = 2 << 20  # if its whole column matrix has at least this many bytes
FLAT_MAX = 512  # largest H*W of a plane copied whole by im2col (see _ConvPlan)
FULL_COLS_BUDGET = 16 << 20  # dW of a Conv whose whole column matrix fits this is one K per GEMM
DW_TRANSPOSED_BELOW = 64  # output channels below which dW is computed transposed
DW_BLOCKS = 4  # row blocks (parallel GEMMs) of a full-K dW
SHARED_COLUMNS = True  # stride-1 backward: dW from the columns of dy that dx gathers anyway


def _chunks(n: int, per_sample_bytes: int):
    step = max(1, min(n, COLS_BUDGET // max(1, per_sample_bytes)))
    return [(a, min(n, a + step)) for a in range(0, n, step)]


def _im2col(xp, kh, kw, d, s, ho, wo):
    """(C, n, Hp, Wp) -> (C, kh, kw, n, ho, wo), one slice copy per tap."""
    c, n = xp.shape[:2]
    cols = np.empty((c, kh, kw, n, ho, wo), dtype=xp.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, i, j] = tap(xp, i, j, d, s, ho, wo)
    return cols


def _col2im_add(dst, cols, kh, kw, d, s, ho, wo):
    """Inverse of _im2col: add each tap's (C, n, ho, wo) block into padded `dst`."""
    for i in range(kh):
        for j in range(kw):
            tap(dst, i, j, d, s, ho, wo)[...] += cols[:, i, j]


class _Geom:
    __slots__ = ("k", "s", "d", "pb", "pe", "out", "hp", "wp")


def _kernel_geom(op, attrs, w_shape) -> _Geom:
    """Kernel size (must match the weight), strides and dilations: shared by Conv and
    ConvTranspose."""
    g = _Geom()
    g.k = conv_kernel_shape(op, attrs, w_shape[2:])
    g.s = spatial_ints(op, attrs, "strides", 2, 1)
    g.d = spatial_ints(op, attrs, "dilations", 2, 1)
    return g


def _conv_geom(op, attrs, x_shape, w_shape) -> _Geom:
    g = _kernel_geom(op, attrs, w_shape)
    g.pb, g.pe, g.out = sliding_windows(op, attrs, x_shape[2:], g.k, g.s, g.d)
    if min(g.pb + g.pe) < 0:
        raise unsupported(op, "pads", g.pb + g.pe, "non-negative pads")
    g.hp = x_shape[2] + g.pb[0] + g.pe[0]
    g.wp = x_shape[3] + g.pb[1] + g.pe[1]
    return g


def _is_pointwise(g: _Geom) -> bool:
    return g.k == [1, 1] and g.s == [1, 1] and max(g.pb + g.pe) == 0


def _scratch_buffer(slot: int, size: int, dtype) -> np.ndarray:
    """Per-thread chunk-sized buffers (0: columns, 1: column gradients): they stay in cache
    and cost no page faults."""
    return scratch(f"conv{slot}", (size,), dtype)


def _rows2d(a: np.ndarray) -> np.ndarray:
    """(R, ...) view -> (R, prod(...)) view; raises rather than copy."""
    v = a.view()
    v.shape = (a.shape[0], -1)
    return v


def _rows2d_or_copy(a: np.ndarray, scratch_slot: str) -> np.ndarray:
    """_rows2d(a), or where memory does not allow that view, a copy in per-thread scratch."""
    try:
        return _rows2d(a)
    except AttributeError:
        buf = scratch(scratch_slot, a.shape, a.dtype)
        np.copyto(buf, a)
        return buf.reshape(a.shape[0], -1)


def _partial_dw(cols: np.ndarray, rows: np.ndarray, out: np.ndarray, transposed: bool) -> None:
    """One chunk's dW partial product rows @ cols.T into `out`, or its transpose cols @ rows.T
    when `transposed` (OpenBLAS runs that orientation faster for few rows, DW_TRANSPOSED_BELOW)."""
    if transposed:
        np.matmul(cols, rows.T, out=out)
    else:
        np.matmul(rows, cols.T, out=out)


class _ConvPlan:
    """Chunks and per-tap slices of a groups == 1 Conv for one geometry (cached).

    A chunk is (n0, n1, r0, r1): samples n0:n1 and output rows r0:r1 (several whole samples,
    or a row range of one sample when one sample's columns exceed the budget)."""

    def __init__(self, x_shape, o, g: _Geom, itemsize: int, budget: int):
        n, c, h, w = x_shape
        kh, kw = g.k
        ho, wo = g.out
        self.n, self.c, self.o, self.ho, self.wo = n, c, o, ho, wo
        self.ckk = c * kh * kw
        self.direct = _is_pointwise(g)  # the input itself is the column matrix
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
            parts = min(ho, max(-(-per_sample // max(1, budget)), -(-min_chunks // n)))
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
            buf = _scratch_buffer(0, size + self.chunk_len(k), xc.dtype)
            self._fill_columns(xc, k, buf[:size])
            buf[size:] = 1
            return buf.reshape(self.ckk + 1, -1)
        if self.direct:
            return self._direct_columns(xc, k)
        buf = _scratch_buffer(0, self.ckk * self.chunk_len(k), xc.dtype)
        self._fill_columns(xc, k, buf)
        return buf.reshape(self.ckk, -1)

    def _direct_columns(self, xc, k):
        n0, n1, r0, r1 = self.chunks[k]
        return _rows2d_or_copy(xc[:, n0:n1, r0:r1], "conv0")

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


def _plan_for(x_shape, o, g: _Geom, itemsize: int) -> _ConvPlan:
    key = (tuple(x_shape), o, tuple(g.k), tuple(g.s), tuple(g.d), tuple(g.pb), tuple(g.pe), itemsize,
           COLS_BUDGET)
    plan = _plans.get(key)
    if plan is None:
        if len(_plans) > 256:
            _plans.clear()
        plan = _plans[key] = _ConvPlan(x_shape, o, g, itemsize, COLS_BUDGET)
    return plan


def _forward_tasks(x, w, b, g, relu: bool = False, pool=None, wb=None):
    """groups == 1: the channel-major output (O, N, ho, wo) and its chunk tasks (bias and an
    optional ReLU are applied to each chunk while it is in cache). With pool = (geometry,
    function(chunk, geometry, out)), each chunk is pooled from cache instead and the output is
    the pooled (O, N, pho, pwo); None if the chunks are not whole samples. `wb`, where the
    caller has it, is the GEMM weight matrix [W | b] of shape (O, C*kh*kw + 1)."""
    o = w.shape[0]
    plan = _plan_for(x.shape, o, g, x.itemsize)
    if pool is not None and plan.row_split:
        return None
    xc = cm(x)
    if pool is None:
        y = buffers.empty((o, plan.n, plan.ho, plan.wo), x.dtype)
    else:
        pgeom, pool_fn = pool
        y = buffers.empty((o, plan.n) + tuple(pgeom[5]), x.dtype)
    bias = None if b is None else b.astype(x.dtype, copy=False).reshape(o, 1)
    ones = bias is not None and not plan.direct  # the bias rides in the GEMM (see im2col)
    if wb is not None:
        wm = wb if ones else wb[:, :-1]
    else:
        wm = w.reshape(o, -1).astype(x.dtype, copy=False)
        if ones:
            wm = np.concatenate([wm, bias], axis=1)

    def chunk(k):
        n0, n1, r0, r1 = plan.chunks[k]
        if pool is None:
            out = _rows2d(y[:, n0:n1, r0:r1])
        else:
            out = scratch("conv_out", (o, plan.chunk_len(k)), x.dtype)
        np.matmul(wm, plan.im2col(xc, k, ones), out=out)
        if bias is not None and not ones:
            out += bias
        if pool is None:
            if relu:
                relu_(out, out)
            return
        pooled = y[:, n0:n1]
        pool_fn(out.reshape(o, n1 - n0, plan.ho, plan.wo), pgeom, pooled)
        if relu:  # max pooling and ReLU commute: rectify the (smaller) pooled block
            np.maximum(pooled, 0, out=pooled)

    return y, [(chunk, k) for k in range(len(plan.chunks))]


def _run_tasks(tasks):
    parallel.run(lambda t: t[0](t[1]), tasks)


def _conv_forward(x, w, b, g, relu: bool = False, wb=None) -> np.ndarray:
    y, tasks = _forward_tasks(x, w, b, g, relu, wb=wb)
    _run_tasks(tasks)
    return y


def conv_relu_forward(x, wb, w_shape, attrs, relu: bool, pool_attrs=None) -> np.ndarray:
    """Conv with the weight matrix and bias wb = [W | b] (O, C*kh*kw + 1) and the weight's shape,
    then ReLU, then max pooling with `pool_attrs`, without a tape: the inference path of the
    fused Conv+BatchNormalization(+Relu(+MaxPool)) kernels. Returns the logical NCHW result
    (channel-major memory)."""
    from .pooling import MaxPool, max_only, pool_geometry
    groups = int(attrs.get("group", 1))
    nograd = OpContext(training=False, needs_input_grad=(False,))
    w, b = wb[:, :-1].reshape(w_shape), wb[:, -1]
    if groups == 1 and x.ndim == 4 and w.shape[1] == x.shape[1]:
        g = _conv_geom("Conv", attrs, x.shape, w.shape)
        if pool_attrs is not None:
            pgeom = pool_geometry(pool_attrs, (x.shape[0], w.shape[0]) + tuple(g.out))
            fused = _forward_tasks(x, w, b, g, relu, (pgeom, max_only), wb)
            if fused is not None:
                _run_tasks(fused[1])
                return cm(fused[0])
        y = cm(_conv_forward(x, w, b, g, relu, wb))
    else:
        y = Conv().forward(OpContext(training=False, needs_input_grad=()),
                           [x, np.ascontiguousarray(w), b], attrs)[0][0]
        if relu:
            relu_(y, y)
    if pool_attrs is not None:
        y = MaxPool().forward(nograd, [y], pool_attrs)[0][0]
    return y


def _transposed_geom(g: _Geom, x_shape) -> _Geom | None:
    """For a stride-1 Conv, the geometry of the convolution that maps dy to dx (flipped
    kernel, complementary padding), or None where that padding would be negative."""
    if g.s != [1, 1]:
        return None
    t = _Geom()
    t.k, t.s, t.d = list(g.k), [1, 1], list(g.d)
    t.pb = [(g.k[i] - 1) * g.d[i] - g.pb[i] for i in range(2)]
    t.pe = [(g.k[i] - 1) * g.d[i] - g.pe[i] for i in range(2)]
    if min(t.pb + t.pe) < 0:
        return None
    t.out = [x_shape[2], x_shape[3]]
    t.hp = g.out[0] + t.pb[0] + t.pe[0]
    t.wp = g.out[1] + t.pb[1] + t.pe[1]
    return t


def _dw_full_k(plan, xc, dyc, o, w, dtype, dx_tasks):
    """dW from the whole column matrix: im2col chunks (alongside the dx tasks), then dW.T row
    blocks, each one GEMM over every position."""
    lens = [plan.chunk_len(k) for k in range(len(plan.chunks))]
    starts = np.cumsum([0] + lens)
    cols = buffers.empty((plan.ckk, int(starts[-1])), dtype)

    def build(k):
        cols[:, starts[k]:starts[k + 1]] = plan.im2col(xc, k)

    _run_tasks(dx_tasks + [(build, k) for k in range(len(lens))])
    dy2 = _rows2d(dyc)
    if o < DW_TRANSPOSED_BELOW:
        dwt = np.empty((plan.ckk, o), dtype=dtype)
        blocks = parallel.chunks(plan.ckk, DW_BLOCKS)
        parallel.run(lambda r: np.matmul(cols[r[0]:r[1]], dy2.T, out=dwt[r[0]:r[1]]), blocks)
        return np.ascontiguousarray(dwt.T, dtype=w.dtype).reshape(w.shape)
    dw = np.empty((o, plan.ckk), dtype=dtype)
    blocks = parallel.chunks(o, DW_BLOCKS)
    parallel.run(lambda r: np.matmul(dy2[r[0]:r[1]], cols.T, out=dw[r[0]:r[1]]), blocks)
    return dw.astype(w.dtype, copy=False).reshape(w.shape)


def _full_k(plan, o: int, itemsize: int) -> bool:
    """Whether dW should come from the whole column matrix (see _dw_full_k): small maps whose
    columns fit FULL_COLS_BUDGET, where per-chunk partial sums would outweigh the columns."""
    positions = plan.n * plan.ho * plan.wo
    return plan.ckk * positions * itemsize <= FULL_COLS_BUDGET and len(plan.chunks) * o > positions


def _backward_shared_columns(xc, dyc, wt, tgeom, w):
    """Stride-1 backward from one column matrix per chunk: the columns of dy that the input
    gradient gathers (dx = W' @ cols, W' the flipped, transposed kernel) also give
    dW[o, c, a, b] = (x @ cols.T)[c, (o, kh-1-a, kw-1-b)], so x itself is never expanded into
    columns. Returns (dx channel-major, dw)."""
    o, c, kh, kw = w.shape
    n = xc.shape[1]
    dtype = xc.dtype
    tplan = _plan_for((n, o) + tuple(dyc.shape[2:]), c, tgeom, dtype.itemsize)
    dxc = buffers.empty((c, n) + tuple(tgeom.out), dtype)
    wtm = wt.reshape(c, -1)
    transposed = c < DW_TRANSPOSED_BELOW  # as in _conv_backward: the faster GEMM orientation
    nch = len(tplan.chunks)
    parts = buffers.empty((nch, tplan.ckk, c) if transposed else (nch, c, tplan.ckk), dtype)

    def chunk(k):
        n0, n1, r0, r1 = tplan.chunks[k]
        cols = tplan.im2col(dyc, k)
        np.matmul(wtm, cols, out=_rows2d(dxc[:, n0:n1, r0:r1]))
        # x itself is the row operand (copied only where it is not channel-major)
        _partial_dw(cols, _rows2d_or_copy(xc[:, n0:n1, r0:r1], "conv_x"), parts[k], transposed)

    parallel.run(chunk, range(nch))
    dwp = parts[0] if nch == 1 else parts.sum(axis=0)
    if transposed:  # rows (o, i, j), columns c
        flipped = dwp.reshape(o, kh, kw, c)[:, ::-1, ::-1, :].transpose(0, 3, 1, 2)
    else:  # rows c, columns (o, i, j)
        flipped = dwp.reshape(c, o, kh, kw)[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
    return dxc, np.ascontiguousarray(flipped, dtype=w.dtype)


def _conv_backward(x, w, dy, g, need_x: bool, need_w: bool):
    """groups == 1: (dx channel-major (C, N, H, W) or None, dw or None)."""
    o = w.shape[0]
    plan = _plan_for(x.shape, o, g, x.itemsize)
    xc = cm(x)
    dyc = cm(dy)
    if not dyc.flags.c_contiguous:
        dyc = np.ascontiguousarray(dyc)
    wm = w.reshape(o, -1).astype(x.dtype, copy=False)
    nch = len(plan.chunks)
    dxc = None
    dx_tasks = []
    scatter = False  # dx from dcols = W.T @ dy per chunk (col2im, or direct for 1x1 convs)
    if need_x:
        tgeom = None if plan.direct else _transposed_geom(g, x.shape)
        if tgeom is not None:
            # stride 1: dx is the convolution of dy with the flipped, transposed kernel, which
            # gathers columns of dy (plain copies) instead of scatter-adding column gradients
            wt = np.ascontiguousarray(wm.reshape(w.shape)[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
            if need_w and SHARED_COLUMNS and not _full_k(plan, o, x.itemsize):
                return _backward_shared_columns(xc, dyc, wt, tgeom, w)
            dxc, dx_tasks = _forward_tasks(cm(dyc), wt, None, tgeom)
        else:
            shape = (plan.c, plan.n) + tuple(x.shape[2:])
            zero = plan.row_split and not plan.direct
            dxc = buffers.zeros(shape, x.dtype) if zero else buffers.empty(shape, x.dtype)
            scatter = True
    if not (need_w or scatter):
        _run_tasks(dx_tasks)
        return dxc, None
    # dW.T = cols @ dy.T for few output channels (OpenBLAS runs that orientation up to 15%
    # faster than dy @ cols.T there; the transposed copy of a small dW is cheap), else
    # dW = dy @ cols.T. Small maps with many channels (all columns within FULL_COLS_BUDGET, the
    # chunk partials larger than the columns) build the whole column matrix and split the GEMM
    # over row blocks (the full K per GEMM, no partial sums); otherwise per-chunk partials are
    # summed in chunk order.
    full_k = need_w and not scatter and _full_k(plan, o, x.itemsize)
    if full_k:
        return dxc, _dw_full_k(plan, xc, dyc, o, w, x.dtype, dx_tasks)
    transposed = o < DW_TRANSPOSED_BELOW
    parts = None
    if need_w:
        parts = buffers.empty((nch, plan.ckk, o) if transposed else (nch, o, plan.ckk), x.dtype)

    def chunk(k):
        n0, n1, r0, r1 = plan.chunks[k]
        dy2 = _rows2d(dyc[:, n0:n1, r0:r1])
        if need_w:
            _partial_dw(plan.im2col(xc, k), dy2, parts[k], transposed)
        if scatter:
            if plan.direct:
                np.matmul(wm.T, dy2, out=_rows2d(dxc[:, n0:n1, r0:r1]))
                return
            if not plan.assign_first and not plan.row_split:
                dxc[:, n0:n1] = 0
            dcols = _scratch_buffer(1, plan.ckk * dy2.shape[1], x.dtype).reshape(plan.ckk, -1)
            np.matmul(wm.T, dy2, out=dcols)
            plan.col2im(dxc, dcols, k)

    if scatter and plan.row_split and not plan.direct:
        # row chunks of one sample share input rows: even chunks, then odd ones (fixed order)
        parallel.run(chunk, range(0, nch, 2))
        parallel.run(chunk, range(1, nch, 2))
    else:
        # dx chunks (bigger) first, then the dW chunks, all in one parallel region
        _run_tasks(dx_tasks + [(chunk, k) for k in range(nch)])
    dw = None
    if need_w:
        dw = parts[0] if nch == 1 else parts.sum(axis=0)
        dw = np.ascontiguousarray(dw.T if transposed else dw, dtype=w.dtype).reshape(w.shape)
    return dxc, dw


class Conv(NumpyKernel):
    """Saves the input (not the columns); groups use a batched GEMM, depthwise (groups == C ==
    O) a sum of per-tap broadcast multiplies (beats many tiny GEMMs), run over channel blocks
    that stay in cache."""

    op_type = "Conv"

    def forward(self, ctx, inputs, attrs):
        x, w = inputs[0], inputs[1]
        b = inputs[2] if len(inputs) > 2 else None
        check_4d(self.op_type, x)
        groups = int(attrs.get("group", 1))
        n, c = x.shape[:2]
        o = w.shape[0]
        if c % groups or o % groups or w.shape[1] * groups != c:
            raise unsupported(self.op_type, "group", groups,
                              f"a group count dividing C={c} and O={o} with W.shape[1]*group == C")
        g = _conv_geom(self.op_type, attrs, x.shape, w.shape)
        ho, wo = g.out
        kh, kw = g.k
        xc = cm(x)
        if groups == c == o and w.shape[1] == 1 and not _is_pointwise(g):
            y = self._depthwise(xc, w, g)
        elif groups == 1:
            return [cm(_conv_forward(x, w, b, g))], (x, w, b is not None, groups, g)
        else:
            xp = pad_cm(xc, g.pb, g.pe, g.hp, g.wp)
            wm = w.reshape(groups, o // groups, -1)
            parts = _chunks(n, c * kh * kw * ho * wo * x.itemsize)
            y = None if len(parts) == 1 else np.empty((o, n, ho, wo), dtype=x.dtype)
            for a, z in parts:
                cols = _im2col(xp[:, a:z], kh, kw, g.d, g.s, ho, wo).reshape(groups, -1, (z - a) * ho * wo)
                yc = np.matmul(wm, cols).reshape(o, z - a, ho, wo)
                if y is None:
                    y = yc
                else:
                    y[:, a:z] = yc
        if b is not None:
            y += b.reshape(o, 1, 1, 1)
        return [cm(y)], (x, w, b is not None, groups, g)

    @staticmethod
    def _depthwise(xc, w, g):
        ho, wo = g.out
        xp = pad_cm(xc, g.pb, g.pe, g.hp, g.wp)
        kh, kw = g.k
        c, n = xc.shape[:2]
        y = np.empty((c, n, ho, wo), dtype=xc.dtype)
        for a, z in channel_blocks(c, n * g.hp * g.wp):
            xb, yb = xp[a:z], y[a:z]
            tmp = np.empty_like(yb)
            for i in range(kh):
                for j in range(kw):
                    wt = w[a:z, 0, i, j].reshape(-1, 1, 1, 1)
                    if i == j == 0:
                        np.multiply(tap(xb, i, j, g.d, g.s, ho, wo), wt, out=yb)
                    else:
                        np.multiply(tap(xb, i, j, g.d, g.s, ho, wo), wt, out=tmp)
                        yb += tmp
        return y

    def backward(self, ctx, saved, grads, attrs):
        x, w, has_b, groups, g = saved
        dy = grads[0]
        n, c = x.shape[:2]
        o = w.shape[0]
        ho, wo = g.out
        kh, kw = g.k
        need_x, need_w = needs(ctx, 0), needs(ctx, 1)
        dyc = cm(dy)
        if not dyc.flags.c_contiguous:
            dyc = np.ascontiguousarray(dyc)  # (O, N, ho, wo)
        db = dyc.reshape(o, -1).sum(axis=1) if has_b and needs(ctx, 2) else None
        dx = dw = None
        xc = cm(x)
        if groups == c == o and w.shape[1] == 1 and not _is_pointwise(g):
            dx, dw = self._depthwise_backward(xc, w, dyc, g, need_x, need_w)
        elif groups == 1:
            dxc, dw = _conv_backward(x, w, cm(dyc), g, need_x, need_w)
            dx = cm(dxc) if need_x else None
        else:
            xp = pad_cm(xc, g.pb, g.pe, g.hp, g.wp) if need_w else None
            dxp = np.zeros((c, n, g.hp, g.wp), dtype=x.dtype) if need_x else None
            wm = w.reshape(groups, o // groups, -1)
            dwm = np.zeros(wm.shape, dtype=w.dtype) if need_w else None
            for a, z in _chunks(n, c * kh * kw * ho * wo * x.itemsize):
                ln = (z - a) * ho * wo
                dyg = dyc[:, a:z].reshape(groups, o // groups, ln)
                if need_w:
                    cols = _im2col(xp[:, a:z], kh, kw, g.d, g.s, ho, wo).reshape(groups, -1, ln)
                    dwm += np.matmul(dyg, cols.transpose(0, 2, 1))
                    del cols
                if need_x:
                    dcols = np.matmul(wm.transpose(0, 2, 1), dyg).reshape(c, kh, kw, z - a, ho, wo)
                    _col2im_add(dxp[:, a:z], dcols, kh, kw, g.d, g.s, ho, wo)
            if need_w:
                dw = dwm.reshape(w.shape)
            if need_x:
                h, wd = x.shape[2:]
                dx = cm(dxp[:, :, g.pb[0]:g.pb[0] + h, g.pb[1]:g.pb[1] + wd])
        out = [dx if need_x else None, dw if need_w else None]
        if has_b:
            out.append(db)
        return out

    @staticmethod
    def _depthwise_backward(xc, w, dyc, g, need_x, need_w):
        ho, wo = g.out
        kh, kw = g.k
        c, n, h, wd = xc.shape
        xp = pad_cm(xc, g.pb, g.pe, g.hp, g.wp) if need_w else None
        dxp = np.zeros((c, n, g.hp, g.wp), dtype=xc.dtype) if need_x else None
        dw = np.empty(w.shape, dtype=w.dtype) if need_w else None
        for a, z in channel_blocks(c, n * g.hp * g.wp):
            dyb = dyc[a:z]
            tmp = np.empty_like(dyb)
            for i in range(kh):
                for j in range(kw):
                    if need_w:
                        np.multiply(dyb, tap(xp[a:z], i, j, g.d, g.s, ho, wo), out=tmp)
                        dw[a:z, 0, i, j] = tmp.reshape(z - a, -1).sum(axis=1)
                    if need_x:
                        np.multiply(dyb, w[a:z, 0, i, j].reshape(-1, 1, 1, 1), out=tmp)
                        tap(dxp[a:z], i, j, g.d, g.s, ho, wo)[...] += tmp
        dx = cm(dxp[:, :, g.pb[0]:g.pb[0] + h, g.pb[1]:g.pb[1] + wd]) if need_x else None
        return dx, dw


class ConvTranspose(NumpyKernel):
    """The adjoint of Conv: forward is Conv's data-backward (GEMM then col2im), backward is
    a Conv forward (im2col of dy then GEMM). W has shape (C, O/group, kh, kw)."""

    op_type = "ConvTranspose"

    def _geom(self, attrs, x_shape, w_shape, groups):
        op = self.op_type
        g = _kernel_geom(op, attrs, w_shape)
        in_sp = x_shape[2:]
        g.pb, g.pe, g.out, _ = conv_transpose_windows(op, attrs, in_sp, g.k, g.s, g.d)
        if min(g.pb + g.pe) < 0:
            raise unsupported(op, "pads", g.pb + g.pe, "non-negative pads")
        # the buffer the taps scatter into: covers every tap and the cropped output window
        g.hp = max(g.s[0] * (in_sp[0] - 1) + (g.k[0] - 1) * g.d[0] + 1, g.pb[0] + g.out[0])
        g.wp = max(g.s[1] * (in_sp[1] - 1) + (g.k[1] - 1) * g.d[1] + 1, g.pb[1] + g.out[1])
        return g

    def forward(self, ctx, inputs, attrs):
        x, w = inputs[0], inputs[1]
        b = inputs[2] if len(inputs) > 2 else None
        check_4d(self.op_type, x)
        groups = int(attrs.get("group", 1))
        n, c, h, wd = x.shape
        if w.shape[0] != c or c % groups:
            raise unsupported(self.op_type, "group", groups,
                              f"W.shape[0] == C={c} and a group count dividing C")
        o = w.shape[1] * groups
        g = self._geom(attrs, x.shape, w.shape, groups)
        kh, kw = g.k
        xc = cm(x)
        wt = w.reshape(groups, c // groups, -1).transpose(0, 2, 1)  # (g, Og*kk, Cg)
        full = np.zeros((o, n, g.hp, g.wp), dtype=x.dtype)
        for a, z in _chunks(n, o * kh * kw * h * wd * x.itemsize):
            xg = np.ascontiguousarray(xc[:, a:z]).reshape(groups, c // groups, -1)
            cols = np.matmul(wt, xg).reshape(o, kh, kw, z - a, h, wd)
            _col2im_add(full[:, a:z], cols, kh, kw, g.d, g.s, h, wd)
            del cols
        y = full[:, :, g.pb[0]:g.pb[0] + g.out[0], g.pb[1]:g.pb[1] + g.out[1]]
        if b is not None:
            y += b.reshape(o, 1, 1, 1)
        return [cm(y)], (x, w, b is not None, groups, g)

    def backward(self, ctx, saved, grads, attrs):
        x, w, has_b, groups, g = saved
        dy = grads[0]
        n, c, h, wd = x.shape
        o = w.shape[1] * groups
        kh, kw = g.k
        need_x, need_w = needs(ctx, 0), needs(ctx, 1)
        dyc = cm(dy)
        dyp = pad_cm(dyc, g.pb, [0, 0], g.hp, g.wp)
        if dyp is dyc:
            dyp = np.ascontiguousarray(dyc)
        wm = w.reshape(groups, c // groups, -1)  # (g, Cg, Og*kk)
        dx = np.empty((c, n, h, wd), dtype=x.dtype) if need_x else None
        dwm = np.zeros(wm.shape, dtype=w.dtype) if need_w else None
        xc = cm(x)
        for a, z in _chunks(n, o * kh * kw * h * wd * x.itemsize):
            ln = (z - a) * h * wd
            cols = _im2col(dyp[:, a:z], kh, kw, g.d, g.s, h, wd).reshape(groups, -1, ln)
            if need_x:
                dx[:, a:z] = np.matmul(wm, cols).reshape(c, z - a, h, wd)
            if need_w:
                xg = np.ascontiguousarray(xc[:, a:z]).reshape(groups, c // groups, ln)
                dwm += np.matmul(xg, cols.transpose(0, 2, 1))
            del cols
        out = [cm(dx) if need_x else None, dwm.reshape(w.shape) if need_w else None]
        if has_b:
            out.append(channel_sum(dy) if needs(ctx, 2) else None)
        return out
