"""BatchNormalization fused with Clip or HardSwish (ops/bn_activation.py) against torch
autograd in float64, the same bits at 1, 2 and 3 threads, and the program fusing training-form
exports (batch norm with its unused running-statistics outputs) with the unfused plan's results."""
from __future__ import annotations

import numpy as np
import pytest

import dlbatch.backends.numpy_cpu.ops._util as util_mod
from dlbatch.backends.numpy_cpu.ops.fused import FUSED
from dlbatch.core.backend import OpContext

from ._ref import assert_same_bits_at_1_2_3_threads, channel_major

torch = pytest.importorskip("torch")
F = torch.nn.functional

ACTS = {"Clip": (lambda t: torch.clamp(t, 0.0, 6.0)), "HardSwish": F.hardswish}


def _inputs(dtype, shape=(4, 6, 9, 7), seed=0):
    r = np.random.default_rng(seed)
    x = (r.standard_normal(shape) * 3 + 1).astype(dtype)
    c = shape[1]
    bn = [r.uniform(0.5, 2.5, c).astype(dtype), r.standard_normal(c).astype(dtype),
          np.zeros(c, dtype), np.ones(c, dtype)]
    return x, bn


def _fused(act, x, bn, training=True, dy=None):
    extra = [np.array(0.0, x.dtype), np.array(6.0, x.dtype)] if act == "Clip" else []
    attrs = (({"epsilon": 1e-5}, 5), ({}, 1 + len(extra)))
    k = FUSED[("BatchNormalization", act)]
    ctx = OpContext(training=training, needs_input_grad=(True, True, True, False, False) + (False,) * len(extra),
                    rng=np.random.default_rng(0), opset=17)
    (y,), saved = k.forward(ctx, [channel_major(x)] + bn + extra, attrs)
    if dy is None:
        return np.array(y), None, ctx
    grads = k.backward(ctx, saved, [channel_major(dy)], attrs)
    return np.array(y), [np.array(g) for g in grads[:3]], ctx


@pytest.mark.parametrize("act", list(ACTS))
def test_batchnorm_activation_matches_torch_autograd_float64(act):
    x, bn = _inputs(np.float64)
    x[0, 0, 0, :3] = [-3.0, 3.0, 6.0]  # values landing near the activations' kinks stay smooth in x
    dy = np.random.default_rng(1).standard_normal(x.shape)
    y, (dx, ds, db), ctx = _fused(act, x, bn, dy=dy)
    xt, st, bt = (torch.tensor(v, requires_grad=True) for v in (x, bn[0], bn[1]))
    rm, rv = torch.tensor(bn[2]), torch.tensor(bn[3])
    yt = ACTS[act](F.batch_norm(xt, rm, rv, st, bt, training=True, momentum=0.1, eps=1e-5))
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ds, st.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(db, bt.grad.numpy(), rtol=1e-10, atol=1e-12)
    # running statistics as torch's (dlbatch's momentum is the weight of the old value)
    np.testing.assert_allclose(ctx.statistic_updates[3], rm.numpy(), rtol=1e-12)
    np.testing.assert_allclose(ctx.statistic_updates[4], rv.numpy(), rtol=1e-12)


@pytest.mark.parametrize("act", list(ACTS))
def test_batchnorm_activation_inference_equals_the_two_kernels(act):
    from dlbatch.backends.numpy_cpu.ops import KERNELS
    kern = {k.op_type: k for k in KERNELS}
    x, bn = _inputs(np.float32)
    bn[2], bn[3] = np.full(6, 0.5, np.float32), np.full(6, 2.0, np.float32)
    y, _, _ = _fused(act, x, bn, training=False)
    ctx = OpContext(training=False, needs_input_grad=(False,) * 5, opset=17)
    (z,), _ = kern["BatchNormalization"].forward(ctx, [channel_major(x)] + bn, {})
    extra = [np.array(0.0, x.dtype), np.array(6.0, x.dtype)] if act == "Clip" else []
    (z,), _ = kern[act].forward(ctx, [z] + extra, {})
    np.testing.assert_array_equal(y, z)


@pytest.mark.parametrize("act", list(ACTS))
def test_batchnorm_activation_same_bits_at_1_2_3_threads(act, monkeypatch):
    monkeypatch.setattr(util_mod, "TASK_ELEMS", 1 << 9)  # several channel blocks
    x, bn = _inputs(np.float32, shape=(4, 9, 12, 10))
    dy = np.random.default_rng(2).standard_normal(x.shape).astype(np.float32)

    def step():
        y, grads, _ = _fused(act, x, bn, dy=dy)
        return [y] + grads

    assert_same_bits_at_1_2_3_threads(step)


def test_training_export_fuses_batchnorm_chains_with_the_unfused_plans_results(tmp_path):
    """A torch training-form export gives BatchNormalization three outputs (two unused running
    statistics); its Relu, Clip and HardSwish still fuse, with the plain node list's results."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
    import suite_networks
    import dlbatch
    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential(suite_networks.conv_bn(3, 8, stride=2), suite_networks.conv_bn(8, 8, act=nn.ReLU6),
                        suite_networks.conv_bn(8, 8, 3, 1, groups=8, act=nn.Hardswish),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    path = suite_networks.export_onnx(net, tmp_path / "net.onnx", 16)
    model = dlbatch.read_dl_model(path, backend="numpy", batch_size=2)
    prog = model.program()
    ops = [st.op_type for st in prog._fused.steps]
    for fused in ("BatchNormalization+Relu", "BatchNormalization+Clip", "BatchNormalization+HardSwish"):
        assert fused in ops
    assert not {"Relu", "Clip", "HardSwish", "BatchNormalization"} & set(ops)
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    out = model.graph.outputs[0].name
    results = []
    for plan in (prog._fused, prog._plain):
        saved, prog._fused = prog._fused, plan
        try:
            fw = prog.forward(model.values, {"input": x}, training=True)
            g = np.ones_like(fw.outputs[out])
            grads = prog.backward(fw.tape, {out: g})
        finally:
            prog._fused = saved
        results.append((fw.outputs[out], grads))
    (y1, g1), (y2, g2) = results
    np.testing.assert_allclose(y1, y2, rtol=1e-5, atol=1e-6)
    assert g1.keys() == g2.keys() and g1
    for name in g1:
        np.testing.assert_allclose(g1[name], g2[name], rtol=1e-4, atol=1e-5)
