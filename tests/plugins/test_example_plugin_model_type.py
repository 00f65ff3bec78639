"""The example plugin's model type "multi_label_classification" and its loss "binary_logistic",
registered at run time from examples/plugin (what `dlbatch.plugin_manager.register_plugin` does
for a notebook): the loss against torch autograd, a model that must learn which of two shapes
an image shows (none, either, both), its results and evaluation, numpy against torch, and a
write/read round trip."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

import dlbatch
from dlbatch.core.plugins import manager

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plugin"
SQUARE, DISK = 3, 7  # class ids: "has a bright square", "has a dark disk"
KEYS = {"classification_class_ids", "classification_class_names", "classification_confidences"}


def forget_plugin_modules() -> None:
    for name in [m for m in sys.modules if m.startswith("dlbatch_example_plugin")]:
        del sys.modules[name]


@pytest.fixture
def plugin(fresh_plugins):
    """The package's source folder on sys.path and its module registered at run time."""
    forget_plugin_modules()
    fresh_plugins.syspath_prepend(str(EXAMPLE))
    module = importlib.import_module("dlbatch_example_plugin")
    if "example" not in {p.name for p in dlbatch.plugins()}:  # a local build's egg-info is an entry point
        manager.register_plugin(module, "example")
    yield module
    forget_plugin_modules()


def scene(rng, square: bool, disk: bool, size: int = 16) -> dict:
    """A noisy grey image with a bright 5 x 5 square and/or a dark disk of radius 2.5 anywhere."""
    img = rng.normal(128, 12, (size, size, 1))
    if square:
        r, c = rng.integers(0, size - 5, 2)
        img[r:r + 5, c:c + 5] = 235
    if disk:
        r, c = rng.integers(3, size - 3, 2)
        yy, xx = np.mgrid[:size, :size]
        img[(yy - r) ** 2 + (xx - c) ** 2 <= 6.25] = 20
    return {"image": img.clip(0, 255).astype(np.uint8),
            "image_label_ids": [cid for cid, shown in ((SQUARE, square), (DISK, disk)) if shown]}


