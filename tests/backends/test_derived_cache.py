"""Inference caches values derived from the weights (batch norm folded into the convolutions,
bias columns): the cache must follow every change of the weights, checked against onnxruntime
running the model file written after the change, and must not keep old weights alive."""
from __future__ import annotations

import numpy as np
import pytest

import dlbatch
from dlbatch.backends.numpy_cpu.ops import derived as derived_mod
from dlbatch.core.infer import raw_outputs
from tests.conftest import make_samples, tiny_model

ort = pytest.importorskip("onnxruntime")


def nchw(samples):
    return np.stack([np.asarray(s["image"], np.float32).reshape(8, 8, -1).transpose(2, 0, 1) for s in samples])


def ort_logits(model, samples, tmp_path, name):
    path = tmp_path / f"{name}.onnx"
    dlbatch.write_dl_model(model, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": nchw(samples)})[0]


def test_inference_follows_training_steps_and_loaded_weights(tmp_path):
    model = tiny_model(backend="numpy")
    samples = make_samples(5, seed=3)
    before = raw_outputs(model, samples)["logits"]  # fills the cache
    assert raw_outputs(model, samples)["logits"].tobytes() == before.tobytes()  # served from it
    for i in range(2):
        dlbatch.train_dl_model_batch(model, make_samples(4, seed=10 + i))
    after = raw_outputs(model, samples)["logits"]
    assert np.abs(after - before).max() > 1e-3  # the weights did change
    np.testing.assert_allclose(after, ort_logits(model, samples, tmp_path, "trained"), rtol=1e-5, atol=1e-5)

    other = tiny_model(backend="numpy", seed=7)
    for i in range(2):
        dlbatch.train_dl_model_batch(other, make_samples(4, seed=20 + i))
    model.load_state_dict(other.state_dict())
    loaded = raw_outputs(model, samples)["logits"]
    np.testing.assert_allclose(loaded, ort_logits(other, samples, tmp_path, "other"), rtol=1e-5, atol=1e-5)


def test_cached_values_are_dropped_with_their_weights():
    model = tiny_model(backend="numpy")
    samples = make_samples(4, seed=1)
    base = derived_mod.cached_count()
    raw_outputs(model, samples)
    per_model = derived_mod.cached_count() - base
    assert per_model > 0  # the model's folded convolutions are cached
    for i in range(3):
        dlbatch.train_dl_model_batch(model, make_samples(4, seed=30 + i))
        raw_outputs(model, samples)
        assert derived_mod.cached_count() - base == per_model  # old weights' entries are gone
    del model
    assert derived_mod.cached_count() == base


def test_load_state_dict_copies_the_arrays():
    model = tiny_model(backend="numpy")
    samples = make_samples(4, seed=2)
    state = model.state_dict()
    model.load_state_dict(state)
    expected = raw_outputs(model, samples)["logits"]
    for a in state.values():
        a *= 0.5  # the caller changes its own arrays afterwards
    np.testing.assert_array_equal(raw_outputs(model, samples)["logits"], expected)
    for name, value in model.state_dict().items():
        assert not np.shares_memory(value, state[name])
