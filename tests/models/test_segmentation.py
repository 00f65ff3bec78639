"""The segmentation model type: per-pixel loss against torch, both backends on a full step,
labels, evaluation against scikit-learn, file round trip and onnxruntime."""
from __future__ import annotations

import numpy as np
import pytest

import dlbatch
from dlbatch.core.plugins import manager

torch = pytest.importorskip("torch")

IDS = [3, 5, 9]


def make(backbone="compact", side=16, backend="numpy", precision="float64", **params):
    args = dict(class_ids=IDS, image_dimensions=[side, side, 3], batch_size=2, batch_size_multiplier=2,
                learning_rate=0.01, momentum=0.9, weight_prior=1e-3, seed=1)
    args.update(params)
    return dlbatch.create_dl_model("segmentation", backbone=backbone, backend=backend, precision=precision,
                                   **args)


def samples(n=4, side=16, seed=0, ids=IDS, weights=False):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        s = {"image": rng.normal(0, 40, (side, side, 3)).astype(np.float32),
             "segmentation_image": rng.choice(ids, (side, side))}
        if weights:
            s["weight_image"] = rng.uniform(0, 2, (side, side))
        out.append(s)
    return out


def term_value(model, batch, logits):
    """The segmentation term's value for `logits` as the train step computes it."""
    mt = model.model_type
    enc = mt.encode(batch, model.hyperparameters, model.meta, labels=True, dtype="float64")
    target = enc.targets["segmentation"]
    loss = manager.loss("multinomial_logistic")
    total, grad = loss.value_and_grad(np, logits, target.target, target.weights)
    n = target.normalizer
    return (float(total) / n, grad / n) if n > 0 else (0.0, np.zeros_like(grad))


@pytest.mark.parametrize("class_weights,ignore,weights", [(None, [], False), ([1.0, 2.5, 0.5], [], True),
                                                         ([1.0, 2.5, 0.5], [9, 255], True)])
def test_per_pixel_loss_equals_torch_cross_entropy(class_weights, ignore, weights):
    model = make(class_weights=class_weights, ignore_class_ids=ignore)
    batch = samples(2, weights=weights, ids=IDS + [i for i in ignore if i not in IDS])
    logits = np.random.default_rng(5).normal(0, 2, (2, 3, 16, 16))
    value, grad = term_value(model, batch, logits)
    zt = torch.tensor(logits, requires_grad=True)
    index = {c: i for i, c in enumerate(IDS)}
    labels = np.stack([s["segmentation_image"] for s in batch])
    y = torch.tensor(np.vectorize(lambda c: index.get(c, 0))(labels))
    a = torch.tensor(np.vectorize(lambda c: (class_weights or [1, 1, 1])[index[c]] if c in index else 0.0)(labels))
    a = a * torch.tensor(~np.isin(labels, ignore))
    if weights:
        a = a * torch.tensor(np.stack([s["weight_image"] for s in batch]))
    ref = (a * torch.nn.functional.cross_entropy(zt, y, reduction="none")).sum() / a.sum()
    ref.backward()
    assert value == pytest.approx(float(ref.detach()), rel=1e-12)
    np.testing.assert_allclose(grad, zt.grad.numpy(), rtol=1e-10, atol=1e-15)
    if not weights and class_weights is None:  # plain case: torch's own weighted mean
        plain = torch.nn.functional.cross_entropy(torch.tensor(logits), y)
        assert value == pytest.approx(float(plain), rel=1e-12)


def test_every_pixel_ignored_gives_zero_loss_and_a_regular_update():
    model = make(ignore_class_ids=[9], class_ids=[3, 5])
    batch = [{"image": s["image"], "segmentation_image": np.full((16, 16), 9)} for s in samples()]
    out = dlbatch.train_dl_model_batch(model, batch)
    assert out["loss_multinomial_logistic"] == 0.0
    assert out["total_loss"] == out["loss_regularization"] > 0


@pytest.mark.parametrize("backbone,side,precision,rtol", [("compact", 16, "float64", 1e-9),
                                                           ("resnet18", 64, "float64", 1e-9),
                                                           ("compact", 16, "float32", 1e-4)])
def test_numpy_and_torch_backends_agree_on_a_full_step(backbone, side, precision, rtol):
    results, states = {}, {}
    for backend in ("numpy", "torch"):
        model = make(backbone, side, backend, precision, class_weights=[1.0, 2.0, 0.5])
        batch = samples(4, side=side, weights=True)
        results[backend] = [dlbatch.train_dl_model_batch(model, batch) for _ in range(2)]
        states[backend] = model.state_dict()
    for a, b in zip(results["numpy"], results["torch"]):
        for k in a:
            assert b[k] == pytest.approx(a[k], rel=rtol, abs=1e-12), k
    for k, v in states["numpy"].items():
        err = np.linalg.norm(v.astype(np.float64) - states["torch"][k]) / max(np.linalg.norm(v), 1e-30)
        assert err <= rtol, (k, err)


def test_apply_returns_class_ids_and_winning_probabilities():
    model = make()
    batch = samples(3)
    results = dlbatch.apply_dl_model(model, batch)
    from dlbatch.core.infer import raw_outputs
    logits = raw_outputs(model, batch)[model.meta["logits"]]
    probs = torch.softmax(torch.tensor(logits), dim=1).numpy()
    for r, p in zip(results, probs):
        assert r["segmentation_image"].shape == (16, 16)
        np.testing.assert_array_equal(r["segmentation_image"], np.asarray(IDS)[p.argmax(axis=0)])
        np.testing.assert_allclose(r["segmentation_confidence"], p.max(axis=0), rtol=1e-6)


