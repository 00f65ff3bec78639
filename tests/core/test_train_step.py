"""The train step against SPEC sections 1-3, with gradients from an independent float64
PyTorch reference (tests/torch_reference.py)."""
from __future__ import annotations

import numpy as np
import pytest

import dlbatch
from tests.conftest import make_samples, tiny_model
from tests.torch_reference import loss_and_grads


def f64_model(**kw):
    kw.setdefault("precision", "float64")
    return tiny_model(**kw)


def is_regularized(shape):
    return len(shape) >= 2


def test_loss_value_and_first_sgd_step_match_torch_reference():
    model = f64_model(learning_rate=0.01, momentum=0.9)
    samples = make_samples(4)
    w0 = model.state_dict()
    ref_loss, ref_grads, ref_stats = loss_and_grads(model, samples)
    out = dlbatch.train_dl_model_batch(model, samples)
    assert out["loss_multinomial_logistic"] == pytest.approx(ref_loss, rel=1e-10)
    assert out["total_loss"] == pytest.approx(ref_loss, rel=1e-10)
    assert out["loss_regularization"] == 0.0
    w1 = model.state_dict()
    for name, g in ref_grads.items():
        np.testing.assert_allclose(w1[name], w0[name] - 0.01 * g, rtol=1e-9, atol=1e-12, err_msg=name)
    for name, s in ref_stats.items():  # running statistics: m*running + (1-m)*unbiased batch stat
        np.testing.assert_allclose(w1[name], s, rtol=1e-9, atol=1e-12, err_msg=name)


def test_sgd_halcon_form_with_learning_rate_change():
    """v = mu v - lr g; w = w + v. With lr changing between steps this differs from
    torch.optim.SGD (which scales the whole velocity by the new lr)."""
    model = f64_model(learning_rate=0.01, momentum=0.9)
    s1, s2 = make_samples(4, seed=1), make_samples(4, seed=2)
    w0 = model.state_dict()
    _, g1, _ = loss_and_grads(model, s1)
    dlbatch.train_dl_model_batch(model, s1)
    w1 = model.state_dict()
    dlbatch.set_dl_model_param(model, "learning_rate", 0.05)
    _, g2, _ = loss_and_grads(model, s2)
    dlbatch.train_dl_model_batch(model, s2)
    w2 = model.state_dict()
    some_differ = False
    for n in g1:
        v1 = -0.01 * g1[n]
        v2 = 0.9 * v1 - 0.05 * g2[n]
        np.testing.assert_allclose(w2[n], w1[n] + v2, rtol=1e-8, atol=1e-12, err_msg=n)
        torch_form = w1[n] - 0.05 * (0.9 * g1[n] + g2[n])
        some_differ |= not np.allclose(w2[n], torch_form, rtol=1e-6, atol=1e-12)
    assert some_differ, "the test must tell HALCON's form from torch.optim.SGD's"
    state = model.solver_state_dict()
    assert int(state["step"]) == 2
    np.testing.assert_allclose(state["velocity/fc.weight"], w2["fc.weight"] - w1["fc.weight"], rtol=1e-9)
    assert not np.array_equal(w0["fc.weight"], w2["fc.weight"])


def test_adam_matches_formula_with_learning_rate_change():
    model = f64_model(solver_type="adam", learning_rate=1e-3, adam_beta1=0.8, adam_beta2=0.99,
                      adam_epsilon=1e-7)
    s1, s2 = make_samples(4, seed=3), make_samples(4, seed=4)
    _, g1, _ = loss_and_grads(model, s1)
    w0 = model.state_dict()
    dlbatch.train_dl_model_batch(model, s1)
    w1 = model.state_dict()
    model.set_param("learning_rate", 3e-3)
    _, g2, _ = loss_and_grads(model, s2)
    dlbatch.train_dl_model_batch(model, s2)
    w2 = model.state_dict()
    b1, b2, eps = 0.8, 0.99, 1e-7
    for n in g1:
        m1 = (1 - b1) * g1[n]
        s_1 = (1 - b2) * g1[n] ** 2
        exp1 = w0[n] - 1e-3 * (m1 / (1 - b1)) / (np.sqrt(s_1 / (1 - b2)) + eps)
        np.testing.assert_allclose(w1[n], exp1, rtol=1e-8, atol=1e-12, err_msg=n)
        m2 = b1 * m1 + (1 - b1) * g2[n]
        s_2 = b2 * s_1 + (1 - b2) * g2[n] ** 2
        exp2 = w1[n] - 3e-3 * (m2 / (1 - b1 ** 2)) / (np.sqrt(s_2 / (1 - b2 ** 2)) + eps)
        np.testing.assert_allclose(w2[n], exp2, rtol=1e-8, atol=1e-12, err_msg=n)
    assert int(model.solver_state_dict()["adam_step"]) == 2