def scenes(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [scene(rng, i % 2 == 1, (i // 2) % 2 == 1) for i in range(n)]


def new_model(**params):
    args = dict(class_ids=[SQUARE, DISK], class_names=["square", "disk"], image_dimensions=[16, 16, 1],
                batch_size=8, solver_type="adam", learning_rate=0.01, seed=0)
    return dlbatch.create_dl_model("multi_label_classification", **{**args, **params})


def test_binary_logistic_matches_torch_autograd(plugin):
    torch = pytest.importorskip("torch")
    import array_api_compat.torch as xp_torch
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(0, 3, (6, 4)), [[800.0, -800.0, 40.0, -40.0]]])  # and far out
    y = rng.integers(0, 2, z.shape).astype(np.float64)
    y[0] = [0.25, 0.5, 0.75, 1.0]  # soft targets too
    a = rng.uniform(0, 2, z.shape)
    zt = torch.tensor(z, requires_grad=True)
    ref = torch.nn.functional.binary_cross_entropy_with_logits(zt, torch.tensor(y), weight=torch.tensor(a),
                                                               reduction="sum")
    ref.backward()
    ref = ref.detach()
    loss = manager.loss("binary_logistic")
    value, grad = loss.value_and_grad(np, z, y, a)
    assert np.isfinite(grad).all()
    assert float(value) == pytest.approx(float(ref), rel=1e-12)
    np.testing.assert_allclose(grad, zt.grad.numpy(), rtol=1e-10, atol=1e-300)
    # the same code on torch tensors (what the torch backend passes it)
    tvalue, tgrad = loss.value_and_grad(xp_torch, torch.tensor(z), torch.tensor(y), torch.tensor(a))
    assert float(tvalue) == pytest.approx(float(ref), rel=1e-12)
    np.testing.assert_allclose(tgrad.numpy(), zt.grad.numpy(), rtol=1e-10, atol=1e-300)


def test_learns_which_shapes_an_image_shows(plugin):
    model = new_model()
    train = dlbatch.preprocess_dl_samples(scenes(64, seed=1), model)
    held_out = dlbatch.preprocess_dl_samples(scenes(32, seed=2), model)
    before = dlbatch.evaluate_dl_model(model, held_out)
    losses = [dlbatch.train_dl_model_batch(model, train[b:b + 8])["loss_binary_logistic"]
              for _ in range(3) for b in range(0, 64, 8)]
    after = dlbatch.evaluate_dl_model(model, held_out)
    assert losses[0] > 0.5  # about log 2 from the start: no class known
    assert np.mean(losses[-8:]) < 0.2 * losses[0], losses
    assert after["mean_f1"] >= 0.9 > before["mean_f1"], (before, after)
    assert after["exact_match_accuracy"] >= 0.8 and after["num_samples"] == 32

    results = dlbatch.apply_dl_model(model, held_out[:4])
    for result, sample in zip(results, held_out[:4]):
        assert set(result) == KEYS
        conf = result["classification_confidences"]
        assert conf == sorted(conf, reverse=True) and all(0.5 <= c <= 1 for c in conf)
        assert result["classification_class_names"] == [{SQUARE: "square", DISK: "disk"}[c]
                                                         for c in result["classification_class_ids"]]
    assert [sorted(r["classification_class_ids"]) for r in results] == \
        [sorted(s["image_label_ids"]) for s in held_out[:4]]
    dlbatch.set_dl_model_param(model, "min_confidence", 0.0)  # every class, best first
    assert all(sorted(r["classification_class_ids"]) == [SQUARE, DISK]
               for r in dlbatch.apply_dl_model(model, held_out[:4]))


def test_reported_loss_is_the_mean_over_samples_and_classes_on_numpy_and_torch(plugin):
    torch = pytest.importorskip("torch")
    data = scenes(8, seed=3)
    out = {}
    for backend in ("numpy", "torch"):
        model = new_model(backend=backend)
        assert model.backend_name == backend
        samples = dlbatch.preprocess_dl_samples(data, model)
        enc = model.model_type.encode(samples, model.hyperparameters, model.meta, labels=True, dtype="float32")
        logits = model.program().forward(model.values, {k: model.asarray(v) for k, v in enc.inputs.items()},
                                         training=True, wanted=(model.meta["logits"],)).outputs[model.meta["logits"]]
        targets = torch.tensor([[float(c in s["image_label_ids"]) for c in (SQUARE, DISK)] for s in data])
        expected = torch.nn.functional.binary_cross_entropy_with_logits(
            torch.as_tensor(np.asarray(logits.detach() if backend == "torch" else logits), dtype=torch.float64),
            targets.double(), reduction="mean")
        out[backend] = dlbatch.train_dl_model_batch(model, samples)["loss_binary_logistic"]
        assert out[backend] == pytest.approx(float(expected), rel=1e-5)
    assert out["numpy"] == pytest.approx(out["torch"], abs=1e-5)


def test_write_and_read_keep_the_model_type_and_its_parameters(plugin, tmp_path):
    model = new_model(min_confidence=0.3)
    samples = dlbatch.preprocess_dl_samples(scenes(8, seed=4), model)
    dlbatch.train_dl_model_batch(model, samples)
    dlbatch.write_dl_model(model, tmp_path / "multi.onnx")
    again = dlbatch.read_dl_model(tmp_path / "multi.onnx")
    assert again.model_type.name == "multi_label_classification"
    assert again.get_param("min_confidence") == 0.3 and again.get_param("class_ids") == [SQUARE, DISK]
    assert dlbatch.apply_dl_model(again, samples) == dlbatch.apply_dl_model(model, samples)


def test_bad_labels_and_parameters_are_refused_clearly(plugin):
    model = new_model()
    image = scenes(1, seed=5)[0]["image"]
    good = [{"image": image, "image_label_ids": []}] * 7
    for labels, message in [([SQUARE, 5], r"'image_label_ids' is 5, which is not one of the model's class_ids"),
                            ([[SQUARE]], r"'image_label_ids' must be a list of class ids"),
                            ([1.5], r"'image_label_ids' must be one integer class id")]:
        with pytest.raises(dlbatch.DLSampleError, match=f"sample 7: {message}"):
            dlbatch.train_dl_model_batch(model, good + [{"image": image, "image_label_ids": labels}])
    with pytest.raises(dlbatch.DLSampleError, match="no 'image_label_ids' key"):
        dlbatch.evaluate_dl_model(model, [{"image": image}])
    assert len(dlbatch.apply_dl_model(model, [{"image": image}])) == 1  # apply needs no labels
    with pytest.raises(dlbatch.DLParamError, match="min_confidence"):
        dlbatch.set_dl_model_param(model, "min_confidence", 1.5)
    with pytest.raises(dlbatch.DLParamError, match="keeps its number of classes"):
        dlbatch.set_dl_model_param(model, "class_ids", [1, 2, 3])
    dlbatch.set_dl_model_param(model, "class_ids", [1, 2])  # renaming is fine
