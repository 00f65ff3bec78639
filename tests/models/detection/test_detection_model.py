"""The detection model type end to end: network layout and RetinaNet initialisation, both
backends on a full step, losses against a float64 torch reference of SPEC section 4, bad
samples, head resizing, file round trip and onnxruntime on the raw head outputs."""
from __future__ import annotations

import numpy as np
import pytest

import dlbatch
from dlbatch.core.infer import raw_outputs
from dlbatch.data import detection_samples
from dlbatch.models.detection.model_type import model_anchors

torch = pytest.importorskip("torch")

IDS = [4, 7, 9]


def make(backend="numpy", precision="float64", side=32, **params):
    args = dict(class_ids=IDS, image_dimensions=[side, side, 3], batch_size=2, batch_size_multiplier=2,
                learning_rate=0.01, momentum=0.9, weight_prior=1e-4, seed=2, capacity="low", min_level=2, max_level=3,
                anchor_num_subscales=2, anchor_aspect_ratios=[1.0, 0.5])
    args.update(params)
    return dlbatch.create_dl_model("detection", backbone=args.pop("backbone", "compact"), backend=backend,
                                   precision=precision, **args)


def batch(model, n=4, seed=0, side=32):
    raw = detection_samples(n, height=side, width=side, class_ids=tuple(IDS), seed=seed, min_objects=0)
    return dlbatch.preprocess_dl_samples(raw, model)


def test_outputs_cover_every_anchor_and_start_at_foreground_probability_0_01():
    """RetinaNet initialisation: class bias -log(99), small head weights."""
    model = make()
    out = raw_outputs(model, batch(model, 2))
    anchors = model_anchors(model.hyperparameters)
    assert out["class_logits"].shape == (2, len(anchors), 3)
    assert out["box_deltas"].shape == (2, len(anchors), 4)
    p = 1 / (1 + np.exp(-out["class_logits"]))
    assert abs(np.median(p) - 0.01) < 0.003  # the prior bias dominates the small initial weights


def training_outputs(model, samples):
    """The heads' outputs as the train step sees them (batch norm in training mode)."""
    hp = model.hyperparameters
    enc = model.model_type.encode(samples, hp, model.meta, labels=True, dtype=model.precision)
    inputs = {n: model.asarray(a) for n, a in enc.inputs.items()}
    result = model.program().forward(model.values, inputs, training=True, bn_momentum=hp["batchnorm_momentum"],
                                     wanted=("class_logits", "box_deltas"))
    return {n: model.backend.to_numpy(v) for n, v in result.outputs.items()}, enc


def reference_losses(outputs, enc, alpha):
    """Focal and Huber terms of SPEC section 4, written independently in torch."""
    z = torch.tensor(outputs["class_logits"])
    classes = torch.tensor(enc.targets["class"].target)
    onehot = torch.nn.functional.one_hot(classes.clamp(min=0), z.shape[2]).double() * (classes >= 0)[..., None]
    alpha = torch.tensor(alpha, dtype=torch.float64)
    p = torch.sigmoid(z)
    ce = torch.nn.functional.binary_cross_entropy_with_logits(z, onehot, reduction="none")
    p_t = p * onehot + (1 - p) * (1 - onehot)
    a_t = alpha * onehot + (1 - alpha) * (1 - onehot)
    focal = (a_t * ce * (1 - p_t) ** 2 * (classes != -2)[..., None]).sum()
    positive = classes >= 0
    huber = torch.nn.functional.smooth_l1_loss(torch.tensor(outputs["box_deltas"])[positive],
                                               torch.tensor(enc.targets["box"].target)[positive],
                                               beta=0.11, reduction="sum")
    n = max(1, int(positive.sum()))
    return float(focal) / n, float(huber) / n, int(positive.sum())


@pytest.mark.parametrize("class_weights", [None, [0.1, 0.5, 0.9]])
def test_loss_terms_equal_a_torch_reference(class_weights):
    model = make(batch_size=4, batch_size_multiplier=1, class_weights=class_weights, class_heads_weight=1.5,
                 bbox_heads_weight=0.5)
    samples = batch(model, 4, seed=3)
    outputs, enc = training_outputs(model, samples)
    focal, huber, positives = reference_losses(outputs, enc, class_weights or [0.25] * 3)
    assert positives > 0 and (enc.targets["class"].target == -2).any()  # ignored anchors present
    out = dlbatch.train_dl_model_batch(model, samples)
    assert set(out) == {"total_loss", "loss_focal", "loss_huber", "loss_regularization"}
    assert out["loss_focal"] == pytest.approx(focal, rel=1e-12)
    assert out["loss_huber"] == pytest.approx(huber, rel=1e-12)
    assert out["total_loss"] == pytest.approx(1.5 * focal + 0.5 * huber + out["loss_regularization"], rel=1e-12)


@pytest.mark.parametrize("precision,rtol", [("float64", 1e-9), ("float32", 1e-4)])
def test_numpy_and_torch_backends_agree_on_full_detection_steps(precision, rtol):
    results, states = {}, {}
    for backend in ("numpy", "torch"):
        model = make(backend, precision, class_weights=[0.25, 0.5, 0.75], bbox_heads_weight=2.0)
        results[backend] = [dlbatch.train_dl_model_batch(model, batch(model, seed=s)) for s in (0, 1)]
        states[backend] = model.state_dict()
    for a, b in zip(results["numpy"], results["torch"]):
        for k in a:
            assert b[k] == pytest.approx(a[k], rel=rtol, abs=1e-12), k
    for k, v in states["numpy"].items():
        err = np.linalg.norm(v.astype(np.float64) - states["torch"][k]) / max(np.linalg.norm(v), 1e-30)
        assert err <= rtol * 10, (k, err)


