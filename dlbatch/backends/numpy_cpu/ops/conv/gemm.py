"""groups == 1 Conv as one GEMM per chunk of a ConvPlan, run on the kernel threads: the forward
(with bias, ReLU or max pooling applied while a chunk is in cache) and the backward (dx by
gathering columns of dy for stride 1, else by col2im of W.T @ dy; dW as per-chunk partial
products summed in chunk order, or from the whole column matrix for small maps)."""
from __future__ import annotations

import numpy as np

from ... import buffers, parallel
from .._util import cm, relu_, scratch
from .columns import rows2d, rows2d_or_copy, scratch_buffer
from .geometry import transposed_geom
from .phase_scatter import phase_col2im
from .phases import phase_grid
from .plan import plan_for


FULL_COLS_BUDGET = 16 << 20  # dW of a Conv whose whole column matrix fits this is one K per GEMM
DW_TRANSPOSED_BELOW = 65  # output channels below which dW is computed transposed (64 included:
# the dW GEMM of 64-channel 3x3 convolutions ran 10-12% faster transposed, batch 1 and 16)
DW_BLOCKS = 4  # row blocks (parallel GEMMs) of a full-K dW
SHARED_COLUMNS = True  # stride-1 backward: dW from the columns of dy that dx gathers anyway
PHASE_SCATTER = True  # strided backward: dx through phase planes (.phase_scatter), not col2im
# The backward of a Conv planned as one chunk (small maps: batch 1, late layers) had no parallel
# work: its dx and dW GEMMs (which scale on the kernel threads, unlike im2col's short copies) run
# as two parallel tasks where that chunk's GEMM has at least SPLIT_GEMM_MACS multiply-adds (a
# parallel region costs about 0.05 ms). (Cutting the forward GEMM into output-row blocks instead
# cost 10-20% at one thread: OpenBLAS runs the thinner GEMMs slower.)
SPLIT_GEMM_MACS = 4 << 20


def _partial_dw(cols: np.ndarray, rows: np.ndarray, out: np.ndarray, transposed: bool) -> None:
    """One chunk's dW partial product rows @ cols.T into `out`, or its transpose cols @ rows.T
    when `transposed` (OpenBLAS runs that orientation faster for few rows, DW_TRANSPOSED_BELOW)."""
    if transposed:
        np.matmul(cols, rows.T, out=out)
    else:
        np.matmul(rows, cols.T, out=out)


def forward_tasks(x, w, b, g, relu: bool = False, pool=None, wb=None, out=None):
    """groups == 1: the channel-major output (O, N, ho, wo) and its chunk tasks (bias and an
    optional ReLU are applied to each chunk while it is in cache). With pool = (geometry,
    function(chunk, geometry, out)), each chunk is pooled from cache instead and the output is
    the pooled (O, N, pho, pwo); None if the chunks are not whole samples. `wb`, where the
    caller has it, is the GEMM weight matrix [W | b] of shape (O, C*kh*kw + 1). `out` (no
    pooling): a C-contiguous (O, N, ho, wo) array to write instead of a new one (a group's
    channel slice of a grouped convolution's output)."""
    o = w.shape[0]
    plan = plan_for(x.shape, o, g, x.itemsize)
    if pool is not None and plan.row_split:
        return None
    xc = cm(x)
    if pool is None:
        y = buffers.empty((o, plan.n, plan.ho, plan.wo), x.dtype) if out is None else out
    else:
        pgeom, pool_fn = pool
        y = buffers.empty((o, plan.n) + tuple(pgeom[5]), x.dtype)
    bias = None if b is None else b.astype(x.dtype, copy=False).reshape(o, 1)
    ones = bias is not None and not plan.direct  # the bias rides in the GEMM (see ConvPlan.im2col)
    if wb is not None:
        wm = wb if ones else wb[:, :-1]
    else:
        wm = w.reshape(o, -1).astype(x.dtype, copy=False)
        if ones:
            wm = np.concatenate([wm, bias], axis=1)

    def chunk(k):
        n0, n1, r0, r1 = plan.chunks[k]
        if pool is None:
            out = rows2d(y[:, n0:n1, r0:r1])
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


def run_tasks(tasks):
    parallel.run(lambda t: t[0](t[1]), tasks)


def conv_forward(x, w, b, g, relu: bool = False, wb=None) -> np.ndarray:
    y, tasks = forward_tasks(x, w, b, g, relu, wb=wb)
    run_tasks(tasks)
    return y


def _dw_full_k(plan, xc, dyc, o, w, dtype, dx_tasks):
    """dW from the whole column matrix: im2col chunks (alongside the dx tasks), then dW.T row
    blocks, each one GEMM over every position."""
    lens = [plan.chunk_len(k) for k in range(len(plan.chunks))]
    starts = np.cumsum([0] + lens)
    cols = buffers.empty((plan.ckk, int(starts[-1])), dtype)

    def build(k):
        cols[:, starts[k]:starts[k + 1]] = plan.im2col(xc, k)

    run_tasks(dx_tasks + [(build, k) for k in range(len(lens))])
    dy2 = rows2d(dyc)
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


