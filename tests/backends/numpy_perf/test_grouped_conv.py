"""Grouped Conv with few groups (ops/conv/grouped.py: one groups == 1 GEMM plan per group,
written into the group's channel slice) against torch autograd in float64, and the same bits
at 1, 2 and 3 threads."""
from __future__ import annotations

import numpy as np
import pytest

import dlbatch.backends.numpy_cpu.ops.conv.grouped as grouped_mod
import dlbatch.backends.numpy_cpu.ops.conv.plan as plan_mod

from ._ref import assert_matches_torch, assert_same_bits_at_1_2_3_threads, forward_backward

torch = pytest.importorskip("torch")
F = torch.nn.functional

# (N, C, H, W), O, groups, kernel, strides, pads (top, left, bottom, right), bias
GEOMETRIES = [
    ((2, 8, 9, 8), 8, 2, (3, 3), (1, 1), (1, 1, 1, 1), True),  # stride 1: shared-columns backward
    ((3, 8, 10, 11), 12, 4, (3, 3), (2, 2), (1, 1, 1, 1), False),  # stride 2: col2im backward
    ((2, 6, 7, 9), 6, 3, (1, 1), (1, 1), (0, 0, 0, 0), True),  # pointwise groups
    ((2, 4, 8, 8), 8, 4, (3, 1), (1, 2), (1, 0, 2, 0), False),  # one input channel per group
    ((2, 36, 5, 5), 36, 18, (3, 3), (1, 1), (1, 1, 1, 1), False),  # beyond GROUP_LOOP_MAX: batched GEMM
]


@pytest.mark.parametrize("shape,o,groups,k,s,p,bias", GEOMETRIES)
def test_grouped_conv_matches_torch_autograd_float64(shape, o, groups, k, s, p, bias):
    r = np.random.default_rng(0)
    c = shape[1]
    x, w = r.standard_normal(shape), r.standard_normal((o, c // groups) + k)
    b = r.standard_normal(o) if bias else None
    attrs = {"group": groups, "strides": list(s), "pads": list(p), "kernel_shape": list(k)}
    outs, grads, dy = forward_backward("Conv", [x, w] + ([b] if bias else []), attrs)
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True) if bias else None
    y = F.conv2d(F.pad(xt, (p[1], p[3], p[0], p[2])), wt, bt, stride=s, groups=groups)
    y.backward(torch.tensor(dy))
    assert_matches_torch(outs, grads, y, [xt, wt, bt])


def test_group_loop_covers_the_few_group_geometries():
    assert all(g <= grouped_mod.GROUP_LOOP_MAX for _, _, g, *_ in GEOMETRIES[:-1])
    assert GEOMETRIES[-1][2] > grouped_mod.GROUP_LOOP_MAX


@pytest.mark.parametrize("strides", [[1, 1], [2, 2]])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grouped_conv_same_bits_at_1_2_3_threads(strides, dtype, monkeypatch):
    monkeypatch.setattr(plan_mod, "COLS_BUDGET", 1 << 14)  # several chunks per group
    plan_mod._plans.clear()
    r = np.random.default_rng(2)
    x, w = r.standard_normal((5, 8, 12, 10)).astype(dtype), r.standard_normal((16, 4, 3, 3)).astype(dtype)
    b = r.standard_normal(16).astype(dtype)
    attrs = {"group": 2, "strides": strides, "pads": [1, 1, 1, 1]}

    def step():
        outs, grads, _ = forward_backward("Conv", [x, w, b], attrs)
        return outs + grads

    assert_same_bits_at_1_2_3_threads(step)
    plan_mod._plans.clear()