def test_images_without_boxes_train_with_every_anchor_background():
    model = make()
    empty = [{"image": s["image"], "bbox_row1": [], "bbox_col1": [], "bbox_row2": [], "bbox_col2": [],
              "bbox_label_id": []} for s in batch(model)]
    out = dlbatch.train_dl_model_batch(model, empty)
    assert out["loss_huber"] == 0.0 and out["loss_focal"] > 0


@pytest.mark.parametrize("key,value,match", [
    ("bbox_row2", [40.0], "sample 1: box 0 .*'bbox_row2'"),
    ("bbox_row2", [1.0], "sample 1: box 0 .*bbox_row"),
    ("bbox_col1", [np.nan], "sample 1: 'bbox_col1' contains NaN"),
    ("bbox_col2", [20.0, 25.0], "sample 1: the box keys must have one entry per box"),
    ("bbox_label_id", [5], r"sample 1: 'bbox_label_id' holds class ids \[5\]"),
])
def test_bad_boxes_name_sample_and_key_and_change_nothing(key, value, match):
    model = make()
    dlbatch.train_dl_model_batch(model, batch(model))
    before, solver = model.state_dict(), model.solver_state_dict()
    samples = batch(model, seed=5)
    good = {"bbox_row1": [2.0], "bbox_col1": [3.0], "bbox_row2": [12.0], "bbox_col2": [15.0], "bbox_label_id": [4]}
    samples[1].update(good)
    samples[1][key] = value
    with pytest.raises(dlbatch.DLSampleError, match=match):
        dlbatch.train_dl_model_batch(model, samples)
    assert all(np.array_equal(model.state_dict()[k], before[k]) for k in before)
    assert all(np.array_equal(model.solver_state_dict()[k], solver[k]) for k in solver)


def test_structural_parameters_are_fixed_and_sizes_checked():
    model = make()
    with pytest.raises(dlbatch.DLParamError, match="fixed when the model is created"):
        model.set_param("max_level", 5)
    with pytest.raises(dlbatch.DLParamError, match="multiples of 8"):
        model.set_param("image_width", 36)
    with pytest.raises(dlbatch.DLParamError, match="multiples of 16; got 40 x 32"):
        make(image_dimensions=[40, 32, 3], max_level=4)


def test_preprocess_scales_boxes_with_the_image():
    model = make()
    raw = {"image": np.zeros((64, 128, 3), np.uint8), "bbox_row1": [-0.5], "bbox_col1": [9.5],
           "bbox_row2": [31.5], "bbox_col2": [127.5], "bbox_label_id": [7]}
    (s,) = dlbatch.preprocess_dl_samples([raw], model)
    np.testing.assert_allclose([s["bbox_row1"][0], s["bbox_col1"][0], s["bbox_row2"][0], s["bbox_col2"][0]],
                               [-0.5, 2.0, 15.5, 31.5])


def test_new_class_count_keeps_everything_but_the_class_output():
    model = make()
    dlbatch.train_dl_model_batch(model, batch(model))
    before = model.state_dict()
    model.set_param("class_ids", [4, 7])
    after = model.state_dict()
    assert all(np.array_equal(after[k], before[k]) for k in before if not k.startswith("class_head.out"))
    assert raw_outputs(model, batch(model, 1))["class_logits"].shape[2] == 2


def test_file_round_trip_resumes_bit_identically_and_onnxruntime_matches_the_heads(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = make(precision="float32", solver_type="adam", learning_rate=1e-3)
    dlbatch.train_dl_model_batch(model, batch(model))
    path = tmp_path / "det.onnx"
    dlbatch.write_dl_model(model, path)
    back = dlbatch.read_dl_model(path)
    for seed in (1, 2):
        assert dlbatch.train_dl_model_batch(back, batch(model, seed=seed)) == \
            dlbatch.train_dl_model_batch(model, batch(model, seed=seed))
    dlbatch.write_dl_model(model, path)
    samples = batch(model, 2, seed=6)
    ours = raw_outputs(model, samples)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.stack([s["image"].transpose(2, 0, 1) for s in samples]).astype(np.float32)
    theirs = dict(zip(["class_logits", "box_deltas"], session.run(["class_logits", "box_deltas"], {"image": x})))
    for name in theirs:
        np.testing.assert_allclose(theirs[name], ours[name], rtol=1e-4, atol=1e-4)
    assert dlbatch.apply_dl_model(back, samples)[0].keys() >= {"bbox_row1", "bbox_class_id", "bbox_confidence"}


def test_backbone_stages_the_pyramid_does_not_read_are_dropped():
    """resnet18 under max_level 4: its stride-32 stage would run and train for nothing."""
    names = set(make(backbone="resnet18", side=64, max_level=4).state_dict())
    assert not any(n.startswith("layer4.") for n in names) and any(n.startswith("layer3.") for n in names)
    assert any(n.startswith("layer4.") for n in make(backbone="resnet18", side=64, max_level=5).state_dict())
