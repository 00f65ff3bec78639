"""Mul by per-(sample, channel) or per-channel factors (ops/channel_scale.py) against torch
autograd in float64, and the same bits at 1, 2 and 3 threads."""
from __future__ import annotations

import numpy as np
import pytest

import dlbatch.backends.numpy_cpu.ops._util as util_mod
from dlbatch.backends.numpy_cpu.ops.channel_scale import scale_operands

from ._ref import assert_same_bits_at_1_2_3_threads, channel_major, forward_backward

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("s_shape,x_first", [((3, 5, 1, 1), True), ((3, 5, 1, 1), False), ((1, 5, 1, 1), True)])
def test_channel_scale_matches_torch_autograd_float64(s_shape, x_first):
    r = np.random.default_rng(0)
    x, s = r.standard_normal((3, 5, 6, 7)), r.standard_normal(s_shape)
    assert scale_operands(channel_major(x), s) is not None
    ins = [x, s] if x_first else [s, x]
    outs, grads, dy = forward_backward("Mul", ins, {})
    ts = [torch.tensor(v, requires_grad=True) for v in ins]
    y = ts[0] * ts[1]
    y.backward(torch.tensor(dy))
    np.testing.assert_allclose(outs[0], y.detach().numpy(), rtol=1e-13, atol=1e-13)
    for g, t in zip(grads, ts):
        assert g.shape == tuple(t.shape)
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_other_broadcasts_keep_the_general_path():
    x = channel_major(np.ones((2, 3, 4, 5)))
    assert scale_operands(x, np.ones((2, 3, 4, 1))) is None
    assert scale_operands(x, np.ones((2, 3, 1, 1), np.float32)) is None  # mixed dtypes
    assert scale_operands(np.ones((2, 3, 4, 5)), np.ones((2, 3, 1, 1))) is None  # NCHW memory


def test_channel_scale_same_bits_at_1_2_3_threads(monkeypatch):
    monkeypatch.setattr(util_mod, "TASK_ELEMS", 1 << 8)  # several channel blocks
    r = np.random.default_rng(1)
    x, s = r.standard_normal((4, 9, 8, 10)).astype(np.float32), r.standard_normal((4, 9, 1, 1)).astype(np.float32)

    def step():
        outs, grads, _ = forward_backward("Mul", [x, s], {})
        return outs + grads

    assert_same_bits_at_1_2_3_threads(step)
