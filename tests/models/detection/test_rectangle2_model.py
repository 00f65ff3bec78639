"""Oriented detection (rectangle2) through the detection model type: both backends on a full
step, bad samples, classes without orientation, and evaluation that gives the rectangle1
numbers for axis-parallel boxes."""
from __future__ import annotations

import numpy as np
import pytest

import dlbatch
from dlbatch.data import detection_samples
from dlbatch.models.detection.boxes import Rectangle1, geometry_for
from dlbatch.models.detection.coco_eval import DetectionEvaluation

torch = pytest.importorskip("torch")

IDS = [2, 5, 8]
KEYS = ("bbox_row", "bbox_col", "bbox_phi", "bbox_length1", "bbox_length2")


def make(backend="numpy", precision="float64", **params):
    args = dict(class_ids=IDS, image_dimensions=[32, 32, 3], batch_size=2, batch_size_multiplier=2,
                learning_rate=0.01, momentum=0.9, weight_prior=1e-4, seed=4, capacity="low", min_level=2, max_level=3,
                anchor_num_subscales=1, anchor_aspect_ratios=[2.0], anchor_angles=[0.0, np.pi / 2, np.pi / 4],
                instance_type="rectangle2", ignore_direction=True)
    args.update(params)
    return dlbatch.create_dl_model("detection", backbone="compact", backend=backend, precision=precision, **args)


def batch(model, n=4, seed=0, directed=()):
    raw = detection_samples(n, height=32, width=32, class_ids=tuple(IDS), seed=seed, instance_type="rectangle2",
                            directed_class_ids=directed, min_objects=1)
    return dlbatch.preprocess_dl_samples(raw, model)


@pytest.mark.parametrize("ignore_direction", [True, False])
def test_numpy_and_torch_backends_agree_on_full_rectangle2_steps(ignore_direction):
    results, states = {}, {}
    directed = () if ignore_direction else (2, 5)
    for backend in ("numpy", "torch"):
        model = make(backend, ignore_direction=ignore_direction, class_ids_no_orientation=[8])
        results[backend] = [dlbatch.train_dl_model_batch(model, batch(model, seed=s, directed=directed))
                            for s in (0, 1)]
        states[backend] = model.state_dict()
    for a, b in zip(results["numpy"], results["torch"]):
        for k in a:
            assert b[k] == pytest.approx(a[k], rel=1e-9, abs=1e-12), k
    assert results["numpy"][0]["loss_huber"] > 0
    for k, v in states["numpy"].items():
        err = np.linalg.norm(v - states["torch"][k]) / max(np.linalg.norm(v), 1e-30)
        assert err <= 1e-8, (k, err)


@pytest.mark.parametrize("key,value,match", [
    ("bbox_length1", [-3.0], "sample 1: box 0 .*'bbox_length1'"),
    ("bbox_length2", [0.0], "sample 1: box 0 .*'bbox_length2'"),
    ("bbox_phi", [np.nan], "sample 1: 'bbox_phi' contains NaN"),
    ("bbox_row", [5.0, 6.0], "sample 1: the box keys must have one entry per box"),
    ("bbox_col", [40.0], "sample 1: box 0 .*'bbox_col'"),
])
def test_bad_rectangle2_samples_name_sample_and_key_and_change_nothing(key, value, match):
    model = make()
    dlbatch.train_dl_model_batch(model, batch(model))
    before, solver = model.state_dict(), model.solver_state_dict()
    samples = batch(model, seed=3)
    samples[1].update({"bbox_row": [10.0], "bbox_col": [12.0], "bbox_phi": [0.3], "bbox_length1": [6.0],
                       "bbox_length2": [3.0], "bbox_label_id": [5]})
    samples[1][key] = value
    with pytest.raises(dlbatch.DLSampleError, match=match):
        dlbatch.train_dl_model_batch(model, samples)
    assert all(np.array_equal(model.state_dict()[k], before[k]) for k in before)
    assert all(np.array_equal(model.solver_state_dict()[k], solver[k]) for k in solver)


