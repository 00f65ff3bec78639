"""The GEMM-then-shift Conv forward for few output channels (ops/conv/kn2row.py) against torch
autograd in float64 (the backward is the usual one), and the same bits at 1, 2 and 3 threads."""
from __future__ import annotations

import numpy as np
import pytest

import dlbatch.backends.numpy_cpu.ops.conv.kn2row as kn2row_mod
from dlbatch.backends.numpy_cpu.ops.conv.geometry import conv_geom

from ._ref import assert_matches_torch, assert_same_bits_at_1_2_3_threads, forward_backward

torch = pytest.importorskip("torch")
F = torch.nn.functional

# (N, C, H, W), O, kernel, strides, dilations, pads (top, left, bottom, right), bias
GEOMETRIES = [
    ((3, 8, 9, 10), 3, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), True),
    ((2, 10, 11, 9), 4, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1), False),
    ((2, 6, 12, 12), 2, (5, 3), (1, 2), (2, 1), (4, 1, 3, 1), True),
    ((5, 4, 7, 8), 1, (2, 2), (1, 1), (1, 1), (0, 0, 0, 0), False),
    ((2, 9, 10, 10), 4, (1, 3), (3, 1), (1, 1), (0, 1, 0, 1), False),
]


@pytest.mark.parametrize("shape,o,k,s,d,p,bias", GEOMETRIES)
def test_kn2row_conv_matches_torch_autograd_float64(shape, o, k, s, d, p, bias):
    attrs = {"strides": list(s), "dilations": list(d), "pads": list(p), "kernel_shape": list(k)}
    assert kn2row_mod.applies(shape, (o, shape[1]) + k, conv_geom("Conv", attrs, shape, (o, shape[1]) + k))
    r = np.random.default_rng(0)
    x, w = r.standard_normal(shape), r.standard_normal((o, shape[1]) + k)
    b = r.standard_normal(o) if bias else None
    outs, grads, dy = forward_backward("Conv", [x, w] + ([b] if bias else []), attrs)
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True) if bias else None
    y = F.conv2d(F.pad(xt, (p[1], p[3], p[0], p[2])), wt, bt, stride=s, dilation=d)
    y.backward(torch.tensor(dy))
    assert_matches_torch(outs, grads, y, [xt, wt])


def test_kn2row_is_kept_for_few_outputs_from_many_inputs():
    g = conv_geom("Conv", {"pads": [1, 1, 1, 1]}, (2, 48, 8, 8), (12, 48, 3, 3))
    assert kn2row_mod.applies((2, 48, 8, 8), (12, 48, 3, 3), g)
    assert not kn2row_mod.applies((2, 16, 8, 8), (16, 16, 3, 3), g)  # C == O: im2col's GEMM is as good
    assert not kn2row_mod.applies((2, 96, 8, 8), (48, 96, 3, 3), g)  # many outputs
    g1 = conv_geom("Conv", {}, (2, 48, 8, 8), (12, 48, 1, 1))
    assert not kn2row_mod.applies((2, 48, 8, 8), (12, 48, 1, 1), g1)  # 1x1: the input is the columns


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kn2row_same_bits_at_1_2_3_threads(dtype, monkeypatch):
    monkeypatch.setattr(kn2row_mod, "CHUNK_BYTES", 1 << 12)  # several sample chunks
    r = np.random.default_rng(1)
    x, w, b = (r.standard_normal((7, 12, 9, 11)).astype(dtype), r.standard_normal((5, 12, 3, 3)).astype(dtype),
               r.standard_normal(5).astype(dtype))
    attrs = {"pads": [1, 1, 1, 1], "strides": [2, 1]}

    def step():
        outs, grads, _ = forward_backward("Conv", [x, w, b], attrs)
        return outs + grads

    assert_same_bits_at_1_2_3_threads(step)
