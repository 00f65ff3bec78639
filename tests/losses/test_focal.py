"""The sigmoid focal loss against torch autograd of a torchvision-style reference (float64),
finite differences, edge cases (no positives, all ignored, extreme logits) and torch tensors.

The loss returns the sum FL; the train step divides by max(1, positive anchors)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dlbatch.core.errors import DLParamError
from dlbatch.core.plugins import manager
from dlbatch.losses.focal import Focal

LOSS = Focal()
ALPHA = [0.25, 0.6, 0.9]


def case(n, a, k, seed, scale=3.0):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, a, k)) * scale
    y = rng.integers(-2, k, (n, a))  # -2 ignored, -1 background, 0..k-1 a class
    w = rng.uniform(0.5, 2.0, (n, a))
    w[rng.random((n, a)) < 0.2] = 0.0  # dropped anchors
    return z, y, w


def torchvision_focal(inputs, targets, alpha, gamma=2.0):
    """torchvision.ops.sigmoid_focal_loss (reduction 'none') with a per-class alpha."""
    p = torch.sigmoid(inputs)
    ce = torch.nn.functional.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * ((1 - p_t) ** gamma)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return alpha_t * loss


def torch_reference(z, y, w, alpha, gamma=2.0, per_class=False):
    """Sum over non-ignored anchors of w_a * focal; ignored anchors are removed first."""
    zt = torch.tensor(z, requires_grad=True)
    yt, wt = torch.tensor(y), torch.tensor(w)
    keep = yt != -2
    k = z.shape[-1]
    onehot = torch.nn.functional.one_hot(yt[keep].clamp(min=-1) + 1, k + 1)[:, 1:].double()  # -1 -> zeros
    per = torchvision_focal(zt[keep], onehot, torch.tensor(alpha, dtype=torch.float64), gamma)
    per = per * wt[keep].unsqueeze(-1)
    if per_class:
        return per.sum(0).detach().numpy()
    loss = per.sum()
    loss.backward()
    return float(loss.detach()), zt.grad.numpy()


@pytest.mark.parametrize("n,a,k,seed", [(2, 7, 3, 0), (1, 20, 3, 1), (3, 5, 3, 2)])
def test_value_and_gradient_equal_torch_autograd(n, a, k, seed):
    z, y, w = case(n, a, k, seed)
    value, grad = LOSS.value_and_grad(np, z, y, w, {"alpha": ALPHA, "gamma": 2.0})
    ref_value, ref_grad = torch_reference(z, y, w, ALPHA)
    assert float(value) == pytest.approx(ref_value, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-14)
    assert grad.shape == z.shape and grad.dtype == z.dtype


def test_defaults_are_alpha_quarter_and_gamma_two():
    z, y, w = case(2, 6, 4, seed=3)
    value, grad = LOSS.value_and_grad(np, z, y, w, None)
    ref_value, ref_grad = torch_reference(z, y, w, [0.25] * 4, 2.0)
    assert float(value) == pytest.approx(ref_value, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-14)
    scalar_value, _ = LOSS.value_and_grad(np, z, y, w, {"alpha": 0.25})
    assert float(scalar_value) == pytest.approx(float(value), rel=1e-15)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 3.0])
def test_gamma_option_is_used(gamma):
    z, y, w = case(2, 6, 3, seed=4)
    value, grad = LOSS.value_and_grad(np, z, y, w, {"alpha": ALPHA, "gamma": gamma})
    ref_value, ref_grad = torch_reference(z, y, w, ALPHA, gamma)
    assert float(value) == pytest.approx(ref_value, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-14)


def test_gradient_matches_finite_differences():
    z, y, w = case(2, 4, 3, seed=5)
    opts = {"alpha": ALPHA, "gamma": 2.0}
    _, grad = LOSS.value_and_grad(np, z, y, w, opts)
    eps = 1e-6
    numeric = np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        zp, zm = z.copy(), z.copy()
        zp[idx] += eps
        zm[idx] -= eps
        numeric[idx] = (float(LOSS.value_and_grad(np, zp, y, w, opts)[0]) -
                        float(LOSS.value_and_grad(np, zm, y, w, opts)[0])) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def test_image_without_positive_anchors_gives_a_finite_background_sum():
    z, _, _ = case(1, 10, 3, seed=6)
    y = np.full((1, 10), -1)
    value, grad = LOSS.value_and_grad(np, z, y, np.ones((1, 10)), {"alpha": ALPHA})
    ref_value, ref_grad = torch_reference(z, y, np.ones((1, 10)), ALPHA)
    assert np.isfinite(value) and float(value) > 0
    assert float(value) == pytest.approx(ref_value, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-14)


def test_all_ignored_gives_zero_whatever_the_weights():
    z, _, _ = case(2, 5, 3, seed=7)
    y = np.full((2, 5), -2)
    value, grad = LOSS.value_and_grad(np, z, y, np.ones((2, 5)), {"alpha": ALPHA})
    assert float(value) == 0.0
    assert not grad.any()


def test_ignored_anchors_contribute_nothing_even_with_weight_one():
    z, y, _ = case(2, 8, 3, seed=8)
    y[0, :3] = -2
    w = np.ones(y.shape)
    value, grad = LOSS.value_and_grad(np, z, y, w, {"alpha": ALPHA})
    z2 = z.copy()
    z2[0, :3] = np.array([50.0, -50.0, 7.0])  # anything at ignored anchors
    value2, grad2 = LOSS.value_and_grad(np, z2, y, w, {"alpha": ALPHA})
    assert float(value2) == float(value)
    assert not grad[0, :3].any()
    np.testing.assert_array_equal(grad, grad2)


def test_dropped_anchor_weight_zero_contributes_nothing():
    z, y, _ = case(1, 6, 3, seed=9)
    y[0, :] = [0, 1, 2, -1, 0, -1]
    w = np.ones(y.shape)
    w[0, 2] = 0.0
    _, grad = LOSS.value_and_grad(np, z, y, w, {"alpha": ALPHA})
    assert not grad[0, 2].any() and grad[0, 1].any()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_extreme_logits_stay_finite(dtype):
    # (logit, target): confident right, confident wrong, for positives and background
    z = np.array([[[100.0, -100.0], [-100.0, 100.0], [1e4, -1e4]]], dtype=dtype)
    y = np.array([[0, 0, -1]])
    value, grad = LOSS.value_and_grad(np, z, y, np.ones((1, 3), dtype=dtype), {"alpha": [0.25, 0.25]})
    assert value.dtype == dtype and grad.dtype == dtype
    assert np.isfinite(value) and np.isfinite(grad).all()
    # anchor 1: class 0 positive at -100 (alpha * 100), class 1 background at +100 ((1 - alpha) * 100)
    # anchor 2: class 0 background at 1e4 ((1 - alpha) * 1e4); the rest is ~0
    assert float(value) == pytest.approx(0.25 * 100 + 0.75 * 100 + 0.75 * 1e4, rel=1e-6)
    np.testing.assert_allclose(grad[0, 1], [-0.25, 0.75], rtol=1e-6)
    np.testing.assert_allclose(grad[0, 2], [0.75, 0.0], rtol=1e-6, atol=1e-30)
    assert np.abs(grad[0, 0]).max() < 1e-30


def test_per_class_alpha_changes_only_that_class():
    z, y, w = case(2, 9, 3, seed=10)
    y[0, :3] = [0, 1, 2]  # every class has a positive
    base = [0.25, 0.25, 0.25]
    changed = [0.25, 0.8, 0.25]
    v0, g0 = LOSS.value_and_grad(np, z, y, w, {"alpha": base})
    v1, g1 = LOSS.value_and_grad(np, z, y, w, {"alpha": changed})
    np.testing.assert_array_equal(g0[..., [0, 2]], g1[..., [0, 2]])
    assert np.abs(g0[..., 1] - g1[..., 1]).max() > 1e-3
    c0 = torch_reference(z, y, w, base, per_class=True)
    c1 = torch_reference(z, y, w, changed, per_class=True)
    assert c0[0] == pytest.approx(c1[0]) and c0[2] == pytest.approx(c1[2]) and c0[1] != pytest.approx(c1[1])
    assert float(v1) - float(v0) == pytest.approx(c1[1] - c0[1], rel=1e-10)


def test_alpha_of_wrong_length_or_range_is_refused():
    z, y, w = case(1, 3, 3, seed=11)
    with pytest.raises(DLParamError, match="3 classes"):
        LOSS.value_and_grad(np, z, y, w, {"alpha": [0.25, 0.25]})
    with pytest.raises(DLParamError, match=r"\[0, 1\]"):
        LOSS.value_and_grad(np, z, y, w, {"alpha": [0.25, 1.5, 0.25]})
    with pytest.raises(DLParamError, match="gamma"):
        LOSS.value_and_grad(np, z, y, w, {"gamma": -1.0})


def test_same_code_runs_on_torch_tensors():
    import array_api_compat.torch as xp
    z, y, w = case(2, 12, 3, seed=12)
    opts = {"alpha": np.array(ALPHA), "gamma": 2.0}
    v_np, g_np = LOSS.value_and_grad(np, z, y, w, opts)
    v_t, g_t = LOSS.value_and_grad(xp, torch.tensor(z), torch.tensor(y), torch.tensor(w), opts)
    assert isinstance(g_t, torch.Tensor) and g_t.dtype == torch.float64 and v_t.ndim == 0
    assert float(v_t) == pytest.approx(float(v_np), rel=1e-12)
    np.testing.assert_allclose(g_t.numpy(), g_np, rtol=1e-12, atol=1e-15)
    v32, g32 = LOSS.value_and_grad(xp, torch.tensor(z, dtype=torch.float32), torch.tensor(y),
                                   torch.tensor(w, dtype=torch.float32), opts)
    assert g32.dtype == torch.float32 and float(v32) == pytest.approx(float(v_np), rel=1e-5)


@pytest.mark.cuda
def test_runs_on_cuda_tensors():
    import array_api_compat.torch as xp
    z, y, w = case(2, 12, 3, seed=13)
    opts = {"alpha": ALPHA}
    v_np, g_np = LOSS.value_and_grad(np, z, y, w, opts)
    dev = torch.device("cuda")
    v_t, g_t = LOSS.value_and_grad(xp, torch.tensor(z, device=dev), torch.tensor(y, device=dev),
                                   torch.tensor(w, device=dev), opts)
    assert g_t.device.type == "cuda"
    assert float(v_t) == pytest.approx(float(v_np), rel=1e-12)
    np.testing.assert_allclose(g_t.cpu().numpy(), g_np, rtol=1e-12, atol=1e-15)


def test_registered_through_the_plugin_manager():
    loss = manager.loss("focal")
    assert isinstance(loss, Focal) and loss.name == "focal"
    infos = {p.name: p for p in manager.plugins()}
    assert "loss focal" in infos["dlbatch.losses.focal"].registered
