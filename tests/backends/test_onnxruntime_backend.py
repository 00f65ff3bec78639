"""The onnxruntime backend (inference only): every model type gives the numpy backend's results
(same form, values within 1e-5 on the values' own scale), the session is built once per set of
weights, training is refused without touching the model, and the plugin loads where onnxruntime
is not installed with an error that says how to install it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

import dlbatch  # noqa: E402
from dlbatch.core.errors import DLBackendError  # noqa: E402
from dlbatch.core.infer import raw_outputs  # noqa: E402
from dlbatch.data import detection_samples, segmentation_samples  # noqa: E402

from ..conftest import make_samples  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DETECTION = dict(class_ids=[1, 2], min_confidence=0.0, max_num_detections=20, capacity="low", min_level=2,
                 max_level=3, anchor_num_subscales=1, anchor_aspect_ratios=[1.0, 2.0])
# name -> (model type, side, parameters, samples(side)); tiny networks, a few images
CASES = {
    "classification": ("classification", 16, dict(class_ids=[0, 1, 2]),
                       lambda side: make_samples(3, height=side, width=side, channels=3, seed=3)),
    "segmentation": ("segmentation", 16, dict(class_ids=[0, 1, 2, 3]),
                     lambda side: segmentation_samples(3, height=side, width=side, seed=5)),
    "rectangle1": ("detection", 32, DETECTION,
                   lambda side: detection_samples(3, height=side, width=side, class_ids=(1, 2), seed=4,
                                                  min_objects=1)),
    "rectangle2": ("detection", 32, {**DETECTION, "instance_type": "rectangle2",
                                                        "anchor_angles": [0.0, 0.7]},
                   lambda side: detection_samples(3, height=side, width=side, class_ids=(1, 2), seed=4,
                                                  instance_type="rectangle2", min_objects=1)),
}
# result values in pixels (box coordinates and lengths) are judged against the image side: the
# network outputs differ by float32 rounding (another summation order), which box decoding
# multiplies by the anchor size; everything else (probabilities, confidences, angles) is unitless
PIXEL_KEYS = {"bbox_row1", "bbox_col1", "bbox_row2", "bbox_col2", "bbox_row", "bbox_col", "bbox_length1",
              "bbox_length2"}
TOL = 1e-5


def make(case: str, backend: str = "numpy", **params):
    model_type, side, args, _ = CASES[case]
    return dlbatch.create_dl_model(model_type, backbone="compact", image_dimensions=[side, side, 3], seed=2,
                                   batch_size=2, backend=backend, **{**args, **params})


def samples_for(case: str, model):
    return dlbatch.preprocess_dl_samples(CASES[case][3](CASES[case][1]), model)


def assert_same_results(ours: list[dict], ref: list[dict], side: int) -> None:
    """Same keys, types, shapes and discrete values; floats within TOL on their scale."""
    assert len(ours) == len(ref)
    for i, (a, b) in enumerate(zip(ours, ref)):
        assert a.keys() == b.keys(), i
        for key in b:
            x, y = np.asarray(a[key]), np.asarray(b[key])
            assert type(a[key]) is type(b[key]) and x.shape == y.shape and x.dtype == y.dtype, (i, key)
            if y.dtype.kind == "f":
                scale = side if key in PIXEL_KEYS else 1.0
                np.testing.assert_allclose(x, y, rtol=0, atol=TOL * scale, err_msg=f"sample {i} {key}")
            else:
                np.testing.assert_array_equal(x, y, err_msg=f"sample {i} {key}")


def program(model):
    prog = model.program()
    assert type(prog).__name__ == "OnnxRuntimeProgram"
    return prog


@pytest.mark.parametrize("case", list(CASES))
def test_results_equal_the_numpy_backend(case):
    model = make(case)
    samples = samples_for(case, model)
    names = model.model_type.inference_outputs(model.meta)
    ref_raw = raw_outputs(model, samples)
    ref = dlbatch.apply_dl_model(model, samples)
    ref_eval = dlbatch.evaluate_dl_model(model, samples)

    dlbatch.set_dl_model_param(model, "backend", "onnxruntime")
    assert dlbatch.get_dl_model_param(model, "backend") == "onnxruntime"
    got_raw = raw_outputs(model, samples)
    assert got_raw.keys() == ref_raw.keys() == set(names)
    for n in names:  # the network outputs themselves, relative to their size
        assert got_raw[n].dtype == ref_raw[n].dtype and got_raw[n].shape == ref_raw[n].shape
        err = np.abs(got_raw[n] - ref_raw[n]).max() / max(np.abs(ref_raw[n]).max(), 1e-30)
        assert err <= TOL, (n, err)
    assert_same_results(dlbatch.apply_dl_model(model, samples), ref, CASES[case][1])
    got_eval = dlbatch.evaluate_dl_model(model, samples)
    assert got_eval.keys() == ref_eval.keys()
    for key, value in ref_eval.items():
        if isinstance(value, float):
            assert got_eval[key] == pytest.approx(value, abs=TOL), key
        else:
            assert got_eval[key] == value, key
    assert program(model).session_builds == 1  # apply, evaluate and raw_outputs share one session


def test_session_is_rebuilt_only_when_the_weights_change():
    model = make("classification", backend="onnxruntime")
    samples = samples_for("classification", model)
    first = dlbatch.apply_dl_model(model, samples)
    prog = program(model)
    session = prog.session
    for _ in range(3):
        assert dlbatch.apply_dl_model(model, samples) == first
    assert prog.session_builds == 1 and prog.session is session

    # new weights through the public API (same program): one rebuild, and the new weights are used
    state = {n: a * 0.5 if a.ndim > 1 else a for n, a in model.state_dict().items()}
    model.load_state_dict(state)
    changed = dlbatch.apply_dl_model(model, samples)
    assert model.program() is prog and prog.session_builds == 2
    reference = make("classification")
    reference.load_state_dict(state)
    assert_same_results(changed, dlbatch.apply_dl_model(reference, samples), 16)
    dlbatch.apply_dl_model(model, samples)
    assert prog.session_builds == 2


def test_the_session_is_built_for_the_input_sides_and_rebuilt_for_other_ones():
    """Fixed sides let onnxruntime plan once; a batch of other sides gets its own session with
    the same results as the numpy backend."""
    model = make("classification", backend="onnxruntime")
    samples = samples_for("classification", model)
    dlbatch.apply_dl_model(model, samples)
    prog = program(model)
    shape = prog.session.get_inputs()[0].shape
    x = next(iter(model.model_type.encode(samples, model.hyperparameters, model.meta, labels=False,
                                          dtype="float32").inputs.values()))
    assert not isinstance(shape[0], int) and shape[1:] == list(x.shape[1:])  # the batch stays free
    dlbatch.apply_dl_model(model, samples[:1])
    assert prog.session_builds == 1
    wider = np.concatenate([x, x], axis=3)  # the compact network takes other sides as well
    got = prog.forward(model.values, {prog.graph.inputs[0].name: wider}, training=False).outputs
    assert prog.session_builds == 2 and prog.session.get_inputs()[0].shape[1:] == list(wider.shape[1:])
    reference = make("classification")
    ref = reference.program().forward(reference.values, {reference.graph.inputs[0].name: wider}, training=False)
    for name, value in got.items():
        np.testing.assert_allclose(value, ref.outputs[name], rtol=1e-5, atol=1e-5)


def test_an_intermediate_value_is_added_to_the_session_once():
    model = make("segmentation")
    samples = samples_for("segmentation", model)
    inner = next(n.outputs[0] for n in model.graph.nodes if n.op_type == "Relu")
    ref = raw_outputs(model, samples, names=(inner,))[inner]
    dlbatch.set_dl_model_param(model, "backend", "onnxruntime")
    dlbatch.apply_dl_model(model, samples)
    got = raw_outputs(model, samples, names=(inner,))[inner]
    np.testing.assert_allclose(got, ref, rtol=0, atol=TOL * np.abs(ref).max())
    dlbatch.apply_dl_model(model, samples)
    raw_outputs(model, samples, names=(inner,))
    assert program(model).session_builds == 2  # the first apply, then once with the extra output


def test_training_elsewhere_and_switching_back_uses_the_new_weights_and_keeps_the_solver_state():
    """A model that visits onnxruntime between numpy steps trains bit-identically to one that
    never left numpy, and onnxruntime then infers with the trained weights."""
    stay, visit = make("classification"), make("classification")
    batches = [make_samples(2, height=16, width=16, channels=3, seed=10 + k) for k in range(2)]
    samples = samples_for("classification", stay)
    for model in (stay, visit):
        dlbatch.train_dl_model_batch(model, batches[0])
    dlbatch.set_dl_model_param(visit, "backend", "onnxruntime")
    dlbatch.apply_dl_model(visit, samples)
    dlbatch.set_dl_model_param(visit, "backend", "numpy")
    for model in (stay, visit):
        dlbatch.train_dl_model_batch(model, batches[1])
    for a, b in ((stay.state_dict(), visit.state_dict()), (stay.solver_state_dict(), visit.solver_state_dict())):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    dlbatch.set_dl_model_param(visit, "backend", "onnxruntime")
    assert_same_results(dlbatch.apply_dl_model(visit, samples), dlbatch.apply_dl_model(stay, samples), 16)
    assert program(visit).session_builds == 1


@pytest.mark.parametrize("count", [2, 3])  # 3 is a wrong batch: the backend is refused before the samples
def test_training_is_refused_naming_the_training_backends_and_the_model_is_untouched(count):
    model = make("classification")
    dlbatch.train_dl_model_batch(model, make_samples(2, height=16, width=16, channels=3, seed=1))
    dlbatch.set_dl_model_param(model, "backend", "onnxruntime")
    state, solver = model.state_dict(), model.solver_state_dict()
    values = dict(model.values)
    with pytest.raises(DLBackendError, match=r"inference only.*trains: numpy, torch") as info:
        dlbatch.train_dl_model_batch(model, make_samples(count, height=16, width=16, channels=3, seed=2))
    assert "set_dl_model_param(model, 'backend', 'numpy')" in str(info.value)
    assert all(model.values[n] is v for n, v in values.items()) and model.values.keys() == values.keys()
    for before, after in ((state, model.state_dict()), (solver, model.solver_state_dict())):
        assert before.keys() == after.keys()
        for k in before:
            np.testing.assert_array_equal(before[k], after[k], err_msg=k)
            assert before[k].dtype == after[k].dtype
    with pytest.raises(DLBackendError, match="inference only"):
        model.program().forward(model.values, {}, training=True)


def test_read_dl_model_onto_onnxruntime(tmp_path):
    model = make("rectangle1")
    samples = samples_for("rectangle1", model)
    path = tmp_path / "m.onnx"
    dlbatch.write_dl_model(model, path)
    loaded = dlbatch.read_dl_model(path, backend="onnxruntime")
    assert loaded.backend_name == "onnxruntime"
    assert_same_results(dlbatch.apply_dl_model(loaded, samples), dlbatch.apply_dl_model(model, samples), 32)


def test_threads_follow_dlbatch_num_threads(monkeypatch):
    model = make("classification", backend="onnxruntime")
    samples = samples_for("classification", model)
    monkeypatch.setenv("DLBATCH_NUM_THREADS", "1")
    dlbatch.apply_dl_model(model, samples)
    assert program(model).session.get_session_options().intra_op_num_threads == 1
    monkeypatch.delenv("DLBATCH_NUM_THREADS")
    other = make("classification", backend="onnxruntime")
    dlbatch.apply_dl_model(other, samples)
    assert program(other).session.get_session_options().intra_op_num_threads == 0  # onnxruntime chooses


def test_unsupported_device_and_precision_are_clear_errors():
    model = make("classification")
    with pytest.raises(DLBackendError, match="'cpu' only"):
        dlbatch.create_dl_model("classification", backbone="compact", image_dimensions=[16, 16, 3],
                                class_ids=[0, 1], backend="onnxruntime", device="cuda:0")
    dlbatch.set_dl_model_param(model, "precision", "float64")
    dlbatch.set_dl_model_param(model, "backend", "onnxruntime")
    with pytest.raises(DLBackendError, match="float32 models, not 'float64'.*set precision to 'float32'"):
        dlbatch.apply_dl_model(model, samples_for("classification", model))
    dlbatch.set_dl_model_param(model, "precision", "float32")
    assert len(dlbatch.apply_dl_model(model, samples_for("classification", model))) == 3


MISSING = r"""
import sys
sys.modules["onnxruntime"] = None  # what an environment without onnxruntime looks like
import numpy as np
import dlbatch
from dlbatch.core.errors import DLBackendError
from dlbatch.core.plugins import manager
assert "dlbatch.backends.onnxruntime.plugin" in manager.registry.plugins and not manager.failed_plugins()
assert manager.backend("onnxruntime").trains is False
model = dlbatch.create_dl_model("classification", backbone="compact", image_dimensions=[8, 8, 1], class_ids=[0, 1])
before = model.state_dict()
messages = []
for attempt in (lambda: dlbatch.set_dl_model_param(model, "backend", "onnxruntime"),
                lambda: dlbatch.create_dl_model("classification", backbone="compact", image_dimensions=[8, 8, 1],
                                                class_ids=[0, 1], backend="onnxruntime")):
    try:
        attempt()
    except DLBackendError as exc:
        messages.append(str(exc))
assert len(messages) == 2, messages
assert model.backend_name == "numpy"
assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())
print(messages[0])
"""


def test_the_plugin_loads_without_onnxruntime_and_choosing_it_says_how_to_install():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DLBATCH_PLUGINS", None)
    proc = subprocess.run([sys.executable, "-c", MISSING], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "the onnxruntime backend needs onnxruntime, which is not installed" in proc.stdout
    assert "pip install 'dlbatch[onnxruntime]'" in proc.stdout
