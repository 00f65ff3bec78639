"""The Huber (smooth-L1) box loss against torch's smooth_l1_loss with autograd (float64),
finite differences, anchors without weight and torch tensors.

The loss returns the weighted sum; the train step divides by max(1, positive anchors)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dlbatch.core.errors import DLParamError
from dlbatch.core.plugins import manager
from dlbatch.losses.huber import Huber

LOSS = Huber()
BETA = 0.11


def case(n, a, p, seed):
    rng = np.random.default_rng(seed)
    pred = rng.standard_normal((n, a, p)) * 0.2  # differences on both sides of beta
    target = rng.standard_normal((n, a, p)) * 0.2
    w = (rng.random((n, a)) < 0.5).astype(np.float64)  # 1 for positive anchors
    return pred, target, w


def torch_reference(pred, target, w, beta=BETA):
    pt = torch.tensor(pred, requires_grad=True)
    per = torch.nn.functional.smooth_l1_loss(pt, torch.tensor(target), beta=beta, reduction="none")
    loss = (per * torch.tensor(w).unsqueeze(-1)).sum()
    loss.backward()
    return float(loss.detach()), pt.grad.numpy()


@pytest.mark.parametrize("n,a,p,seed", [(2, 9, 4, 0), (1, 30, 4, 1), (3, 6, 5, 2)])
def test_value_and_gradient_equal_torch_smooth_l1(n, a, p, seed):
    pred, target, w = case(n, a, p, seed)
    value, grad = LOSS.value_and_grad(np, pred, target, w, {"beta": BETA})
    ref_value, ref_grad = torch_reference(pred, target, w)
    diff = np.abs(pred - target)[w > 0]
    assert (diff < BETA).any() and (diff >= BETA).any()  # both branches are exercised
    assert float(value) == pytest.approx(ref_value, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-15)
    assert grad.shape == pred.shape and grad.dtype == pred.dtype


def test_weights_other_than_one_scale_each_anchor():
    pred, target, _ = case(2, 7, 4, seed=3)
    w = np.random.default_rng(3).uniform(0.0, 2.0, (2, 7))
    value, grad = LOSS.value_and_grad(np, pred, target, w, {"beta": BETA})
    ref_value, ref_grad = torch_reference(pred, target, w)
    assert float(value) == pytest.approx(ref_value, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-15)


def test_default_beta_is_0_11():
    pred, target, w = case(2, 9, 4, seed=4)
    assert float(LOSS.value_and_grad(np, pred, target, w, None)[0]) == pytest.approx(
        torch_reference(pred, target, w, 0.11)[0], rel=1e-12)
    assert float(LOSS.value_and_grad(np, pred, target, w, {"beta": 0.5})[0]) == pytest.approx(
        torch_reference(pred, target, w, 0.5)[0], rel=1e-12)


def test_piecewise_formula_at_known_points():
    pred = np.array([[[0.05, -0.05, 0.5, -1.0]]])
    value, grad = LOSS.value_and_grad(np, pred, np.zeros_like(pred), np.ones((1, 1)), {"beta": 0.11})
    expected = 2 * 0.5 * 0.05 ** 2 / 0.11 + (0.5 - 0.055) + (1.0 - 0.055)
    assert float(value) == pytest.approx(expected, rel=1e-14)
    np.testing.assert_allclose(grad[0, 0], [0.05 / 0.11, -0.05 / 0.11, 1.0, -1.0], rtol=1e-14)


def test_beta_zero_is_l1():
    pred, target, w = case(2, 5, 4, seed=5)
    value, grad = LOSS.value_and_grad(np, pred, target, w, {"beta": 0.0})
    ref = (np.abs(pred - target) * w[..., None]).sum()
    assert float(value) == pytest.approx(ref, rel=1e-14)
    np.testing.assert_array_equal(grad, np.sign(pred - target) * w[..., None])
    with pytest.raises(DLParamError, match="beta"):
        LOSS.value_and_grad(np, pred, target, w, {"beta": -0.1})


def test_gradient_matches_finite_differences():
    pred, target, w = case(2, 4, 4, seed=6)
    w[:] = [[1.0, 0.0, 1.0, 2.0], [0.5, 1.0, 0.0, 1.0]]
    _, grad = LOSS.value_and_grad(np, pred, target, w)
    eps = 1e-7
    numeric = np.zeros_like(pred)
    for idx in np.ndindex(pred.shape):
        pp, pm = pred.copy(), pred.copy()
        pp[idx] += eps
        pm[idx] -= eps
        numeric[idx] = (float(LOSS.value_and_grad(np, pp, target, w)[0]) -
                        float(LOSS.value_and_grad(np, pm, target, w)[0])) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


def test_no_positive_anchors_gives_zero():
    pred, target, _ = case(1, 8, 4, seed=7)
    value, grad = LOSS.value_and_grad(np, pred, target, np.zeros((1, 8)))
    assert float(value) == 0.0
    assert not grad.any()


def test_anchor_without_weight_ignores_its_target_even_nan():
    pred, target, w = case(1, 6, 4, seed=8)
    w[:] = [[1, 0, 1, 0, 1, 0]]
    value, grad = LOSS.value_and_grad(np, pred, target, w)
    target[0, 1] = np.nan
    target[0, 3] = 1e300
    value2, grad2 = LOSS.value_and_grad(np, pred, target, w)
    assert float(value2) == float(value)
    np.testing.assert_array_equal(grad2, grad)
    assert not grad[0, [1, 3, 5]].any()


def test_huge_differences_stay_finite_without_overflow():
    pred = np.array([[[1e200, -1e200, 1e-200, 0.0]]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value, grad = LOSS.value_and_grad(np, pred, np.zeros_like(pred), np.ones((1, 1)))
    assert np.isfinite(value) and np.isfinite(grad).all()
    np.testing.assert_array_equal(grad[0, 0, :2], [1.0, -1.0])


def test_same_code_runs_on_torch_tensors():
    import array_api_compat.torch as xp
    pred, target, w = case(2, 10, 5, seed=9)
    v_np, g_np = LOSS.value_and_grad(np, pred, target, w, {"beta": BETA})
    v_t, g_t = LOSS.value_and_grad(xp, torch.tensor(pred), torch.tensor(target), torch.tensor(w),
                                   {"beta": BETA})
    assert isinstance(g_t, torch.Tensor) and g_t.dtype == torch.float64 and v_t.ndim == 0
    assert float(v_t) == pytest.approx(float(v_np), rel=1e-12)
    np.testing.assert_allclose(g_t.numpy(), g_np, rtol=1e-12, atol=1e-15)
    v32, g32 = LOSS.value_and_grad(xp, torch.tensor(pred, dtype=torch.float32),
                                   torch.tensor(target, dtype=torch.float32),
                                   torch.tensor(w, dtype=torch.float32), {"beta": BETA})
    assert g32.dtype == torch.float32 and float(v32) == pytest.approx(float(v_np), rel=1e-5)


@pytest.mark.cuda
def test_runs_on_cuda_tensors():
    import array_api_compat.torch as xp
    pred, target, w = case(2, 10, 4, seed=10)
    v_np, g_np = LOSS.value_and_grad(np, pred, target, w)
    dev = torch.device("cuda")
    v_t, g_t = LOSS.value_and_grad(xp, torch.tensor(pred, device=dev), torch.tensor(target, device=dev),
                                   torch.tensor(w, device=dev), {"beta": BETA})
    assert g_t.device.type == "cuda"
    assert float(v_t) == pytest.approx(float(v_np), rel=1e-12)
    np.testing.assert_allclose(g_t.cpu().numpy(), g_np, rtol=1e-12, atol=1e-15)


def test_registered_through_the_plugin_manager():
    loss = manager.loss("huber")
    assert isinstance(loss, Huber) and loss.name == "huber"
    infos = {p.name: p for p in manager.plugins()}
    assert "loss huber" in infos["dlbatch.losses.huber"].registered
