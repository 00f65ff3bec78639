"""Loss terms with explicit normalisers, proved on a test-only model type with two terms that
share one loss (tests/core/two_term_model.py), against a float64 torch autograd reference of
SPEC sections 1-4, on both backends."""
from __future__ import annotations

import numpy as np
import pytest

import dlbatch
from dlbatch.core.plugins import manager
from dlbatch.core.train import result_keys
from dlbatch.core.model_type import LossTerm

from . import two_term_model
from ..conftest import make_samples

torch = pytest.importorskip("torch")

BACKENDS = ["numpy", "torch"]


@pytest.fixture
def two_term():
    manager.register_plugin(two_term_model, name="two_term_test_plugin")
    yield
    manager.reload()


def make(backend, **params):
    args = dict(image_width=4, image_height=3, image_num_channels=2, class_ids=[7, 8, 9], batch_size=3,
                batch_size_multiplier=2, learning_rate=0.05, momentum=0.9, weight_prior=1e-2, seed=3,
                aux_weight=0.5)
    args.update(params)
    return dlbatch.create_dl_model(two_term_model.NAME, backend=backend, precision="float64", **args)


def batch(seed=0, n=6):
    return make_samples(n, height=3, width=4, channels=2, class_ids=(7, 8, 9, 7, 9, 8), seed=seed, scale=1.0)


def reference_step(state, samples, hp):
    """Losses and the weights after one SGD step, in float64 torch autograd."""
    params = {n: torch.tensor(v, dtype=torch.float64, requires_grad=True) for n, v in state.items()}
    ids = {c: i for i, c in enumerate(hp["class_ids"])}
    cw = torch.tensor(hp["class_weights"] or [1.0] * len(ids), dtype=torch.float64)
    bs, mult = hp["batch_size"], hp["batch_size_multiplier"]
    main = aux = 0.0
    for k in range(mult):
        micro = samples[k * bs:(k + 1) * bs]
        x = torch.tensor(np.stack([np.asarray(s["image"], np.float64).transpose(2, 0, 1).ravel() for s in micro]))
        y = torch.tensor([ids[s["image_label_id"]] for s in micro])
        h = torch.relu(x @ params["hidden.weight"].T + params["hidden.bias"])
        nll_a = torch.nn.functional.cross_entropy(h @ params["a.weight"].T + params["a.bias"], y, reduction="none")
        nll_b = torch.nn.functional.cross_entropy(h @ params["b.weight"].T + params["b.bias"], y, reduction="none")
        a = cw[y]
        main = main + ((a * nll_a).sum() / a.sum() if a.sum() > 0 else 0 * nll_a.sum()) / mult
        aux = aux + nll_b.sum() / max(1, int((y != 0).sum())) / mult
    reg = hp["weight_prior"] / 2 * sum((p ** 2).sum() for p in params.values() if p.ndim >= 2)
    objective = main + hp["aux_weight"] * aux + reg
    objective.backward()
    new = {n: (p - hp["learning_rate"] * p.grad).detach().numpy() for n, p in params.items()}  # v_0 = 0
    losses = {"loss_multinomial_logistic_main": float(main.detach()), "loss_multinomial_logistic_aux": float(aux.detach()),
              "loss_regularization": float(reg.detach()), "total_loss": float(objective.detach())}
    return losses, new


def test_result_keys_are_per_loss_when_unique_and_per_term_when_shared():
    terms = [LossTerm("cls", "z", "focal"), LossTerm("box", "b", "huber"), LossTerm("angle", "c", "huber")]
    assert result_keys([(t, t.default_loss) for t in terms]) == {
        "cls": "loss_focal", "box": "loss_huber_box", "angle": "loss_huber_angle"}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("class_weights", [None, [1.0, 3.0, 0.5]])
def test_two_terms_sharing_a_loss_train_like_the_torch_reference(two_term, backend, class_weights):
    model = make(backend, class_weights=class_weights)
    samples = batch()
    state = model.state_dict()
    expected, expected_weights = reference_step(state, samples, dict(model.hyperparameters))
    out = dlbatch.train_dl_model_batch(model, samples)
    assert set(out) == set(expected)
    for key, value in expected.items():
        assert out[key] == pytest.approx(value, rel=1e-12), key
    # total_loss adds each term once, weighted, plus the regularization
    assert out["total_loss"] == pytest.approx(out["loss_multinomial_logistic_main"] + 0.5 *
                                              out["loss_multinomial_logistic_aux"] + out["loss_regularization"],
                                              rel=1e-14)
    after = model.state_dict()
    for name, value in expected_weights.items():
        np.testing.assert_allclose(after[name], value, rtol=1e-11, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_term_whose_normaliser_is_zero_is_zero_and_sends_no_gradient(two_term, backend):
    """Class weights all 0: nothing counts for `main`, so it is 0 and the head it reads moves by
    the weight prior only (v = -lr * weight_prior * w on the first step)."""
    model = make(backend, class_weights=[0.0, 0.0, 0.0])
    before = model.state_dict()
    out = dlbatch.train_dl_model_batch(model, batch(1))
    assert out["loss_multinomial_logistic_main"] == 0.0
    assert out["loss_multinomial_logistic_aux"] > 0
    after = model.state_dict()
    lr, wp = 0.05, 1e-2
    np.testing.assert_allclose(after["a.weight"], before["a.weight"] * (1 - lr * wp), rtol=1e-14)
    np.testing.assert_array_equal(after["a.bias"], before["a.bias"])
    assert not np.array_equal(after["b.bias"], before["b.bias"])


def test_both_backends_agree_over_steps_and_survive_a_file_round_trip(two_term, tmp_path):
    models = {b: make(b) for b in BACKENDS}
    for step in range(3):
        outs = {b: dlbatch.train_dl_model_batch(m, batch(10 + step)) for b, m in models.items()}
        for key in outs["numpy"]:
            assert outs["torch"][key] == pytest.approx(outs["numpy"][key], rel=1e-11), (step, key)
    path = tmp_path / "two_term.onnx"
    dlbatch.write_dl_model(models["numpy"], path)
    back = dlbatch.read_dl_model(path)
    assert back.get_param("losses") == {"main": "multinomial_logistic", "aux": "multinomial_logistic"}
    assert back.get_param("aux_weight") == 0.5
    expected = dlbatch.train_dl_model_batch(models["numpy"], batch(20))
    assert dlbatch.train_dl_model_batch(back, batch(20)) == expected


def test_term_weight_is_a_parameter_and_decode_gets_the_sample_context(two_term):
    model = make("numpy", aux_weight=0.0)
    out = dlbatch.train_dl_model_batch(model, batch(2))
    assert out["total_loss"] == pytest.approx(out["loss_multinomial_logistic_main"] + out["loss_regularization"],
                                              rel=1e-14)
    raw = [{"image": np.full((6, 8, 2), 100, np.uint8)}, {"image": np.zeros((3, 4, 2), np.uint8)}]
    results = dlbatch.apply_dl_model(model, dlbatch.preprocess_dl_samples(raw, model))
    assert [r["original_image_size"] for r in results] == [[6, 8], [3, 4]]
    assert {r["main_class_id"] for r in results} <= {7, 8, 9}