def test_results_use_the_rectangle2_keys_and_no_orientation_classes_have_phi_0():
    model = make(class_ids_no_orientation=[8], min_confidence=0.0, max_num_detections=300)
    results = dlbatch.apply_dl_model(model, batch(model, 2))
    assert set(results[0]) == {*KEYS, "bbox_class_id", "bbox_class_name", "bbox_confidence"}
    for r in results:
        unoriented = r["bbox_class_id"] == 8
        assert unoriented.any() and (~unoriented).any()
        assert (r["bbox_phi"][unoriented] == 0).all()
        assert (r["bbox_phi"] > -np.pi / 2).all() and (r["bbox_phi"] <= np.pi / 2).all()


def test_class_ids_no_orientation_must_be_class_ids():
    with pytest.raises(dlbatch.DLParamError, match="class_ids_no_orientation"):
        make(class_ids_no_orientation=[3])


def test_evaluation_of_axis_parallel_boxes_gives_the_rectangle1_numbers():
    rng = np.random.default_rng(0)
    r1 = DetectionEvaluation(IDS, Rectangle1.pairwise_iou)
    r2 = DetectionEvaluation(IDS, geometry_for("rectangle2").pairwise_iou)

    def as_rectangle2(b):  # phi = 0: length1 along the columns, length2 along the rows
        return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, np.zeros(len(b)),
                         (b[:, 3] - b[:, 1]) / 2, (b[:, 2] - b[:, 0]) / 2], axis=1)

    for _ in range(12):
        def boxes(n):
            corner = rng.uniform(0, 50, (n, 2))
            return np.concatenate([corner, corner + rng.uniform(2, 20, (n, 2))], axis=1)
        gt, pred = boxes(rng.integers(0, 5)), boxes(rng.integers(0, 8))
        pred = np.concatenate([pred, gt + rng.normal(0, 1.5, gt.shape)])
        pred[:, 2:] = np.maximum(pred[:, 2:], pred[:, :2] + 0.5)
        args = (rng.uniform(0, 1, len(pred)), rng.integers(0, 3, len(pred)))
        gt_classes = rng.integers(0, 3, len(gt))
        r1.add(pred, *args, gt, gt_classes)
        r2.add(as_rectangle2(pred), *args, as_rectangle2(gt), gt_classes)
    a, b = r1.summary(), r2.summary()
    for key in ("mean_ap", "ap_50", "ap_75"):
        assert a[key] == pytest.approx(b[key], abs=1e-12), key
    np.testing.assert_allclose(a["class_ap"], b["class_ap"], atol=1e-12)


def test_directed_matching_never_assigns_an_anchor_pointing_the_other_way():
    from dlbatch.models.detection.rectangle2 import Rectangle2, wrap_angle
    box = np.array([[16.0, 16.0, 0.3, 8.0, 3.0]])
    anchors = np.array([[16.0, 16.0, 0.3, 8.0, 3.0], [16.0, 16.0, 0.3 + np.pi, 8.0, 3.0]])
    directed, undirected = Rectangle2(ignore_direction=False), Rectangle2(ignore_direction=True)
    assert undirected.matching_iou(box, anchors)[0] == pytest.approx([1.0, 1.0])
    assert directed.matching_iou(box, anchors)[0] == pytest.approx([1.0, 0.0])
    model = make(ignore_direction=False, anchor_angles=[0.0, np.pi / 2, np.pi, -np.pi / 2])
    samples = batch(model, 4, seed=7, directed=tuple(IDS))
    enc = model.model_type.encode(samples, model.hyperparameters, model.meta, labels=True, dtype="float64")
    positive = enc.targets["box"].weights > 0
    angle_deltas = enc.targets["box"].target[positive][:, 4]
    assert positive.any() and (np.abs(angle_deltas) < np.pi / 2 + 1e-9).all()
    assert (np.abs(wrap_angle(angle_deltas, ignore_direction=False)) < np.pi / 2 + 1e-9).all()
