"""Resize over H and W in channel-major blocks (ops/resize.py) against torch autograd in
float64, its output keeping the channel-major layout, and the same bits at 1, 2 and 3 threads."""
from __future__ import annotations

import numpy as np
import pytest

import dlbatch.backends.numpy_cpu.ops._util as util_mod

from ._ref import assert_same_bits_at_1_2_3_threads, forward_backward

torch = pytest.importorskip("torch")
F = torch.nn.functional

# ONNX attributes, output size, the torch call
CASES = [
    ({"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}, (14, 18),
     lambda t: F.interpolate(t, size=(14, 18), mode="bilinear", align_corners=False)),
    ({"mode": "linear", "coordinate_transformation_mode": "align_corners"}, (11, 9),
     lambda t: F.interpolate(t, size=(11, 9), mode="bilinear", align_corners=True)),
    ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}, (14, 18),
     lambda t: F.interpolate(t, size=(14, 18), mode="nearest")),  # integer factors: repeats
    ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}, (10, 13),
     lambda t: F.interpolate(t, size=(10, 13), mode="nearest")),  # other factors: gathers
    ({"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}, (7, 18),
     lambda t: F.interpolate(t, size=(7, 18), mode="bilinear", align_corners=False)),  # W only
]


def _sizes(shape, out):
    return np.array(list(shape[:2]) + list(out), dtype=np.int64)


@pytest.mark.parametrize("attrs,out,ref", CASES)
def test_resize_matches_torch_autograd_float64(attrs, out, ref):
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 9))
    outs, grads, dy = forward_backward("Resize", [x, np.zeros(0), np.zeros(0), _sizes(x.shape, out)], attrs)
    xt = torch.tensor(x, requires_grad=True)
    y = ref(xt)
    y.backward(torch.tensor(dy))
    assert outs[0].shape == tuple(y.shape)
    np.testing.assert_allclose(outs[0], y.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grads[0], xt.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_resize_keeps_the_channel_major_layout():
    from ._ref import KERNEL, channel_major
    from dlbatch.core.backend import OpContext
    x = channel_major(np.random.default_rng(0).standard_normal((2, 3, 7, 9)))
    ctx = OpContext(training=True, needs_input_grad=(True, False, False, False), opset=17)
    attrs, out, _ = CASES[0]
    (y,), _ = KERNEL["Resize"].forward(ctx, [x, np.zeros(0), np.zeros(0), _sizes(x.shape, out)], attrs)
    assert y.swapaxes(0, 1).flags.c_contiguous


@pytest.mark.parametrize("case", [0, 2, 3])
def test_resize_same_bits_at_1_2_3_threads(case, monkeypatch):
    monkeypatch.setattr(util_mod, "TASK_ELEMS", 1 << 8)  # several channel blocks
    attrs, out, _ = CASES[case]
    x = np.random.default_rng(1).standard_normal((3, 10, 7, 9)).astype(np.float32)

    def step():
        outs, grads, _ = forward_backward("Resize", [x, np.zeros(0, np.float32), np.zeros(0, np.float32),
                                                     _sizes(x.shape, out)], attrs)
        return outs + grads[:1]

    assert_same_bits_at_1_2_3_threads(step)
