"""precision="bfloat16" on the torch backend: the forward runs under torch.autocast(bfloat16),
weights, batch-norm statistics and solver state stay float32 (master weights).

Documented tolerance against float32 (same weights, same digit batches, the demo's SGD settings
on the `compact` classifier; measured on the CPU in brackets):
- every step's loss within relative 1e-2 of float32's (measured <= 2e-4);
- the first update, all parameters as one vector, has cosine > 0.99 with float32's (0.994 to
  0.996 over 4 seeds); each parameter tensor's > 0.95 (lowest 0.979, a first batch-norm bias);
- after 3 steps ||w_bf16 - w_f32|| <= 0.15 ||w_f32 - w_0|| over all parameters (0.08) and
  the batch-norm statistics within relative 1e-2 (2.3e-3);
- confidences within 1e-2 of float32's (6e-4).
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest

import dlbatch
from dlbatch.core.errors import DLParamError
from dlbatch.core.infer import raw_outputs
from dlbatch.demo import load_digits_samples, main, split

from ..conftest import snapshot, assert_same_snapshot, tiny_model

torch = pytest.importorskip("torch")

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
LOSS_RTOL = 1e-2
UPDATE_COSINE = 0.99
TENSOR_COSINE = 0.95
WEIGHT_DRIFT = 0.15
STATS_RTOL = 1e-2
CONFIDENCE_ATOL = 1e-2


@pytest.fixture(scope="module")
def digits():
    train_raw, _ = split(load_digits_samples(), 0.2, 0)
    return dlbatch.preprocess_dl_samples(train_raw[:96], digits_model("numpy", "cpu", "float32"))


def digits_model(backend, device, precision, **params):
    args = dict(seed=0, class_ids=list(range(10)), image_dimensions=[8, 8, 1], batch_size=32,
                learning_rate=0.01, momentum=0.9, weight_prior=1e-4, solver_type="sgd")
    args.update(params)
    return dlbatch.create_dl_model("classification", backbone="compact", backend=backend, device=device,
                                   precision=precision, **args)


def twins(device, **params):
    """A float32 and a bfloat16 model with the same weights."""
    f32 = digits_model("torch", device, "float32", **params)
    bf16 = digits_model("torch", device, "bfloat16", **params)
    bf16.load_state_dict(f32.state_dict())
    return f32, bf16


def cosine(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def flat(d, names):
    return np.concatenate([np.asarray(d[n], np.float64).ravel() for n in names])


@pytest.mark.parametrize("device", DEVICES)
def test_bfloat16_training_stays_within_the_documented_tolerance_of_float32(device, digits):
    f32, bf16 = twins(device)
    names, stats = f32.graph.trainable, f32.graph.statistics
    w0 = f32.state_dict()
    for k in range(3):
        batch = digits[32 * k:32 * (k + 1)]
        lf, lb = f32.train_batch(batch), bf16.train_batch(batch)
        for key in lf:
            assert abs(lb[key] - lf[key]) <= LOSS_RTOL * abs(lf[key]), (k, key, lf[key], lb[key])
        if k == 0:
            wf, wb = f32.state_dict(), bf16.state_dict()
            assert cosine(flat(wf, names) - flat(w0, names), flat(wb, names) - flat(w0, names)) > UPDATE_COSINE
            for n in names:
                assert cosine(wf[n] - w0[n], wb[n] - w0[n]) > TENSOR_COSINE, n
    wf, wb = f32.state_dict(), bf16.state_dict()
    drift = np.linalg.norm(flat(wb, names) - flat(wf, names)) / np.linalg.norm(flat(wf, names) - flat(w0, names))
    assert drift <= WEIGHT_DRIFT
    for n in stats:
        assert np.linalg.norm(wb[n] - wf[n]) <= STATS_RTOL * np.linalg.norm(wf[n]), n

    # the forward really computed in bfloat16: the outputs deviate by more than float32 rounding,
    # yet arrive as float32
    of, ob = raw_outputs(f32, digits[:32]), raw_outputs(bf16, digits[:32])
    (name,) = of
    assert ob[name].dtype == np.float32
    deviation = np.abs(ob[name] - of[name]).max() / np.abs(of[name]).max()
    assert 1e-4 < deviation < LOSS_RTOL
    cf = np.array([r["classification_confidences"] for r in dlbatch.apply_dl_model(f32, digits[:32])])
    cb = np.array([r["classification_confidences"] for r in dlbatch.apply_dl_model(bf16, digits[:32])])
    np.testing.assert_allclose(cb, cf, atol=CONFIDENCE_ATOL)


@pytest.mark.parametrize("device", DEVICES)
def test_master_weights_statistics_and_solver_state_stay_float32(device, digits):
    model = digits_model("torch", device, "bfloat16", solver_type="adam", learning_rate=1e-3)
    assert model.get_param("precision") == model.compute_precision == "bfloat16"
    assert model.precision == "float32"  # the type of the model's arrays
    for batch in (digits[:32], digits[32:64]):
        model.train_batch(batch)
    assert {v.dtype for v in model.values.values() if v.is_floating_point()} == {torch.float32}
    state = model.solver_state
    for slot in ("adam_m", "adam_v"):
        assert set(state[slot]) == set(model.graph.trainable)
        assert {v.dtype for v in state[slot].values()} == {torch.float32}
    # updates smaller than bfloat16's spacing are kept: the weights are not bfloat16 values
    w = model.values["fc.weight"]
    assert not torch.equal(w, w.bfloat16().float())

    # the program's forward hands float32 outputs to the loss and float32 gradients back
    program = model.program()
    inputs = {n: model.asarray(a) for n, a in model.model_type.encode(
        digits[:4], model.hyperparameters, model.meta, labels=False, dtype=model.precision).inputs.items()}
    result = program.forward(model.values, inputs, training=True)
    (out,) = result.outputs.values()
    assert out.dtype == torch.float32
    assert {s.dtype for s in result.statistics.values()} == {torch.float32}
    grads = program.backward(result.tape, {n: torch.ones_like(v) for n, v in result.outputs.items()})
    assert set(grads) == set(model.graph.trainable)
    assert {g.dtype for g in grads.values()} == {torch.float32}


def test_switching_precision_keeps_the_float32_weights_exactly(digits):
    model = digits_model("torch", "cpu", "float32")
    model.train_batch(digits[:32])
    before = snapshot(model)
    model.set_param("precision", "bfloat16")
    assert_same_snapshot(snapshot(model), before)
    model.set_param("precision", "float32")
    assert_same_snapshot(snapshot(model), before)


def test_numpy_backend_refuses_bfloat16_and_nothing_changes():
    with pytest.raises(DLParamError, match="torch"):
        tiny_model(backend="numpy", precision="bfloat16")
    model = tiny_model(backend="numpy")
    before = snapshot(model)
    with pytest.raises(DLParamError, match="bfloat16.*torch"):
        model.set_param("precision", "bfloat16")
    assert model.get_param("precision") == "float32"
    assert_same_snapshot(snapshot(model), before)

    bf16 = tiny_model(backend="torch", precision="bfloat16")
    before = snapshot(bf16)
    with pytest.raises(DLParamError, match="numpy backend"):
        bf16.set_param("backend", "numpy")
    assert (bf16.backend_name, bf16.get_param("precision")) == ("torch", "bfloat16")
    assert_same_snapshot(snapshot(bf16), before)


def test_bfloat16_model_file_holds_float32_weights(tmp_path, digits):
    model = digits_model("torch", "cpu", "bfloat16")
    model.train_batch(digits[:32])
    path = tmp_path / "bf16.onnx"
    dlbatch.write_dl_model(model, path)
    proto = onnx.load(str(path))
    floats = {t.data_type for t in proto.graph.initializer if t.data_type in (onnx.TensorProto.FLOAT,
                                                                              onnx.TensorProto.BFLOAT16,
                                                                              onnx.TensorProto.DOUBLE)}
    assert floats == {onnx.TensorProto.FLOAT}

    back = dlbatch.read_dl_model(path, backend="torch", precision="bfloat16")
    assert back.compute_precision == "bfloat16"
    assert_same_snapshot(snapshot(back), snapshot(model))
    on_numpy = dlbatch.read_dl_model(path, backend="numpy")
    assert on_numpy.get_param("precision") == "float32"
    for n, w in model.state_dict().items():
        np.testing.assert_array_equal(on_numpy.state_dict()[n], w)


def test_bfloat16_model_file_records_its_precision(tmp_path):
    model = tiny_model(backend="torch", precision="bfloat16")
    path = tmp_path / "bf16.onnx"
    dlbatch.write_dl_model(model, path)
    assert dlbatch.read_dl_model(path, backend="torch").get_param("precision") == "bfloat16"
    # its weights are float32: on a backend without bfloat16 autocast it is a float32 model
    assert dlbatch.read_dl_model(path, backend="numpy").get_param("precision") == "float32"
    with pytest.raises(DLParamError, match="torch"):
        dlbatch.read_dl_model(path, backend="numpy", precision="bfloat16")


@pytest.mark.slow
def test_digits_demo_learns_in_bfloat16_on_the_cpu(capsys):
    """The demo's settings on the torch CPU backend in bfloat16, 3 epochs (the learning-rate
    drop in the third) to keep the suite short: 98.6% held out; the full 12 epochs reach 98.9%."""
    summary = main(["--backend", "torch", "--precision", "bfloat16", "--epochs", "3"])
    assert "held-out accuracy" in capsys.readouterr().out
    assert summary["precision"] == "bfloat16"
    assert summary["accuracy"] >= 0.95


@pytest.mark.cuda
def test_digits_demo_learns_in_bfloat16_on_cuda(capsys):
    summary = main(["--backend", "torch", "--device", "cuda", "--precision", "bfloat16", "--epochs", "3"])
    assert summary["accuracy"] >= 0.95
