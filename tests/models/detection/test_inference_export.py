"""export_inference_onnx: onnxruntime alone on the exported file returns apply_dl_model's
detections (per-class and class-agnostic NMS, the max_num_detections cut, the per-level
top-k, equal scores), for several batch sizes; the file passes the full ONNX check; other
models and old opsets are refused; the write is atomic."""
from __future__ import annotations

import numpy as np
import pytest

import dlbatch
from dlbatch.core.preprocess import SampleContext
from dlbatch.data import detection_samples
from dlbatch.models.detection import inference_export
from dlbatch.models.detection.inference_export import OUTPUT_NAMES, OUTPUT_TYPES, results_from_outputs
from dlbatch.models.detection.inference_graph import NodeBuilder, postprocess
from dlbatch.models.detection.model_type import model_anchors

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

IDS = (4, 7, 9)


def make(side=32, **params):
    args = dict(class_ids=list(IDS), image_dimensions=[side, side, 3], capacity="low", min_level=2, max_level=3,
                anchor_num_subscales=2, anchor_aspect_ratios=[1.0, 0.5], batch_size=2, min_confidence=0.05,
                learning_rate=0.01, momentum=0.9, seed=2)
    args.update(params)
    return dlbatch.create_dl_model("detection", backbone="compact", **args)


def samples(model, n, seed, side=32):
    raw = detection_samples(n, height=side, width=side, class_ids=IDS, seed=seed, min_objects=1)
    return dlbatch.preprocess_dl_samples(raw, model)


@pytest.fixture(scope="module")
def trained():
    model = make()
    for seed in range(6):
        dlbatch.train_dl_model_batch(model, samples(model, 2, seed))
    return model


def configure(model, **params):
    settings = dict(min_confidence=0.01, max_overlap=0.5, max_overlap_class_agnostic=1.0, max_num_detections=100)
    settings.update(params)
    for name, value in settings.items():
        dlbatch.set_dl_model_param(model, name, value)


