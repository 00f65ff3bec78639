"""The strided Conv input gradient through phase planes (ops/conv/phase_scatter.py) against
torch autograd in float64, equal to the col2im path it replaces, and the same bits at 1, 2 and
3 threads."""
from __future__ import annotations

import numpy as np
import pytest

import dlbatch.backends.numpy_cpu.ops.conv.gemm as gemm_mod
import dlbatch.backends.numpy_cpu.ops.conv.plan as plan_mod

from ._ref import assert_matches_torch, assert_same_bits_at_1_2_3_threads, forward_backward

torch = pytest.importorskip("torch")
F = torch.nn.functional

# (N, C, H, W), O, kernel, strides, dilations, pads (top, left, bottom, right)
GEOMETRIES = [
    ((3, 4, 11, 10), 6, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1)),
    ((2, 3, 13, 12), 5, (5, 3), (3, 2), (1, 1), (2, 1, 0, 1)),
    ((2, 5, 9, 9), 4, (2, 2), (2, 2), (1, 1), (0, 0, 0, 0)),
    ((2, 3, 12, 11), 4, (3, 3), (2, 1), (2, 2), (2, 1, 2, 3)),  # dilated, one axis strided
    ((2, 3, 10, 10), 4, (2, 1), (3, 3), (1, 1), (0, 0, 0, 0)),  # pixels no tap reads
]


@pytest.mark.parametrize("phase", [True, False])
@pytest.mark.parametrize("shape,o,k,s,d,p", GEOMETRIES)
def test_strided_conv_gradients_match_torch_autograd_float64(shape, o, k, s, d, p, phase, monkeypatch):
    monkeypatch.setattr(gemm_mod, "PHASE_SCATTER", phase)
    r = np.random.default_rng(0)
    x, w, b = r.standard_normal(shape), r.standard_normal((o, shape[1]) + k), r.standard_normal(o)
    attrs = {"strides": list(s), "dilations": list(d), "pads": list(p), "kernel_shape": list(k)}
    outs, grads, dy = forward_backward("Conv", [x, w, b], attrs)
    xt, wt, bt = (torch.tensor(v, requires_grad=True) for v in (x, w, b))
    y = F.conv2d(F.pad(xt, (p[1], p[3], p[0], p[2])), wt, bt, stride=s, dilation=d)
    y.backward(torch.tensor(dy))
    assert_matches_torch(outs, grads, y, [xt, wt, bt])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_strided_conv_backward_same_bits_at_1_2_3_threads_and_as_col2im(dtype, monkeypatch):
    monkeypatch.setattr(plan_mod, "COLS_BUDGET", 1 << 15)  # several sample chunks, no row split
    plan_mod._plans.clear()
    r = np.random.default_rng(1)
    x, w = r.standard_normal((6, 8, 14, 13)).astype(dtype), r.standard_normal((12, 8, 3, 3)).astype(dtype)
    attrs = {"strides": [2, 2], "pads": [1, 1, 1, 1]}

    def step():
        outs, grads, _ = forward_backward("Conv", [x, w], attrs)
        return outs + grads

    plan = plan_mod.plan_for((6, 8, 14, 13), 12, _geom(x.shape, w.shape, attrs), x.itemsize)
    assert len(plan.chunks) > 1 and not plan.row_split
    assert_same_bits_at_1_2_3_threads(step)
    phase = step()
    monkeypatch.setattr(gemm_mod, "PHASE_SCATTER", False)
    for a, b in zip(phase, step()):  # the same sums in the same tap order as col2im
        np.testing.assert_array_equal(a, b)
    plan_mod._plans.clear()


def _geom(x_shape, w_shape, attrs):
    from dlbatch.backends.numpy_cpu.ops.conv.geometry import conv_geom
    return conv_geom("Conv", attrs, x_shape, w_shape)