def test_weight_prior_value_and_only_rank2_weights_decay():
    wp = 0.01
    model = f64_model(weight_prior=wp, learning_rate=0.1)
    samples = make_samples(4)
    w0 = model.state_dict()
    ref_loss, g, _ = loss_and_grads(model, samples)
    out = dlbatch.train_dl_model_batch(model, samples)
    expected_r = wp / 2 * sum(float((w0[n] ** 2).sum()) for n in g if is_regularized(w0[n].shape))
    assert out["loss_regularization"] == pytest.approx(expected_r, rel=1e-10)
    assert out["total_loss"] == pytest.approx(ref_loss + expected_r, rel=1e-10)
    w1 = model.state_dict()
    for n in g:
        decay = wp * w0[n] if is_regularized(w0[n].shape) else 0.0
        np.testing.assert_allclose(w1[n], w0[n] - 0.1 * (g[n] + decay), rtol=1e-9, atol=1e-12, err_msg=n)
    # biases and batch-norm scale/shift: exactly the plain gradient step, no decay
    assert not is_regularized(w0["fc.bias"].shape) and not is_regularized(w0["stem.bn.scale"].shape)


def test_batch_size_multiplier_averages_micro_batch_gradients_in_one_update():
    model = f64_model(batch_size=4, batch_size_multiplier=2, learning_rate=0.05, batchnorm_momentum=0.8)
    samples = make_samples(8, seed=7)
    w0 = model.state_dict()
    l1, g1, st1 = loss_and_grads(model, samples[:4])
    out = dlbatch.train_dl_model_batch(model, samples)
    w1 = model.state_dict()
    # the second micro-batch sees the same weights but the statistics after the first
    probe = f64_model(batch_size=4, batch_size_multiplier=2, batchnorm_momentum=0.8)
    probe.load_state_dict({**w0, **st1})
    l2, g2, st2 = loss_and_grads(probe, samples[4:])
    assert out["loss_multinomial_logistic"] == pytest.approx((l1 + l2) / 2, rel=1e-10)
    for n in g1:
        np.testing.assert_allclose(w1[n], w0[n] - 0.05 * (g1[n] + g2[n]) / 2, rtol=1e-9, atol=1e-12, err_msg=n)
    for n in st2:
        np.testing.assert_allclose(w1[n], st2[n], rtol=1e-9, err_msg=n)
    assert int(model.solver_state_dict()["step"]) == 1


def test_class_weights_weight_the_loss_like_torch_cross_entropy():
    model = f64_model(class_weights=[0.2, 1.0, 3.0])
    samples = make_samples(4)
    ref, _, _ = loss_and_grads(model, samples, class_weights=[0.2, 1.0, 3.0])
    out = model.train_batch(samples)
    assert out["loss_multinomial_logistic"] == pytest.approx(ref, rel=1e-10)


def test_float32_step_agrees_with_float64_reference():
    model = tiny_model()
    samples = make_samples(4)
    ref, _, _ = loss_and_grads(model, samples)
    out = model.train_batch(samples)
    assert out["total_loss"] == pytest.approx(ref, rel=1e-4)


def test_numpy_backend_is_bit_deterministic():
    a, b = tiny_model(seed=3), tiny_model(seed=3)
    for k in range(3):
        s = make_samples(4, seed=k)
        assert a.train_batch(s) == b.train_batch(s)
    for n, v in a.state_dict().items():
        np.testing.assert_array_equal(v, b.state_dict()[n])


def test_training_reduces_loss_on_a_fixed_batch():
    model = tiny_model(learning_rate=0.05)
    samples = make_samples(4)
    first = model.train_batch(samples)["total_loss"]
    for _ in range(15):
        last = model.train_batch(samples)["total_loss"]
    assert last < 0.5 * first


@pytest.mark.parametrize("backbone,side", [("compact", 8), ("resnet18", 32)])
def test_steps_never_write_into_arrays_the_model_or_caller_holds(backbone, side):
    """Backends may reuse buffers internally, but never memory that escaped a call: the
    model's previous values, the samples, or outputs already handed to the caller."""
    from dlbatch.core.infer import raw_outputs
    model = tiny_model(backbone=backbone, image_width=side, image_height=side, batch_size=2,
                       batch_size_multiplier=2, solver_type="adam")
    samples = make_samples(4, height=side, width=side)
    images = [s["image"].copy() for s in samples]
    for _ in range(2):
        held = dict(model.values)
        copies = {n: np.array(v, copy=True) for n, v in held.items()}
        out1 = raw_outputs(model, samples[:2])
        out1_copy = {n: v.copy() for n, v in out1.items()}
        model.train_batch(samples)
        raw_outputs(model, samples[2:])
        for n, v in held.items():
            np.testing.assert_array_equal(v, copies[n], err_msg=n)
        for n, v in out1.items():
            np.testing.assert_array_equal(v, out1_copy[n], err_msg=n)
        for s, img in zip(samples, images):
            np.testing.assert_array_equal(s["image"], img)
