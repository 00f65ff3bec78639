"""Clip with constant bounds (ReLU6) runs as a clamp with number bounds and a one-pass backward;
checked against torch autograd of the element-wise definition in float64 (gradient passed where
lo <= x <= hi, the numpy backend's rule), at the bounds exactly, and at 1, 2, 3 threads."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dlbatch.backends.torch.kernel import TorchOpContext  # noqa: E402
from dlbatch.backends.torch.ops.activations import Clip  # noqa: E402

from ._ref import assert_same_bits_at_1_2_3_threads  # noqa: E402

BOUNDS = [(0.0, 6.0), (-1.5, None), (None, 0.25), (2.0, -1.0), (0.1, 0.1)]


def _x(dtype, lo, hi, shape=(3, 5, 7, 6)):
    """Random values, some exactly at the bounds (where the gradient rule matters)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-4, 8, size=shape)
    flat = x.reshape(-1)
    for i, b in enumerate(v for v in (lo, hi) if v is not None):
        flat[i::7] = b
    return torch.from_numpy(x).to(dtype).contiguous(memory_format=torch.channels_last)


def _clip(x, lo, hi, opset, dy):
    ctx = TorchOpContext(training=True, bn_momentum=0.9, opset=opset, num_outputs=1, device="cpu")
    xx = x.detach().clone().requires_grad_(True)
    if opset >= 11:
        inputs = [xx] + [None if v is None else torch.tensor(v, dtype=x.dtype) for v in (lo, hi)]
        attrs = {}
    else:
        inputs = [xx]
        attrs = {k: v for k, v in (("min", lo), ("max", hi)) if v is not None}
    y = Clip().forward(ctx, inputs, attrs)[0]
    g, = torch.autograd.grad(y, xx, dy)
    return y.detach(), g


def _reference(x, lo, hi, dy):
    """float64 max/min written out, and the inclusive gradient mask."""
    x = x.double()
    mask = torch.ones_like(x, dtype=torch.bool)
    y = x
    if lo is not None:
        mask &= x >= lo
        y = torch.maximum(y, torch.tensor(lo, dtype=torch.float64))
    if hi is not None:
        mask &= x <= hi
        y = torch.minimum(y, torch.tensor(hi, dtype=torch.float64))
    return y.detach(), dy.double() * mask


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("lo,hi", BOUNDS)
@pytest.mark.parametrize("opset", [6, 13])
def test_clip_matches_reference(dtype, lo, hi, opset):
    x = _x(dtype, lo, hi)
    dy = torch.from_numpy(np.random.default_rng(1).standard_normal(x.shape)).to(dtype)
    y, g = _clip(x, lo, hi, opset, dy)
    ry, rg = _reference(x, lo, hi, dy)
    if dtype == torch.float64:
        assert torch.equal(y, ry) and torch.equal(g, rg)
    else:  # the float32 bounds of an opset-13 input differ from the float64 ones by rounding only
        torch.testing.assert_close(y.double(), ry, rtol=0, atol=1e-6)
        exact = [v for v in (lo, hi) if v is not None and float(np.float32(v)) == v]
        if len(exact) == len([v for v in (lo, hi) if v is not None]):
            assert torch.equal(g.double(), rg)
    assert y.is_contiguous(memory_format=torch.channels_last)


def test_clip_same_bits_at_1_2_3_threads():
    x = _x(torch.float32, 0.0, 6.0, shape=(8, 16, 24, 24))
    dy = torch.from_numpy(np.random.default_rng(2).standard_normal(x.shape)).float()
    assert_same_bits_at_1_2_3_threads(lambda: list(_clip(x, 0.0, 6.0, 13, dy)))


def test_trainable_bounds_keep_their_gradient():
    """A bound that needs a gradient takes torch's tensor clamp: its gradient is the sum of dy
    where it clips (torch clamp's rule)."""
    x = _x(torch.float64, None, None)
    lo = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    ctx = TorchOpContext(training=True, bn_momentum=0.9, opset=13, num_outputs=1, device="cpu")
    y = Clip().forward(ctx, [x, lo, None], {})[0]
    dy = torch.ones_like(y)
    g, = torch.autograd.grad(y, lo, dy)
    assert g.item() == float((x < 0.5).sum())