def test_evaluation_equals_scikit_learn_and_ignores_ignored_pixels():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    model = make(ignore_class_ids=[255], batch_size=1)
    batch = samples(3, ids=IDS + [255])
    measures = dlbatch.evaluate_dl_model(model, batch)
    predicted = np.stack([r["segmentation_image"] for r in dlbatch.apply_dl_model(model, batch)]).ravel()
    truth = np.stack([s["segmentation_image"] for s in batch]).ravel()
    keep = truth != 255
    cm = sklearn_metrics.confusion_matrix(truth[keep], predicted[keep], labels=IDS)
    assert measures["confusion_matrix"] == cm.tolist()
    iou = sklearn_metrics.jaccard_score(truth[keep], predicted[keep], labels=IDS, average=None, zero_division=0)
    np.testing.assert_allclose(measures["class_iou"], iou)
    assert measures["mean_iou"] == pytest.approx(np.nanmean(iou))
    assert measures["pixel_accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(truth[keep], predicted[keep]))
    recall = sklearn_metrics.recall_score(truth[keep], predicted[keep], labels=IDS, average=None, zero_division=0)
    np.testing.assert_allclose(measures["class_pixel_accuracy"], recall)
    assert measures["mean_accuracy"] == pytest.approx(np.nanmean(recall))
    freq = cm.sum(axis=1) / cm.sum()
    assert measures["frequency_weighted_iou"] == pytest.approx(np.nansum(freq * iou))


@pytest.mark.parametrize("key,value,match", [
    ("segmentation_image", np.zeros((8, 16), int), "sample 1: 'segmentation_image' has shape"),
    ("segmentation_image", np.full((16, 16), 7), r"sample 1: 'segmentation_image' holds class ids \[7\]"),
    ("weight_image", np.full((16, 16), np.nan), "sample 1: 'weight_image' contains NaN"),
    ("weight_image", -np.ones((16, 16)), "sample 1: 'weight_image' has negative weights"),
    ("segmentation_image", np.full((16, 16), 3.5), "sample 1: 'segmentation_image' must hold integer"),
])
def test_bad_samples_name_index_and_key_and_change_nothing(key, value, match):
    model = make()
    dlbatch.train_dl_model_batch(model, samples())
    before, solver = model.state_dict(), model.solver_state_dict()
    batch = samples(seed=2)
    batch[1][key] = value
    with pytest.raises(dlbatch.DLSampleError, match=match):
        dlbatch.train_dl_model_batch(model, batch)
    assert all(np.array_equal(model.state_dict()[k], before[k]) for k in before)
    assert all(np.array_equal(model.solver_state_dict()[k], solver[k]) for k in solver)


def test_missing_label_image_is_a_clear_error():
    batch = samples()
    del batch[2]["segmentation_image"]
    with pytest.raises(dlbatch.DLSampleError, match="sample 2 has no 'segmentation_image' key"):
        dlbatch.train_dl_model_batch(make(), batch)


def test_image_sides_must_be_multiples_of_the_deepest_stride():
    with pytest.raises(dlbatch.DLParamError, match="multiples of 32; got 100 x 96. Use e.g. 96 x 96"):
        make("resnet18", image_dimensions=[100, 96, 3])
    model = make()
    with pytest.raises(dlbatch.DLParamError, match="multiples of 4"):
        model.set_param("image_width", 18)
    assert model.get_param("image_width") == 16


def test_preprocess_resizes_labels_with_nearest_neighbour():
    model = make()
    raw = {"image": np.zeros((32, 24, 3), np.uint8), "segmentation_image": np.repeat(np.array([[3, 9]]), 32, axis=0)
           .repeat(12, axis=1), "weight_image": np.ones((32, 24))}
    (s,) = dlbatch.preprocess_dl_samples([raw], model)
    assert s["segmentation_image"].shape == (16, 16) and s["weight_image"].shape == (16, 16)
    assert set(np.unique(s["segmentation_image"])) == {3, 9}
    assert (s["segmentation_image"][:, :8] == 3).all() and (s["segmentation_image"][:, 8:] == 9).all()


def test_new_class_count_reinitialises_only_the_classifier():
    model = make()
    dlbatch.train_dl_model_batch(model, samples())
    before = model.state_dict()
    model.set_param("class_ids", [1, 2, 3, 4])
    after = model.state_dict()
    assert after["decoder.classifier.weight"].shape[0] == 4
    assert all(np.array_equal(after[k], before[k]) for k in before if not k.startswith("decoder.classifier"))
    out = dlbatch.train_dl_model_batch(model, samples(ids=[1, 2, 3, 4]))
    assert np.isfinite(out["total_loss"])


def test_file_round_trip_resumes_bit_identically_and_runs_in_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = make(precision="float32", solver_type="adam")
    dlbatch.train_dl_model_batch(model, samples(seed=1))
    path = tmp_path / "seg.onnx"
    dlbatch.write_dl_model(model, path)
    back = dlbatch.read_dl_model(path)
    assert back.get_param("type") == "segmentation" and back.get_param("backbone") == "compact"
    for seed in (2, 3):
        assert dlbatch.train_dl_model_batch(back, samples(seed=seed)) == \
            dlbatch.train_dl_model_batch(model, samples(seed=seed))
    assert all(np.array_equal(back.state_dict()[k], v) for k, v in model.state_dict().items())
    dlbatch.write_dl_model(model, path)
    batch = samples(2, seed=4)
    from dlbatch.core.infer import raw_outputs
    ours = raw_outputs(model, batch)[model.meta["logits"]]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.stack([s["image"].transpose(2, 0, 1) for s in batch]).astype(np.float32)
    (theirs,) = session.run([model.meta["logits"]], {model.meta["input"]: x})
    np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-4)