def _backward_shared_columns(xc, dyc, wt, tgeom, w, dx_out=None):
    """Stride-1 backward from one column matrix per chunk: the columns of dy that the input
    gradient gathers (dx = W' @ cols, W' the flipped, transposed kernel) also give
    dW[o, c, a, b] = (x @ cols.T)[c, (o, kh-1-a, kw-1-b)], so x itself is never expanded into
    columns. Returns (dx channel-major, dw)."""
    o, c, kh, kw = w.shape
    n = xc.shape[1]
    dtype = xc.dtype
    tplan = plan_for((n, o) + tuple(dyc.shape[2:]), c, tgeom, dtype.itemsize)
    dxc = buffers.empty((c, n) + tuple(tgeom.out), dtype) if dx_out is None else dx_out
    wtm = wt.reshape(c, -1)
    transposed = c < DW_TRANSPOSED_BELOW  # as in conv_backward: the faster GEMM orientation
    nch = len(tplan.chunks)
    parts = buffers.empty((nch, tplan.ckk, c) if transposed else (nch, c, tplan.ckk), dtype)

    def chunk(k):
        n0, n1, r0, r1 = tplan.chunks[k]
        cols = tplan.im2col(dyc, k)
        np.matmul(wtm, cols, out=rows2d(dxc[:, n0:n1, r0:r1]))
        # x itself is the row operand (copied only where it is not channel-major)
        _partial_dw(cols, rows2d_or_copy(xc[:, n0:n1, r0:r1], "conv_x"), parts[k], transposed)

    if nch == 1 and c * tplan.ckk * tplan.chunk_len(0) >= SPLIT_GEMM_MACS:
        # one chunk: its columns in the caller, then the dx and dW GEMMs beside each other
        cols = tplan.im2col(dyc, 0)
        parallel.run(lambda t: t(), [lambda: np.matmul(wtm, cols, out=rows2d(dxc)),
                                     lambda: _partial_dw(cols, rows2d_or_copy(xc, "conv_x"), parts[0], transposed)])
    else:
        parallel.run(chunk, range(nch))
    dwp = parts[0] if nch == 1 else parts.sum(axis=0)
    if transposed:  # rows (o, i, j), columns c
        flipped = dwp.reshape(o, kh, kw, c)[:, ::-1, ::-1, :].transpose(0, 3, 1, 2)
    else:  # rows c, columns (o, i, j)
        flipped = dwp.reshape(c, o, kh, kw)[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
    return dxc, np.ascontiguousarray(flipped, dtype=w.dtype)


def conv_backward(x, w, dy, g, need_x: bool, need_w: bool, dx_out=None):
    """groups == 1: (dx channel-major (C, N, H, W) or None, dw or None); dx is written into
    `dx_out` (C-contiguous (C, N, H, W)) where given."""
    o = w.shape[0]
    plan = plan_for(x.shape, o, g, x.itemsize)
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
        tgeom = None if plan.direct else transposed_geom(g, x.shape)
        if tgeom is not None:
            # stride 1: dx is the convolution of dy with the flipped, transposed kernel, which
            # gathers columns of dy (plain copies) instead of scatter-adding column gradients
            wt = np.ascontiguousarray(wm.reshape(w.shape)[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
            if need_w and SHARED_COLUMNS and not _full_k(plan, o, x.itemsize):
                return _backward_shared_columns(xc, dyc, wt, tgeom, w, dx_out)
            dxc, dx_tasks = forward_tasks(cm(dyc), wt, None, tgeom, out=dx_out)
        else:
            shape = (plan.c, plan.n) + tuple(x.shape[2:])
            zero = plan.row_split and not plan.direct
            if dx_out is not None:
                dxc = dx_out
                if zero:
                    dxc.fill(0)
            else:
                dxc = buffers.zeros(shape, x.dtype) if zero else buffers.empty(shape, x.dtype)
            scatter = True
    if not (need_w or scatter):
        run_tasks(dx_tasks)
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
    # strided convolutions cut into whole samples scatter through phase planes (flat rows)
    phases = None
    if (scatter and PHASE_SCATTER and not plan.direct and not plan.row_split and g.s != [1, 1]
            and g.k[0] * g.k[1] > 1):  # (a 1x1 kernel adds nothing up: col2im is one strided copy)
        phases = phase_grid(x.shape, g)
    parts = None
    if need_w:
        parts = buffers.empty((nch, plan.ckk, o) if transposed else (nch, o, plan.ckk), x.dtype)

    def chunk(k, dw_part=True, dx_part=True):
        n0, n1, r0, r1 = plan.chunks[k]
        dy2 = rows2d(dyc[:, n0:n1, r0:r1])
        if need_w and dw_part:
            _partial_dw(plan.im2col(xc, k), dy2, parts[k], transposed)
        if scatter and dx_part:
            if plan.direct:
                np.matmul(wm.T, dy2, out=rows2d(dxc[:, n0:n1, r0:r1]))
                return
            if phases is not None:
                phase_col2im(phases, wm, dyc, dxc, n0, n1)
                return
            if not plan.assign_first and not plan.row_split:
                dxc[:, n0:n1] = 0
            dcols = scratch_buffer(1, plan.ckk * dy2.shape[1], x.dtype).reshape(plan.ckk, -1)
            np.matmul(wm.T, dy2, out=dcols)
            plan.col2im(dxc, dcols, k)

    if scatter and plan.row_split and not plan.direct:
        # row chunks of one sample share input rows: even chunks, then odd ones (fixed order)
        parallel.run(chunk, range(0, nch, 2))
        parallel.run(chunk, range(1, nch, 2))
    elif nch == 1 and need_w and scatter and o * plan.ckk * plan.chunk_len(0) >= SPLIT_GEMM_MACS:
        # one chunk: its dW and dx (each a GEMM of this size) as two parallel tasks
        parallel.run(lambda part: chunk(0, *part), [(False, True), (True, False)])
    else:
        # dx chunks (bigger) first, then the dW chunks, all in one parallel region
        run_tasks(dx_tasks + [(chunk, k) for k in range(nch)])
    dw = None
    if need_w:
        dw = parts[0] if nch == 1 else parts.sum(axis=0)
        dw = np.ascontiguousarray(dw.T if transposed else dw, dtype=w.dtype).reshape(w.shape)
    return dxc, dw
