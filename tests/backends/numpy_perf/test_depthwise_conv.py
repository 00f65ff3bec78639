"""Depthwise Conv (ops/conv/depthwise.py: phase planes, per-tap multiply-adds over flat rows)
against torch autograd in float64, and the same bits at 1, 2 and 3 threads."""
from __future__ import annotations

import numpy as np
import pytest

import dlbatch.backends.numpy_cpu.ops.conv.depthwise as depthwise_mod
import dlbatch.backends.numpy_cpu.ops.conv.phases as phases_mod

from ._ref import assert_matches_torch, assert_same_bits_at_1_2_3_threads, forward_backward

torch = pytest.importorskip("torch")
F = torch.nn.functional

# (N, C, H, W), kernel, strides, dilations, pads (top, left, bottom, right), bias
GEOMETRIES = [
    ((2, 5, 9, 8), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), True),
    ((2, 6, 10, 11), (3, 3), (2, 2), (1, 1), (1, 1, 1, 1), False),
    ((3, 4, 13, 9), (5, 5), (2, 1), (1, 1), (2, 2, 2, 2), True),
    ((1, 3, 12, 12), (3, 3), (3, 3), (1, 1), (0, 0, 0, 0), False),  # stride beyond the kernel rows
    ((2, 4, 11, 10), (3, 2), (1, 2), (2, 1), (2, 0, 1, 1), False),  # dilation, asymmetric pads
    ((2, 3, 7, 7), (1, 1), (2, 2), (1, 1), (0, 0, 0, 0), False),  # 1x1 stride 2: pixels no tap reads
    ((1, 7, 6, 5), (3, 3), (1, 1), (1, 1), (0, 0, 0, 0), True),  # valid padding
]


def _torch(x, w, b, k, s, d, p):
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True) if b is not None else None
    xp = F.pad(xt, (p[1], p[3], p[0], p[2]))
    y = F.conv2d(xp, wt, bt, stride=s, dilation=d, groups=x.shape[1])
    return xt, wt, bt, y


@pytest.mark.parametrize("shape,k,s,d,p,bias", GEOMETRIES)
def test_depthwise_matches_torch_autograd_float64(shape, k, s, d, p, bias):
    r = np.random.default_rng(0)
    c = shape[1]
    x, w = r.standard_normal(shape), r.standard_normal((c, 1) + k)
    b = r.standard_normal(c) if bias else None
    attrs = {"group": c, "strides": list(s), "dilations": list(d), "pads": list(p), "kernel_shape": list(k)}
    outs, grads, dy = forward_backward("Conv", [x, w] + ([b] if bias else []), attrs)
    xt, wt, bt, y = _torch(x, w, b, k, s, d, p)
    y.backward(torch.tensor(dy))
    assert_matches_torch(outs, grads, y, [xt, wt, bt])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_depthwise_same_bits_at_1_2_3_threads_and_in_one_channel_blocks(dtype, monkeypatch):
    r = np.random.default_rng(3)
    x, w = r.standard_normal((4, 13, 20, 18)).astype(dtype), r.standard_normal((13, 1, 3, 3)).astype(dtype)
    attrs = {"group": 13, "strides": [2, 2], "pads": [1, 1, 1, 1]}

    def step():
        outs, grads, _ = forward_backward("Conv", [x, w], attrs)
        return outs + grads

    monkeypatch.setattr(depthwise_mod, "BLOCK_ELEMS", 1 << 10)  # several blocks, split among threads
    phases_mod._grids.clear()
    assert len(depthwise_mod.channel_blocks(phases_mod.phase_grid((4, 13, 20, 18), _geom(x.shape, w.shape, attrs)), 13)) >= 4
    assert_same_bits_at_1_2_3_threads(step)
    blocked = step()
    monkeypatch.setattr(depthwise_mod, "BLOCK_ELEMS", 1 << 30)  # one block per MIN_BLOCKS share
    phases_mod._grids.clear()
    whole = step()
    phases_mod._grids.clear()
    for a, b in zip(blocked, whole):  # channel blocks do not change any channel's arithmetic
        np.testing.assert_array_equal(a, b)


def _geom(x_shape, w_shape, attrs):
    from dlbatch.backends.numpy_cpu.ops.conv.geometry import conv_geom
    return conv_geom("Conv", attrs, x_shape, w_shape)
