"""Training batch norm of channels_last tensors whose channel count is not a multiple of the
vector width runs through a widened channel view (ops/batchnorm_lanes.py); checked against
torch autograd of F.batch_norm on NCHW float64 tensors (output, batch statistics, running
statistics, gradients of x, scale and bias), for the channel counts it takes, at 1, 2 and 3
threads. Not bit-identical across thread counts: its reductions are torch's, which split the rows
over the threads, as torch's own channels_last batch norm and convolution weight gradient do
(both differ in the last bits between 1 and 2 threads), so each count is checked against float64."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from dlbatch.backends.torch.kernel import TorchOpContext  # noqa: E402
from dlbatch.backends.torch.ops.batchnorm import BatchNormalization  # noqa: E402
from dlbatch.backends.torch.ops.batchnorm_lanes import LANES, widening  # noqa: E402

from ._ref import at_threads  # noqa: E402

CL = torch.channels_last
MOMENTUM = 0.9  # weight of the old running statistics (ONNX / HALCON convention)


def _data(n, c, h, w, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64) * 3 + 5  # far from zero mean
    scale, bias = torch.randn(c, generator=g, dtype=torch.float64), torch.randn(c, generator=g, dtype=torch.float64)
    mean, var = torch.randn(c, generator=g, dtype=torch.float64), torch.rand(c, generator=g, dtype=torch.float64) + 0.5
    dy = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    return [t.to(dtype) for t in (x, scale, bias, mean, var, dy)]


def _kernel(x, scale, bias, mean, var, dy, eps=1e-5):
    """The backend's BatchNormalization training forward on channels_last x, and the gradients."""
    ctx = TorchOpContext(training=True, bn_momentum=MOMENTUM, opset=17, num_outputs=1, device="cpu")
    xx = x.contiguous(memory_format=CL).requires_grad_(True)
    s, b = scale.clone().requires_grad_(True), bias.clone().requires_grad_(True)
    y = BatchNormalization().forward(ctx, [xx, s, b, mean, var], {"epsilon": eps})[0]
    gx, gs, gb = torch.autograd.grad(y, (xx, s, b), dy.contiguous(memory_format=CL))
    return y, gx, gs, gb, ctx.statistic_updates[3], ctx.statistic_updates[4]


def _reference(x, scale, bias, mean, var, dy, eps=1e-5):
    """F.batch_norm on contiguous float64 tensors (torch's NCHW kernel), its running update."""
    xx = x.double().contiguous().requires_grad_(True)
    s, b = scale.double().requires_grad_(True), bias.double().requires_grad_(True)
    rm, rv = mean.double().clone(), var.double().clone()
    y = F.batch_norm(xx, rm, rv, s, b, True, 1.0 - MOMENTUM, eps)
    gx, gs, gb = torch.autograd.grad(y, (xx, s, b), dy.double())
    return y, gx, gs, gb, rm, rv


@pytest.mark.parametrize("c", [3, 8, 12, 24, 40])
def test_widening_is_taken_and_matches_torch_autograd_float64(c):
    data = _data(4, c, 6, 8, torch.float64)
    assert widening(data[0].contiguous(memory_format=CL)) == LANES // __import__("math").gcd(c, LANES)
    got, ref = _kernel(*data), _reference(*data)
    for name, a, b in zip(("y", "dx", "dscale", "dbias", "running mean", "running var"), got, ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=lambda m: f"{name}: {m}")
    assert got[0].is_contiguous(memory_format=CL) and got[1].is_contiguous(memory_format=CL)


def test_float32_stays_close_to_float64():
    data = _data(8, 12, 16, 16, torch.float32)
    got, ref = _kernel(*data), _reference(*data)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-4)


def test_gradient_in_another_layout_is_accepted():
    x, scale, bias, mean, var, dy = _data(2, 8, 5, 4, torch.float64)
    ctx = TorchOpContext(training=True, bn_momentum=MOMENTUM, opset=17, num_outputs=1, device="cpu")
    xx = x.contiguous(memory_format=CL).requires_grad_(True)
    y = BatchNormalization().forward(ctx, [xx, scale, bias, mean, var], {})[0]
    gx, = torch.autograd.grad(y, xx, dy.contiguous())  # NCHW gradient
    torch.testing.assert_close(gx, _reference(x, scale, bias, mean, var, dy)[1], rtol=1e-12, atol=1e-12)


def test_widening_rule():
    cl = lambda *shape, dtype=torch.float32: torch.zeros(*shape, dtype=dtype).contiguous(memory_format=CL)  # noqa: E731
    assert widening(cl(2, 8, 4, 4)) == 2 and widening(cl(2, 12, 4, 4)) == 4 and widening(cl(2, 24, 4, 4)) == 2
    assert widening(cl(2, 16, 4, 4)) == 0 and widening(cl(2, 48, 4, 4)) == 0  # torch's kernel is vectorised
    assert widening(torch.zeros(2, 8, 4, 4)) == 0  # NCHW: torch's contiguous kernel
    assert widening(cl(1, 8, 3, 3)) == 0  # 9 rows do not split into pairs
    assert widening(cl(2, 8, 1, 1)) == 0 and widening(cl(2, 1, 4, 4)) == 0  # contiguous in both layouts
    assert widening(cl(2, 8, 4, 4, dtype=torch.bfloat16)) == 0
    assert widening(torch.zeros(2, 8, 4)) == 0


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_matches_float64_at_1_2_3_threads(threads):
    data = _data(4, 12, 20, 20, torch.float64, seed=3)
    got, ref = at_threads(threads, lambda: _kernel(*data)), _reference(*data)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
