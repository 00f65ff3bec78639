"""One-chunk groups == 1 Convs (small maps, batch 1) whose backward runs its dx and dW GEMMs
as two parallel tasks (ops/conv/gemm.py): against torch autograd in float64, equal to the
unsplit path, the same bits at 1, 2 and 3 threads, and the split chosen from the GEMM size
alone."""
from __future__ import annotations

import numpy as np
import pytest

import dlbatch.backends.numpy_cpu.ops.conv.gemm as gemm_mod
import dlbatch.backends.numpy_cpu.ops.conv.plan as plan_mod
from dlbatch.backends.numpy_cpu import parallel
from dlbatch.backends.numpy_cpu.ops.conv.geometry import conv_geom

from ._ref import assert_matches_torch, assert_same_bits_at_1_2_3_threads, forward_backward

torch = pytest.importorskip("torch")
F = torch.nn.functional

# (N, C, H, W), O, kernel, strides, pads (top, left, bottom, right), bias
GEOMETRIES = [
    ((1, 6, 9, 8), 10, (3, 3), (1, 1), (1, 1, 1, 1), True),  # stride 1: shared columns backward
    ((1, 5, 11, 10), 8, (3, 3), (2, 2), (1, 1, 1, 1), False),  # strided: phase-plane dx
    ((2, 7, 6, 5), 6, (1, 1), (1, 1), (0, 0, 0, 0), True),  # 1x1: the input is the column matrix
    ((1, 4, 9, 9), 7, (3, 2), (2, 1), (0, 1, 2, 0), True),  # uneven kernel, pads and strides
]


class _RunSpy:
    """Records the number of items of every parallel.run call."""

    def __init__(self, monkeypatch):
        self.sizes = []
        run = parallel.run

        def spy(fn, items):
            items = list(items)
            self.sizes.append(len(items))
            return run(fn, items)

        monkeypatch.setattr(parallel, "run", spy)


def _attrs(k, s, p):
    return {"kernel_shape": list(k), "strides": list(s), "pads": list(p)}


def _step(x, w, b, attrs):
    outs, grads, dy = forward_backward("Conv", [x, w] + ([b] if b is not None else []), attrs)
    return outs, grads, dy


@pytest.mark.parametrize("shape,o,k,s,p,bias", GEOMETRIES)
def test_split_conv_matches_torch_autograd_float64(shape, o, k, s, p, bias, monkeypatch):
    monkeypatch.setattr(gemm_mod, "SPLIT_GEMM_MACS", 0)  # these small shapes take the split path
    attrs = _attrs(k, s, p)
    plan = plan_mod.plan_for(shape, o, conv_geom("Conv", attrs, shape, (o, shape[1]) + k), 8)
    assert len(plan.chunks) == 1
    spy = _RunSpy(monkeypatch)
    r = np.random.default_rng(0)
    x, w = r.standard_normal(shape), r.standard_normal((o, shape[1]) + k)
    b = r.standard_normal(o) if bias else None
    outs, grads, dy = _step(x, w, b, attrs)
    assert 2 in spy.sizes  # the backward's dx | dW
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True) if bias else None
    y = F.conv2d(F.pad(xt, (p[1], p[3], p[0], p[2])), wt, bt, stride=s)
    y.backward(torch.tensor(dy))
    assert_matches_torch(outs, grads, y, [xt, wt, bt])


@pytest.mark.parametrize("shape,o,k,s,p,bias", GEOMETRIES)
def test_split_conv_same_bits_at_1_2_3_threads_and_as_unsplit(shape, o, k, s, p, bias, monkeypatch):
    attrs = _attrs(k, s, p)
    r = np.random.default_rng(2)
    x, w = r.standard_normal(shape).astype(np.float32), r.standard_normal((o, shape[1]) + k).astype(np.float32)
    b = r.standard_normal(o).astype(np.float32) if bias else None

    def step():
        outs, grads, _ = _step(x, w, b, attrs)
        return outs + grads

    unsplit = step()
    monkeypatch.setattr(gemm_mod, "SPLIT_GEMM_MACS", 0)
    assert_same_bits_at_1_2_3_threads(step)
    for a, c in zip(step(), unsplit):  # the same GEMMs, only run as separate tasks
        if a is not None:
            np.testing.assert_array_equal(a, c)


def test_split_is_chosen_from_gemm_size(monkeypatch):
    """A tiny one-chunk Conv stays in the caller (no task list of more than one item); one whose
    GEMM reaches SPLIT_GEMM_MACS runs its backward GEMMs as parallel tasks."""
    attrs = _attrs((3, 3), (1, 1), (1, 1, 1, 1))
    r = np.random.default_rng(3)
    for shape, o, split in (((1, 4, 6, 6), 4, False), ((1, 64, 16, 16), 128, True)):
        geom = conv_geom("Conv", attrs, shape, (o, shape[1], 3, 3))
        plan = plan_mod.plan_for(shape, o, geom, 4)
        assert len(plan.chunks) == 1
        assert (o * plan.ckk * plan.chunk_len(0) >= gemm_mod.SPLIT_GEMM_MACS) == split
        spy = _RunSpy(monkeypatch)
        x = r.standard_normal(shape).astype(np.float32)
        w = r.standard_normal((o, shape[1], 3, 3)).astype(np.float32)
        _step(x, w, None, attrs)
        assert (max(spy.sizes) > 1) == split, spy.sizes
        monkeypatch.undo()


@pytest.mark.parametrize("s", [(1, 1), (2, 2)])
def test_row_chunks_cut_to_row_budget_match_torch_and_threads(s, monkeypatch):
    """A sample whose columns exceed COLS_BUDGET is cut into row chunks of at most ROW_BUDGET
    (many chunks, each kept in cache), with the results of torch autograd in float64 and the
    same bits at 1, 2 and 3 threads."""
    shape, o, k, p = (1, 6, 23, 11), 5, (3, 3), (1, 1, 1, 1)
    attrs = _attrs(k, s, p)
    geom = conv_geom("Conv", attrs, shape, (o, shape[1]) + k)
    row = shape[1] * 9 * geom.out[1] * 8  # bytes of columns per output row (float64)
    monkeypatch.setattr(plan_mod, "COLS_BUDGET", 4 * row)  # one sample is more: rows are split
    monkeypatch.setattr(plan_mod, "ROW_BUDGET", 2 * row)
    plan = plan_mod.plan_for(shape, o, geom, 8)
    assert plan.row_split and len(plan.chunks) > plan_mod.MIN_CHUNKS
    assert max(plan.ckk * plan.chunk_len(i) * 8 for i in range(len(plan.chunks))) <= 2 * row
    r = np.random.default_rng(4)
    x, w = r.standard_normal(shape), r.standard_normal((o, shape[1]) + k)
    outs, grads, dy = _step(x, w, None, attrs)
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    y = F.conv2d(F.pad(xt, (p[1], p[3], p[0], p[2])), wt, stride=s)
    y.backward(torch.tensor(dy))
    assert_matches_torch(outs, grads, y, [xt, wt])
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    assert_same_bits_at_1_2_3_threads(lambda: [a for a in sum(_step(x32, w32, None, attrs)[:2], []) if a is not None])