def run_exported(model, batch, path):
    dlbatch.export_inference_onnx(model, path)
    onnx.checker.check_model(str(path), full_check=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == list(OUTPUT_NAMES)
    x = np.stack([s["image"].transpose(2, 0, 1) for s in batch]).astype(model.precision)
    return session.run(None, {session.get_inputs()[0].name: x})


def assert_same_detections(ours, theirs, box_tol=1e-4, score_tol=1e-5):
    """Same count, classes and order; boxes to box_tol plus 1e-5 of the box's size (the heads
    differ between onnxruntime and the dlbatch backend by float32 rounding, which the box
    decoding scales by the anchor size: a corner near 0 of a 30-pixel box carries the rounding
    of its 15-pixel centre and half-size), scores to score_tol."""
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert len(a["bbox_confidence"]) == len(b["bbox_confidence"]), f"image {i}"
        np.testing.assert_array_equal(a["bbox_class_id"], b["bbox_class_id"])
        assert a["bbox_class_name"] == b["bbox_class_name"]
        size = np.abs(b["bbox_row2"] - b["bbox_row1"]) + np.abs(b["bbox_col2"] - b["bbox_col1"])
        for key in ("bbox_row1", "bbox_col1", "bbox_row2", "bbox_col2"):
            excess = np.abs(a[key] - b[key]) - (box_tol + 1e-5 * size + box_tol / 10 * np.abs(b[key]))
            assert (excess <= 0).all(), f"image {i} {key}: {a[key][excess > 0]} vs {b[key][excess > 0]}"
        np.testing.assert_allclose(a["bbox_confidence"], b["bbox_confidence"], rtol=0, atol=score_tol)


@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize("agnostic", [1.0, 0.3])
@pytest.mark.parametrize("max_num", [10_000, 4])
def test_onnxruntime_returns_apply_dl_model_detections(trained, tmp_path, batch_size, agnostic, max_num):
    configure(trained, max_overlap_class_agnostic=agnostic, max_num_detections=max_num)
    batch = samples(trained, batch_size, seed=40 + batch_size)
    outputs = run_exported(trained, batch, tmp_path / "det_inference.onnx")
    ours = dlbatch.apply_dl_model(trained, batch)
    theirs = results_from_outputs(outputs, batch_size)
    assert_same_detections(ours, theirs)
    assert min(len(r["bbox_confidence"]) for r in ours) >= (4 if max_num == 4 else 10)
    if max_num == 4:  # the cut is exercised
        assert all(len(r["bbox_confidence"]) == 4 for r in ours)
    # the mapping form gives the same
    assert_same_detections(theirs, results_from_outputs(dict(zip(OUTPUT_NAMES, outputs)), batch_size))


def test_both_nms_steps_remove_candidates(trained, tmp_path):
    """The case above is not trivial: per-class NMS drops most candidates, the class-agnostic
    one drops further boxes, and the exported file agrees in every setting."""
    batch = samples(trained, 3, seed=43)
    counts = {}
    for overlap, agnostic in ((1.0, 1.0), (0.5, 1.0), (0.5, 0.2)):
        configure(trained, max_overlap=overlap, max_overlap_class_agnostic=agnostic, max_num_detections=10_000)
        ours = dlbatch.apply_dl_model(trained, batch)
        assert_same_detections(ours, results_from_outputs(run_exported(trained, batch, tmp_path / "d.onnx"), 3))
        counts[overlap, agnostic] = sum(len(r["bbox_confidence"]) for r in ours)
    assert counts[1.0, 1.0] > 2 * counts[0.5, 1.0] > 0
    assert counts[0.5, 1.0] > counts[0.5, 0.2] > 0


def test_per_level_top_k_cut_matches(tmp_path):
    """64 x 64 with min_confidence 0: level 2 has 16*16*4*3 = 3072 pairs, so only its best
    1000 enter NMS (the untrained heads still give distinct scores). Anchors up to 64 px scale
    the heads' float32 difference (about 2e-6) to about 1.5e-4 px, hence box_tol 5e-4."""
    model = make(side=64)
    configure(model, min_confidence=0.0, max_overlap=0.3, max_overlap_class_agnostic=0.5, max_num_detections=500)
    batch = samples(model, 2, seed=7, side=64)
    ours = dlbatch.apply_dl_model(model, batch)
    assert_same_detections(ours, results_from_outputs(run_exported(model, batch, tmp_path / "d.onnx"), 2),
                           box_tol=5e-4)


@pytest.mark.parametrize("agnostic", [1.0, 0.4])
def test_equal_scores_keep_apply_dl_model_order(tmp_path, agnostic):
    """A zero class head gives every anchor the same score per class: top-k per level, both
    NMS steps and the final order must all break the ties by the lower anchor * K + class
    (ONNX leaves NonMaxSuppression's order of equal scores open; the graph feeds it ranks)."""
    model = make(side=64)
    name = model.meta["head_weight"]
    model.replace_params({name: np.zeros_like(model.numpy_values()[name])})
    configure(model, min_confidence=0.005, max_overlap=0.3, max_overlap_class_agnostic=agnostic,
              max_num_detections=300)
    batch = samples(model, 2, seed=8, side=64)
    ours = dlbatch.apply_dl_model(model, batch)
    assert len(np.unique(ours[0]["bbox_confidence"])) == 1  # all tied (one bias for every class)
    assert_same_detections(ours, results_from_outputs(run_exported(model, batch, tmp_path / "d.onnx"), 2))


def postprocess_session(model):
    """onnxruntime on the exported postprocess alone: the heads' outputs are the inputs."""
    from onnx import TensorProto, helper
    hp, meta, b = model.hyperparameters, model.meta, NodeBuilder()
    out = postprocess(b, meta["class_logits"], meta["box_deltas"], model_anchors(hp), hp)
    inputs = [helper.make_tensor_value_info(meta[k], TensorProto.FLOAT, ["N", "A", w])
              for k, w in (("class_logits", len(IDS)), ("box_deltas", 4))]
    b.nodes += [helper.make_node("Identity", [out[k]], [k]) for k in OUTPUT_NAMES]
    outputs = [helper.make_tensor_value_info(k, OUTPUT_TYPES[k], ["D"]) for k in OUTPUT_NAMES]
    graph = helper.make_graph(b.nodes, "postprocess", inputs, outputs, b.initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", model.graph.opset)])
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("overlap,agnostic", [(0.5, 1.0), (0.4, 0.3), (1.0, 0.5), (1.0, 1.0)])
@pytest.mark.parametrize("side,logit_kind", [(32, "ties"), (64, "ties"), (32, "near_one")])
def test_the_postprocess_graph_equals_the_numpy_decoding_on_the_same_head_outputs(overlap, agnostic, side,
                                                                                  logit_kind):
    """No network noise here: the same float32 logits and deltas go into both, so boxes and
    scores agree to float64 rounding. "ties": the logits take 12 values only (equal scores
    everywhere); "near_one": logits in [8, 9], whose probabilities differ in float64 but many
    coincide in float32 (NMS must still follow the float64 order). The deltas spread boxes
    over and beyond the image (clipping, some clipped to nothing); side 64 cuts level 2 to
    its best 1000 pairs."""
    model = make(side=side)
    configure(model, min_confidence=0.3, max_overlap=overlap, max_overlap_class_agnostic=agnostic,
              max_num_detections=150)
    hp, meta = model.hyperparameters, model.meta
    num_anchors = len(model_anchors(hp))
    rng = np.random.default_rng(side)
    shape = (3, num_anchors, len(IDS))
    if logit_kind == "ties":
        logits = rng.choice(np.linspace(-2.0, 3.0, 12), size=shape).astype(np.float32)
    else:
        logits = rng.uniform(8.0, 9.0, size=shape).astype(np.float32)
        p = 1 / (1 + np.exp(-logits.astype(np.float64)))
        assert len(np.unique(p.astype(np.float32))) < 0.8 * len(np.unique(p))
    deltas = rng.normal(0.0, 0.6, size=(3, num_anchors, 4)).astype(np.float32)
    deltas[:, ::97, :2] = 40.0  # moved wholly outside: degenerate after clipping
    heads = {meta["class_logits"]: logits, meta["box_deltas"]: deltas}
    contexts = [SampleContext.of({}, hp, i) for i in range(3)]  # results in network pixels
    ours = model.model_type.decode(heads, hp, meta, contexts)
    theirs = results_from_outputs(postprocess_session(model).run(None, heads), 3)
    assert_same_detections(ours, theirs, box_tol=1e-9, score_tol=1e-12)
    assert all(len(r["bbox_confidence"]) > 20 for r in ours)


def test_no_detection_gives_empty_results(trained, tmp_path):
    configure(trained, min_confidence=1.0)
    batch = samples(trained, 2, seed=5)
    outputs = run_exported(trained, batch, tmp_path / "d.onnx")
    assert all(len(o) == 0 for o in outputs)
    results = results_from_outputs(outputs, 2)
    assert [len(r["bbox_confidence"]) for r in results] == [0, 0]
    assert results[0]["bbox_class_name"] == [] and results[0]["bbox_class_id"].dtype == np.int64


def test_outputs_and_metadata_are_documented_in_the_file(trained, tmp_path):
    configure(trained)
    path = tmp_path / "d.onnx"
    dlbatch.export_inference_onnx(trained, path)
    proto = onnx.load(str(path))
    assert [o.name for o in proto.graph.output] == list(OUTPUT_NAMES)
    assert proto.opset_import[0].version == trained.graph.opset >= 11
    assert not proto.training_info  # inference only; write_dl_model keeps the training file
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["dlbatch.inference_model_type"] == "detection" and "dlbatch.format_version" not in props
    assert '"min_confidence": 0.01' in props["dlbatch.inference_parameters"]


def test_classification_models_are_refused(tmp_path):
    model = dlbatch.create_dl_model("classification", backbone="compact", num_classes=3, image_dimensions=[8, 8, 1])
    with pytest.raises(dlbatch.DLParamError, match="needs a detection model"):
        dlbatch.export_inference_onnx(model, tmp_path / "c.onnx")
    assert not (tmp_path / "c.onnx").exists()


def test_an_opset_below_11_is_refused(tmp_path):
    model = make()
    model.graph.opset = 10
    with pytest.raises(dlbatch.DLModelFileError, match="opset >= 11"):
        dlbatch.export_inference_onnx(model, tmp_path / "d.onnx")


def test_a_failed_write_leaves_the_existing_file(trained, tmp_path, monkeypatch):
    path = tmp_path / "d.onnx"
    path.write_bytes(b"old")

    def fail(proto):
        raise ValueError("message too large")

    monkeypatch.setattr(inference_export, "serialize", fail)
    with pytest.raises(dlbatch.DLModelFileError, match="cannot write"):
        dlbatch.export_inference_onnx(trained, path)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["d.onnx"]


def test_results_from_outputs_checks_its_input():
    with pytest.raises(ValueError, match="expected the 8 outputs"):
        results_from_outputs([np.zeros(0)], 1)
    outputs = {name: np.zeros(1, dtype=object if name == "bbox_class_name" else np.float64) for name in OUTPUT_NAMES}
    outputs["detection_batch_index"] = np.array([2])
    with pytest.raises(ValueError, match="batch_size is 2"):
        results_from_outputs(outputs, 2)
