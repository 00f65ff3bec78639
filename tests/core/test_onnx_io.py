"""write_dl_model / read_dl_model: round trips, resumed training, onnxruntime, the checker,
atomic writes, hand-built foreign classifiers (constant folding, roles, head), and every error
a user can run into with a model file."""
from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import dlbatch
from dlbatch.core import onnx_export
from dlbatch.core.errors import DLModelFileError, DLParamError
from dlbatch.core.hookspecs import hookimpl
from dlbatch.core.infer import raw_outputs
from dlbatch.core.plugins import manager
from tests.conftest import make_samples, tiny_model

ort = pytest.importorskip("onnxruntime")


def trained(solver: str, steps: int = 3, **kw):
    model = tiny_model(solver_type=solver, **kw)
    for i in range(steps):
        dlbatch.train_dl_model_batch(model, make_samples(4, seed=100 + i, class_ids=model.get_param("class_ids")))
    return model


def assert_same_arrays(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert a[k].shape == b[k].shape, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def nchw(samples):
    return np.stack([np.asarray(s["image"], np.float32).reshape(8, 8, -1).transpose(2, 0, 1) for s in samples])


# -- round trip -------------------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_roundtrip_restores_weights_hyperparameters_meta_and_solver_state(tmp_path, solver):
    model = trained(solver, learning_rate=0.02, weight_prior=1e-4, class_ids=[3, 7, 9],
                    class_names=["a", "b", "c"], class_weights=[1.0, 2.0, 0.5])
    path = tmp_path / "model.onnx"
    dlbatch.write_dl_model(model, path)
    back = dlbatch.read_dl_model(path)
    assert_same_arrays(model.state_dict(), back.state_dict())
    assert_same_arrays(model.solver_state_dict(), back.solver_state_dict())
    assert int(back.solver_state_dict()["step"]) == 3
    assert dict(back.hyperparameters) == dict(model.hyperparameters)
    assert back.meta == model.meta
    for name in ("learning_rate", "weight_prior", "class_ids", "class_names", "class_weights", "solver_type",
                 "image_dimensions", "num_trainable_params", "batch_size", "seed", "momentum"):
        assert dlbatch.get_dl_model_param(back, name) == dlbatch.get_dl_model_param(model, name), name
    assert back.graph.trainable == model.graph.trainable
    assert back.graph.statistics == model.graph.statistics
    assert [(n.op_type, n.inputs, n.outputs) for n in back.graph.nodes] == \
        [(n.op_type, n.inputs, n.outputs) for n in model.graph.nodes]
    assert back.graph.inputs == model.graph.inputs and back.graph.outputs == model.graph.outputs


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_training_after_write_and_read_equals_uninterrupted_training_bit_for_bit(tmp_path, solver):
    model = trained(solver, steps=2)
    model.set_param("learning_rate", 0.003)  # a changed hyperparameter travels too
    path = tmp_path / "resume.onnx"
    dlbatch.write_dl_model(model, path)
    resumed = dlbatch.read_dl_model(path)
    for i in range(3):
        batch = make_samples(4, seed=200 + i)
        assert dlbatch.train_dl_model_batch(resumed, batch) == dlbatch.train_dl_model_batch(model, batch)
    assert_same_arrays(model.state_dict(), resumed.state_dict())
    assert_same_arrays(model.solver_state_dict(), resumed.solver_state_dict())


def test_float64_model_roundtrip_keeps_precision_and_resumes_exactly(tmp_path):
    model = trained("sgd", steps=1, precision="float64")
    dlbatch.write_dl_model(model, tmp_path / "f64.onnx")
    back = dlbatch.read_dl_model(tmp_path / "f64.onnx")
    assert back.get_param("precision") == "float64"
    assert back.graph.nodes[1].attrs["epsilon"] == model.graph.nodes[1].attrs["epsilon"]  # exact, not float32
    batch = make_samples(4, seed=5)
    assert dlbatch.train_dl_model_batch(back, batch) == dlbatch.train_dl_model_batch(model, batch)
    assert_same_arrays(model.state_dict(), back.state_dict())


def test_onnxruntime_output_equals_raw_outputs_and_checker_passes(tmp_path):
    model = trained("adam", steps=2)
    path = tmp_path / "ort.onnx"
    dlbatch.write_dl_model(model, path)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    samples = make_samples(5, seed=11)
    expected = raw_outputs(model, samples)["logits"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": nchw(samples)})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    dims = [d.dim_value or d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", 1, 8, 8]


def test_file_layout_metadata_roles_and_solver_state(tmp_path):
    model = trained("sgd", steps=1)
    dlbatch.write_dl_model(model, tmp_path / "m.onnx")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    props = {p.key: p.value for p in proto.metadata_props}
    assert all(k.startswith("dlbatch.") for k in props)
    hp = json.loads(props["dlbatch.hyperparameters"])
    assert not {"backend", "device", "runtime", "precision"} & set(hp)
    assert hp["learning_rate"] == 0.01 and hp["class_ids"] == [0, 1, 2]
    roles = json.loads(props["dlbatch.roles"])
    inits = {t.name for t in proto.graph.initializer}
    assert set(roles["trainable"]) | set(roles["statistics"]) | set(roles["constants"]) == inits
    assert "stem.bn.running_mean" in roles["statistics"] and "fc.weight" in roles["trainable"]
    assert json.loads(props["dlbatch.meta"])["logits"] == "logits"
    solver = {t.name: numpy_helper.to_array(t) for t in proto.training_info[0].algorithm.initializer}
    assert int(solver["dlbatch.solver.step"]) == 1
    np.testing.assert_array_equal(solver["dlbatch.solver.velocity/fc.weight"],
                                  model.solver_state_dict()["velocity/fc.weight"])
    assert proto.opset_import[0].version == model.graph.opset


# -- atomic writes ----------------------------------------------------------------------------
def _folder_listing(folder):
    return sorted(os.listdir(folder))


def test_failed_serialization_leaves_existing_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "keep.onnx"
    dlbatch.write_dl_model(tiny_model(), path)
    before = path.read_bytes()

    def boom(proto):
        raise RuntimeError("serialization failed")
    monkeypatch.setattr(onnx_export, "serialize", boom)
    with pytest.raises(RuntimeError, match="serialization failed"):
        dlbatch.write_dl_model(trained("sgd", steps=1), path)
    assert path.read_bytes() == before
    assert _folder_listing(tmp_path) == ["keep.onnx"]  # no temporary file left behind


def test_failure_after_partial_write_leaves_existing_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "keep.onnx"
    dlbatch.write_dl_model(tiny_model(), path)
    before = path.read_bytes()

    def no_fsync(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", no_fsync)
    with pytest.raises(DLModelFileError, match="No space left"):
        dlbatch.write_dl_model(trained("sgd", steps=1), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert _folder_listing(tmp_path) == ["keep.onnx"]
    dlbatch.read_dl_model(path)


def test_write_into_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DLModelFileError, match="does not exist"):
        dlbatch.write_dl_model(tiny_model(), tmp_path / "nope" / "m.onnx")


# -- parameters on read -----------------------------------------------------------------------
def test_read_keyword_parameters_override_stored_ones_and_are_validated(tmp_path):
    path = tmp_path / "m.onnx"
    dlbatch.write_dl_model(trained("sgd", steps=1), path)
    model = dlbatch.read_dl_model(path, learning_rate=0.5, batch_size=2, class_names=["x", "y", "z"])
    assert model.get_param("learning_rate") == 0.5 and model.get_param("batch_size") == 2
    assert model.get_param("class_names") == ["x", "y", "z"]
    assert int(model.solver_state_dict()["step"]) == 1
    with pytest.raises(DLParamError, match="learning_rate"):
        dlbatch.read_dl_model(path, learning_rate=-1.0)
    with pytest.raises(DLParamError, match="unknown parameter 'learnin_rate'"):
        dlbatch.read_dl_model(path, learnin_rate=0.1)
    resized = dlbatch.read_dl_model(path, class_ids=[1, 2, 3, 4, 5])
    assert resized.state_dict()["fc.weight"].shape[0] == 5
    assert "velocity/fc.weight" not in resized.solver_state_dict()
    assert len(dlbatch.apply_dl_model(resized, make_samples(2))[0]["classification_class_ids"]) == 5


def test_read_on_the_torch_backend_gives_the_same_outputs(tmp_path):
    pytest.importorskip("torch")
    if "torch" not in manager.registry.backends:
        pytest.skip("torch backend not registered")
    model = trained("sgd", steps=1)
    dlbatch.write_dl_model(model, tmp_path / "m.onnx")
    on_torch = dlbatch.read_dl_model(tmp_path / "m.onnx", backend="torch")
    assert on_torch.get_param("backend") == "torch"
    samples = make_samples(3, seed=4)
    np.testing.assert_allclose(raw_outputs(on_torch, samples)["logits"], raw_outputs(model, samples)["logits"],
                               rtol=1e-4, atol=1e-5)
    assert_same_arrays(on_torch.solver_state_dict(), model.solver_state_dict())


# -- foreign classifiers ----------------------------------------------------------------------
def _t(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def foreign_classifier(opset: int = 13, k: int = 4, head: str = "matmul", extra_nodes=(), extra_inits=(),
                       ir_version: int | None = None) -> onnx.ModelProto:
    """A small exported-looking classifier: input normalisation with constants, conv-BN-relu,
    GAP, a batch-size-dependent flatten (Shape/Gather/Unsqueeze/Concat/Reshape), a
    ConstantOfShape/Cast scale, a MatMul+Add (or Gemm) head and Softmax."""
    rng = np.random.default_rng(0)
    f32 = np.float32
    inits = [
        _t("mean", rng.normal(size=(1, 3, 1, 1)).astype(f32)),
        _t("conv.weight", rng.normal(0, 0.3, (6, 3, 3, 3)).astype(f32)), _t("conv.bias", np.zeros(6, f32)),
        _t("bn.weight", rng.uniform(0.5, 1.5, 6).astype(f32)), _t("bn.bias", rng.normal(0, 0.1, 6).astype(f32)),
        _t("bn.running_mean", rng.normal(0, 0.1, 6).astype(f32)),
        _t("bn.running_var", rng.uniform(0.5, 1.5, 6).astype(f32)),
        _t("gather_idx", np.array(0, np.int64)),
        *extra_inits,
    ]
    if opset >= 13:
        inits.append(_t("axes0", np.array([0], np.int64)))
        unsq = helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"], name="unsq")
    else:
        unsq = helper.make_node("Unsqueeze", ["n"], ["n1"], name="unsq", axes=[0])
    nodes = [
        helper.make_node("Constant", [], ["two"], name="c2", value=_t("two", np.array(2.0, f32))),
        helper.make_node("Div", ["x", "two"], ["xd"], name="div"),
        helper.make_node("Sub", ["xd", "mean"], ["xs"], name="sub"),
        helper.make_node("Conv", ["xs", "conv.weight", "conv.bias"], ["c"], name="conv", pads=[1, 1, 1, 1],
                         kernel_shape=[3, 3]),
        helper.make_node("BatchNormalization", ["c", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"],
                         ["b"], name="bn", epsilon=1e-5),
        helper.make_node("Relu", ["b"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
        helper.make_node("Shape", ["g"], ["s"], name="shape"),
        helper.make_node("Gather", ["s", "gather_idx"], ["n"], name="gather", axis=0),
        unsq,
        helper.make_node("Constant", [], ["minus1"], name="cm1", value=_t("minus1", np.array([-1], np.int64))),
        helper.make_node("Concat", ["n1", "minus1"], ["newshape"], name="concat", axis=0),
        helper.make_node("Reshape", ["g", "newshape"], ["flat"], name="flatten"),
        helper.make_node("Constant", [], ["one_shape"], name="cs", value=_t("one_shape", np.array([1], np.int64))),
        helper.make_node("ConstantOfShape", ["one_shape"], ["ones_i"], name="cos",
                         value=_t("v", np.array([1], np.int64))),
        helper.make_node("Cast", ["ones_i"], ["ones"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Mul", ["flat", "ones"], ["flat2"], name="scale"),
        *extra_nodes,
    ]
    last = "flat2"
    if head == "matmul":
        inits += [_t("fc.w", rng.normal(0, 0.5, (6, k)).astype(f32)), _t("fc.b", rng.normal(0, 0.1, k).astype(f32))]
        nodes += [helper.make_node("MatMul", [last, "fc.w"], ["mm"], name="fc_mm"),
                  helper.make_node("Add", ["mm", "fc.b"], ["logits"], name="fc_add")]
    else:
        inits += [_t("fc.w", rng.normal(0, 0.5, (6, k)).astype(f32)), _t("fc.b", rng.normal(0, 0.1, k).astype(f32))]
        nodes += [helper.make_node("Gemm", [last, "fc.w", "fc.b"], ["logits"], name="fc")]
    nodes.append(helper.make_node("Softmax", ["logits"], ["prob"], name="softmax", axis=1))
    graph = helper.make_graph(nodes, "foreign", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                ["batch", 3, 8, 8])],
                              [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["batch", k])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="test")
    model.ir_version = ir_version or (7 if opset <= 13 else 8)
    return model


def _save(model: onnx.ModelProto, path) -> str:
    path = str(path)
    with open(path, "wb") as fh:
        fh.write(model.SerializeToString())
    return path


def _ort(path, x):
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("opset,head", [(9, "gemm"), (13, "matmul"), (21, "matmul")])
def test_foreign_classifier_folds_constants_and_matches_onnxruntime(tmp_path, opset, head):
    proto = foreign_classifier(opset=opset, head=head)
    onnx.checker.check_model(proto, full_check=True)
    path = _save(proto, tmp_path / "foreign.onnx")
    model = dlbatch.read_dl_model(path, batch_size=3)
    folded_away = {"Constant", "Shape", "Gather", "Unsqueeze", "Concat", "ConstantOfShape", "Cast"}
    assert not folded_away & model.graph.op_types()
    assert model.get_param("class_ids") == [0, 1, 2, 3]
    assert model.get_param("image_dimensions") == [8, 8, 3]
    assert model.meta["logits"] == "logits" and model.meta["output"] == "prob"
    assert model.meta["output_is_probability"] is True
    assert (model.meta["head_weight"], model.meta["head_bias"]) == ("fc.w", "fc.b")
    assert model.state_dict()["fc.w"].shape == (4, 6)  # head normalised to (classes, features)
    assert set(model.graph.trainable) == {"conv.weight", "conv.bias", "bn.weight", "bn.bias", "fc.w", "fc.b"}
    assert model.graph.statistics == ["bn.running_mean", "bn.running_var"]
    assert "mean" in model.graph.constants and "two" in model.graph.constants
    for n in (1, 3, 5):  # the batch-size dependent Reshape target still works for any batch
        rng = np.random.default_rng(n)
        samples = [{"image": rng.normal(0, 20, (8, 8, 3)).astype(np.float32)} for _ in range(n)]
        want = _ort(path, nchw(samples))
        got = raw_outputs(model, samples)["prob"]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    samples = make_samples(3, channels=3, class_ids=(0, 1, 2, 3), seed=9)
    loss = dlbatch.train_dl_model_batch(model, samples)["total_loss"]
    assert np.isfinite(loss)
    # an imported model written by dlbatch is a dlbatch file: it reads back exactly
    dlbatch.write_dl_model(model, tmp_path / "again.onnx")
    again = dlbatch.read_dl_model(tmp_path / "again.onnx")
    assert_same_arrays(again.state_dict(), model.state_dict())
    assert again.meta == model.meta


def test_resumed_training_draws_the_same_dropout_masks(tmp_path):
    """The dropout mask of each step comes from (seed, step): both travel in the file."""
    proto = foreign_classifier(extra_nodes=[helper.make_node("Dropout", ["flat2"], ["dropped"], name="drop")])
    for n in proto.graph.node:
        if n.op_type == "MatMul":
            n.input[0] = "dropped"
    model = dlbatch.read_dl_model(_save(proto, tmp_path / "drop.onnx"), batch_size=3, seed=5, learning_rate=0.05)
    batches = [make_samples(3, channels=3, class_ids=(0, 1, 2, 3), seed=s) for s in range(4)]
    dlbatch.train_dl_model_batch(model, batches[0])
    dlbatch.write_dl_model(model, tmp_path / "resume.onnx")
    resumed = dlbatch.read_dl_model(tmp_path / "resume.onnx")
    assert resumed.get_param("seed") == 5
    for b in batches[1:]:
        assert dlbatch.train_dl_model_batch(resumed, b) == dlbatch.train_dl_model_batch(model, b)
    assert_same_arrays(model.state_dict(), resumed.state_dict())
    assert_same_arrays(model.solver_state_dict(), resumed.solver_state_dict())
    other_seed = dlbatch.read_dl_model(tmp_path / "resume.onnx", seed=6)  # dropout is really drawn
    assert dlbatch.train_dl_model_batch(other_seed, batches[1]) != \
        dlbatch.train_dl_model_batch(dlbatch.read_dl_model(tmp_path / "resume.onnx"), batches[1])


def test_foreign_classifier_class_count_change_resizes_the_found_head(tmp_path):
    path = _save(foreign_classifier(), tmp_path / "f.onnx")
    model = dlbatch.read_dl_model(path, num_classes=7)
    assert model.get_param("class_ids") == list(range(7))
    out = dlbatch.apply_dl_model(model, [{"image": np.zeros((8, 8, 3), np.float32)}])
    assert len(out[0]["classification_confidences"]) == 7
    assert sum(out[0]["classification_confidences"]) == pytest.approx(1.0, abs=1e-5)


def test_foreign_external_data_inside_the_folder_is_read(tmp_path):
    proto = foreign_classifier()
    expected = numpy_helper.to_array(proto.graph.initializer[1])
    onnx.save_model(proto, str(tmp_path / "ext.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.bin", size_threshold=0)
    assert (tmp_path / "ext.bin").is_file()
    model = dlbatch.read_dl_model(tmp_path / "ext.onnx")
    np.testing.assert_array_equal(model.state_dict()["conv.weight"], expected)


# -- errors -----------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(DLModelFileError, match="does not exist"):
        dlbatch.read_dl_model(tmp_path / "missing.onnx")


def test_truncated_and_corrupt_files_are_clear_errors(tmp_path):
    path = tmp_path / "m.onnx"
    dlbatch.write_dl_model(trained("sgd", steps=1), path)
    data = path.read_bytes()
    proto = onnx.load(str(path))
    # cut inside every top-level field, plus right after the graph (a protobuf field boundary)
    graph_end = len(data) - len(proto.SerializeToString()) + len(
        onnx.ModelProto(ir_version=proto.ir_version, producer_name=proto.producer_name,
                        producer_version=proto.producer_version, doc_string=proto.doc_string,
                        graph=proto.graph).SerializeToString())
    cuts = sorted({1, 10, len(data) // 3, len(data) // 2, graph_end, len(data) - 200, len(data) - 1})
    for cut in cuts:
        bad = tmp_path / f"cut{cut}.onnx"
        bad.write_bytes(data[:cut])
        with pytest.raises(DLModelFileError) as info:
            dlbatch.read_dl_model(bad)
        assert str(bad) in str(info.value)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)))
    with pytest.raises(DLModelFileError, match="junk.onnx"):
        dlbatch.read_dl_model(junk)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(DLModelFileError, match="empty"):
        dlbatch.read_dl_model(empty)


def test_edited_dlbatch_metadata_is_refused(tmp_path):
    path = tmp_path / "m.onnx"
    dlbatch.write_dl_model(tiny_model(), path)
    proto = onnx.load(str(path))
    for p in proto.metadata_props:
        if p.key == "dlbatch.hyperparameters":
            hp = json.loads(p.value)
            hp["learning_rate"] = -3
            p.value = json.dumps(hp)
    bad = _save(proto, tmp_path / "bad.onnx")
    with pytest.raises(DLModelFileError, match="learning_rate"):
        dlbatch.read_dl_model(bad)
    del proto.training_info[:]
    bad = _save(proto, tmp_path / "bad2.onnx")
    with pytest.raises(DLModelFileError):
        dlbatch.read_dl_model(bad)


@pytest.mark.parametrize("opset", [6, 22])
def test_unsupported_opset_is_named(tmp_path, opset):
    proto = foreign_classifier(opset=13)
    proto.opset_import[0].version = opset
    path = _save(proto, tmp_path / "o.onnx")
    with pytest.raises(DLModelFileError, match=rf"opset {opset} is not supported.*7 to 21"):
        dlbatch.read_dl_model(path)


def test_unsupported_data_type_is_named(tmp_path):
    proto = foreign_classifier()
    for i, t in enumerate(proto.graph.initializer):
        if t.name == "conv.bias":
            proto.graph.initializer[i].CopyFrom(numpy_helper.from_array(np.zeros(6, np.float16), "conv.bias"))
    path = _save(proto, tmp_path / "f16.onnx")
    with pytest.raises(DLModelFileError, match=r"'conv.bias' has data type FLOAT16"):
        dlbatch.read_dl_model(path)


def _with_external_location(location: str) -> onnx.ModelProto:
    proto = foreign_classifier()
    t = proto.graph.initializer[1]
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "648")):
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    return proto


@pytest.mark.parametrize("location", ["../outside.bin", "sub/../../outside.bin", "ABSOLUTE"])
def test_external_data_outside_the_model_folder_is_refused(tmp_path, location):
    folder = tmp_path / "models"
    folder.mkdir()
    secret = tmp_path / "outside.bin"
    secret.write_bytes(b"\0" * 648)
    if location == "ABSOLUTE":
        location = str(secret)
    path = _save(_with_external_location(location), folder / "evil.onnx")
    with pytest.raises(DLModelFileError, match="outside the model's folder|absolute path"):
        dlbatch.read_dl_model(path)


def test_external_data_symlink_leading_out_is_refused(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    (tmp_path / "outside.bin").write_bytes(b"\0" * 648)
    os.symlink(tmp_path / "outside.bin", folder / "link.bin")
    path = _save(_with_external_location("link.bin"), folder / "evil.onnx")
    with pytest.raises(DLModelFileError, match="outside the model's folder"):
        dlbatch.read_dl_model(path)


def test_not_a_classifier_is_a_clear_error(tmp_path):
    proto = foreign_classifier()
    proto.graph.input.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3]))
    path = _save(proto, tmp_path / "two_inputs.onnx")
    with pytest.raises(DLModelFileError, match="exactly one image input"):
        dlbatch.read_dl_model(path)


class _CeluKernel:
    """A third-party numpy kernel for Celu (alpha=1): forward and backward."""

    op_type = "Celu"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        alpha = float(attrs.get("alpha", 1.0))
        neg = alpha * np.expm1(np.minimum(x, 0) / alpha)
        return [np.where(x > 0, x, neg).astype(x.dtype)], x

    def backward(self, ctx, saved, grads, attrs):
        alpha = float(attrs.get("alpha", 1.0))
        x = saved
        return [grads[0] * np.where(x > 0, 1.0, np.exp(np.minimum(x, 0) / alpha)).astype(x.dtype)]


class _CeluPlugin:
    @hookimpl
    def dlbatch_register_ops(self, register):
        register("numpy", "Celu", _CeluKernel())


@pytest.fixture
def celu_registry_cleanup():
    yield
    manager.registry.ops.get("numpy", {}).pop("Celu", None)


def test_unsupported_op_names_node_op_and_supported_ops_then_a_plugin_adds_it(tmp_path, celu_registry_cleanup):
    proto = foreign_classifier(extra_nodes=[helper.make_node("Celu", ["flat2"], ["celu"], name="my_celu")])
    for n in proto.graph.node:
        if n.op_type == "MatMul":
            n.input[0] = "celu"
    path = _save(proto, tmp_path / "celu.onnx")
    assert "Celu" not in manager.kernels("numpy")
    with pytest.raises(DLModelFileError) as info:
        dlbatch.read_dl_model(path)
    msg = str(info.value)
    assert "'my_celu'" in msg and "'Celu'" in msg and "Conv" in msg and "dlbatch_register_ops" in msg
    manager.register_plugin(_CeluPlugin(), name=f"test-celu-{id(info)}")
    model = dlbatch.read_dl_model(path)
    samples = [{"image": np.random.default_rng(1).normal(0, 20, (8, 8, 3)).astype(np.float32)} for _ in range(2)]
    np.testing.assert_allclose(raw_outputs(model, samples)["prob"], _ort(path, nchw(samples)), rtol=1e-5, atol=1e-6)
    model.set_param("batch_size", 2)
    assert np.isfinite(dlbatch.train_dl_model_batch(model, make_samples(2, channels=3, class_ids=(0, 1)))["total_loss"])


def test_onnx_backend_adapter_run_node_and_run_model():
    from dlbatch.onnx_backend import backend_for, run_node, supports_device
    assert supports_device("CPU")
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 4)).astype(np.float32)
    (y,) = run_node(helper.make_node("Relu", ["x"], ["y"]), [x])
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    proto = foreign_classifier()
    rep = backend_for("numpy").prepare(proto)
    for n in (1, 2):  # compiled once per input shape
        xs = np.random.default_rng(n).normal(size=(n, 3, 8, 8)).astype(np.float32)
        ref = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": xs})
        np.testing.assert_allclose(rep.run([xs])[0], ref[0], rtol=1e-5, atol=1e-6)


def test_a_float64_model_with_resize_writes_a_valid_onnx_file(tmp_path):
    """Resize scales are tensor(float) in ONNX whatever the data type: a float64 segmentation
    model keeps them float32 in its file, so the checker's full type inference accepts it and the
    model reads back computing the same in float64."""
    import onnx

    model = dlbatch.create_dl_model("segmentation", backbone="compact", class_ids=[0, 1, 2],
                                    image_dimensions=[32, 32, 3], precision="float64", seed=1)
    path = tmp_path / "seg64.onnx"
    dlbatch.write_dl_model(model, path)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    scales = {n.input[2] for n in proto.graph.node if n.op_type == "Resize"}
    assert scales and all(t.data_type == onnx.TensorProto.FLOAT for t in proto.graph.initializer if t.name in scales)
    back = dlbatch.read_dl_model(path)
    assert back.precision == "float64"
    image = np.random.default_rng(0).uniform(-127, 128, (32, 32, 3)).astype(np.float32)
    ours, theirs = dlbatch.apply_dl_model(model, [{"image": image}]), dlbatch.apply_dl_model(back, [{"image": image}])
    np.testing.assert_array_equal(ours[0]["segmentation_confidence"], theirs[0]["segmentation_confidence"])
