"""The multinomial logistic loss against torch autograd (float64) and finite differences.

A loss returns the weighted sum over the micro-batch (the train step divides by the
normaliser the model type encodes, here sum_n a_n; tests/core/test_loss_terms.py checks that)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dlbatch.losses.multinomial_logistic import MultinomialLogistic

LOSS = MultinomialLogistic()


def case(shape, k, seed, zero_some=False):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((shape[0], k, *shape[1:])) * 3
    y = rng.integers(0, k, shape)
    a = rng.uniform(0.1, 2.0, shape)
    if zero_some:
        a[rng.random(shape) < 0.4] = 0.0  # ignored pixels
    return z, y, a


def torch_reference(z, y, a):
    zt = torch.tensor(z, requires_grad=True)
    logp = torch.log_softmax(zt, dim=1)
    nll = -logp.gather(1, torch.tensor(y).unsqueeze(1)).squeeze(1)
    loss = (torch.tensor(a) * nll).sum()
    loss.backward()
    return float(loss), zt.grad.numpy()


@pytest.mark.parametrize("shape,k,zero_some", [((6,), 4, False), ((3, 5, 4), 3, True), ((2,), 2, False)])
def test_value_and_gradient_equal_torch_autograd(shape, k, zero_some):
    z, y, a = case(shape, k, seed=len(shape) + k, zero_some=zero_some)
    value, grad = LOSS.value_and_grad(np, z, y, a)
    ref_value, ref_grad = torch_reference(z, y, a)
    assert float(value) == pytest.approx(ref_value, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-14)


def test_gradient_matches_finite_differences():
    z, y, a = case((4,), 5, seed=11)
    _, grad = LOSS.value_and_grad(np, z, y, a)
    eps = 1e-6
    numeric = np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        zp, zm = z.copy(), z.copy()
        zp[idx] += eps
        zm[idx] -= eps
        numeric[idx] = (float(LOSS.value_and_grad(np, zp, y, a)[0]) -
                        float(LOSS.value_and_grad(np, zm, y, a)[0])) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def test_uniform_weights_give_plain_cross_entropy_summed():
    z, y, _ = case((5,), 3, seed=2)
    value, _ = LOSS.value_and_grad(np, z, y, np.ones(5))
    ref = torch.nn.functional.cross_entropy(torch.tensor(z), torch.tensor(y), reduction="sum")
    assert float(value) == pytest.approx(float(ref), rel=1e-12)


def test_all_weights_zero_gives_zero_loss_and_gradient():
    z, y, _ = case((3,), 4, seed=5)
    value, grad = LOSS.value_and_grad(np, z, y, np.zeros(3))
    assert float(value) == 0.0
    assert not grad.any()


def test_large_logits_stay_finite():
    z = np.array([[1000.0, -1000.0, 0.0]])
    value, grad = LOSS.value_and_grad(np, z, np.array([1]), np.ones(1))
    assert np.isfinite(value) and np.isfinite(grad).all()
    assert float(value) == pytest.approx(2000.0)


def test_same_code_runs_on_torch_tensors():
    import array_api_compat.torch as xp
    z, y, a = case((3, 4, 4), 3, seed=9, zero_some=True)
    v_np, g_np = LOSS.value_and_grad(np, z, y, a)
    v_t, g_t = LOSS.value_and_grad(xp, torch.tensor(z), torch.tensor(y), torch.tensor(a))
    assert float(v_t) == pytest.approx(float(v_np), rel=1e-12)
    np.testing.assert_allclose(g_t.numpy(), g_np, rtol=1e-12)
