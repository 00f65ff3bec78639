"""The import rewrites behind reading PyTorch exports, one at a time on small hand-built ONNX
graphs: batch-dependent shape subgraphs (Shape -> Gather -> Unsqueeze -> Concat -> Reshape/Expand)
run at any batch size, a fixed batch of 1 baked into Reshape targets is freed (or the read is
refused naming the node), class scores N x K x 1 x 1 and N x 1 x 1 x K become N x K, every
unsupported op is listed at once, and a kernel failing at apply or train time is a dlbatch
error naming the node that leaves the model untouched."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import dlbatch
from dlbatch import DLError, DLModelFileError
from dlbatch.core.infer import raw_outputs
from tests.conftest import assert_same_snapshot, snapshot

C, H, W, K = 2, 4, 4, 3
F = C * H * W
BACKENDS = ["numpy", "torch"]


def _init(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def _model(nodes, inits, out_shape, *, batch="N", opset=17, out_name="scores"):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, C, H, W])
    y = helper.make_tensor_value_info(out_name, TensorProto.FLOAT, out_shape)
    g = helper.make_graph(nodes, "g", [x], [y], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _write(tmp_path, m, name="m.onnx"):
    p = tmp_path / name
    p.write_bytes(m.SerializeToString())
    return p


def _samples(n, seed=0):
    rng = np.random.default_rng(seed)
    return [{"image": rng.standard_normal((H, W, C)).astype(np.float32), "image_label_id": i % K}
            for i in range(n)]


def _ort(m, samples):
    ort = pytest.importorskip("onnxruntime")
    x = np.stack([s["image"].transpose(2, 0, 1) for s in samples])
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def _weights(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((F, K)).astype(np.float32) * 0.3, rng.standard_normal(K).astype(np.float32) * 0.1


def _flatten_by_shape(opset=17):
    """x.view(x.size(0), -1) as the TorchScript exporter writes it, then a MatMul + Add head."""
    w, b = _weights()
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"], name="shape"),
        helper.make_node("Gather", ["shape", "zero"], ["n"], name="gather_batch", axis=0),
        (helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"], name="unsqueeze") if opset >= 13 else
         helper.make_node("Unsqueeze", ["n"], ["n1"], name="unsqueeze", axes=[0])),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], name="concat", axis=0),
        helper.make_node("Reshape", ["x", "target"], ["flat"], name="flatten"),
        helper.make_node("MatMul", ["flat", "w"], ["mm"], name="fc"),
        helper.make_node("Add", ["mm", "b"], ["scores"], name="fc_bias"),
    ]
    inits = [_init("zero", np.array(0, np.int64)), _init("axes0", np.array([0], np.int64)),
             _init("minus1", np.array([-1], np.int64)), _init("w", w), _init("b", b)]
    return _model(nodes, inits, ["N", K], opset=opset)


def _class_token():
    """A class token broadcast to the batch (cls.expand(x.shape[0], -1, -1)) and concatenated
    before the image tokens; the scores read the class token's position after a mixing MatMul."""
    rng = np.random.default_rng(1)
    d, t = W, C * H  # tokens: C*H rows of width W
    cls = rng.standard_normal((1, 1, d)).astype(np.float32)
    mix = rng.standard_normal((t + 1, t + 1)).astype(np.float32) * 0.3
    head = rng.standard_normal((d, K)).astype(np.float32) * 0.3
    nodes = [
        helper.make_node("Reshape", ["x", "tok_shape"], ["tokens"], name="to_tokens"),
        helper.make_node("Shape", ["tokens"], ["shape"], name="shape"),
        helper.make_node("Gather", ["shape", "zero"], ["n"], name="gather_batch", axis=0),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"], name="unsqueeze"),
        helper.make_node("Concat", ["n1", "one_d"], ["cls_shape"], name="cls_shape", axis=0),
        helper.make_node("Expand", ["cls", "cls_shape"], ["cls_b"], name="cls_expand"),
        helper.make_node("Concat", ["cls_b", "tokens"], ["seq"], name="cat", axis=1),
        helper.make_node("MatMul", ["mix", "seq"], ["mixed"], name="mix"),
        helper.make_node("Gather", ["mixed", "zero"], ["first"], name="pick_cls", axis=1),
        helper.make_node("MatMul", ["first", "head"], ["scores"], name="head"),
    ]
    inits = [_init("tok_shape", np.array([0, t, d], np.int64)), _init("zero", np.array(0, np.int64)),
             _init("axes0", np.array([0], np.int64)), _init("one_d", np.array([1, d], np.int64)),
             _init("cls", cls), _init("mix", mix), _init("head", head)]
    return _model(nodes, inits, ["N", K])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("opset", [11, 13, 17])
def test_flatten_by_batch_shape_runs_any_batch_size(tmp_path, backend, opset):
    m = _flatten_by_shape(opset)
    model = dlbatch.read_dl_model(_write(tmp_path, m), backend=backend, batch_size=4, learning_rate=0.1)
    assert "Shape" not in model.graph.op_types()  # folded into the Reshape target [0, -1]
    for n in (1, 3, 4):
        s = _samples(n, seed=n)
        np.testing.assert_allclose(raw_outputs(model, s)["scores"], _ort(m, s), rtol=1e-5, atol=1e-6)
    model.train_batch(_samples(4))


@pytest.mark.parametrize("backend", BACKENDS)
def test_class_token_expanded_to_the_batch_trains_at_any_batch_size(tmp_path, backend):
    m = _class_token()
    model = dlbatch.read_dl_model(_write(tmp_path, m), backend=backend, batch_size=4, learning_rate=0.1,
                                  momentum=0.0)
    assert "cls" in model.graph.trainable
    for n in (1, 2, 5):
        s = _samples(n, seed=n)
        np.testing.assert_allclose(raw_outputs(model, s)["scores"], _ort(m, s), rtol=1e-5, atol=1e-5)
    before = model.state_dict()
    model.train_batch(_samples(4))
    assert not np.array_equal(before["cls"], model.state_dict()["cls"])
    model.set_param("batch_size", 3)
    model.train_batch(_samples(3))


def _fixed_batch_flatten(target0=1):
    """The default exporter at batch 1: x.flatten(1) as Reshape(x, [1, F]) with allowzero=1."""
    w, b = _weights(2)
    nodes = [helper.make_node("Reshape", ["x", "target"], ["flat"], name="view", allowzero=1),
             helper.make_node("Gemm", ["flat", "w", "b"], ["scores"], name="fc")]
    return _model(nodes, [_init("target", np.array([target0, F], np.int64)), _init("w", w), _init("b", b)],
                  [1, K], batch=1, opset=18)


@pytest.mark.parametrize("backend", BACKENDS)
def test_reshape_to_a_fixed_batch_of_1_is_freed(tmp_path, backend):
    m = _fixed_batch_flatten()
    model = dlbatch.read_dl_model(_write(tmp_path, m), backend=backend, batch_size=4)
    reshape = next(n for n in model.graph.nodes if n.op_type == "Reshape")
    assert list(model.numpy_values()[reshape.inputs[1]]) == [0, F]
    assert not reshape.attrs.get("allowzero")
    s = _samples(4)
    want = np.concatenate([_ort(m, s[i:i + 1]) for i in range(4)])
    np.testing.assert_allclose(raw_outputs(model, s)["scores"], want, rtol=1e-5, atol=1e-6)
    model.train_batch(s)


def test_a_fixed_batch_that_cannot_be_proven_is_refused_naming_the_node(tmp_path):
    """Flattening the whole batch (x.reshape(-1) traced at batch 1) mixes images: refused at read."""
    w, b = _weights(3)
    nodes = [helper.make_node("Reshape", ["x", "all"], ["flat"], name="flatten_everything"),
             helper.make_node("Unsqueeze", ["flat", "axes0"], ["row"], name="as_row"),
             helper.make_node("Gemm", ["row", "w", "b"], ["scores"], name="fc")]
    m = _model(nodes, [_init("all", np.array([F], np.int64)), _init("axes0", np.array([0], np.int64)),
                       _init("w", w), _init("b", b)], [1, K], batch=1)
    with pytest.raises(DLModelFileError, match="flatten_everything") as info:
        dlbatch.read_dl_model(_write(tmp_path, m))
    assert "fixed batch size of 1" in str(info.value) and "dynamic" in str(info.value)


@pytest.mark.parametrize("layout", ["NK11", "N11K"])
def test_class_scores_with_unit_spatial_dimensions_read_as_n_by_k(tmp_path, layout):
    rng = np.random.default_rng(4)
    wc = rng.standard_normal((K, C, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "wc"], ["conv"], name="classifier"),
             helper.make_node("GlobalAveragePool", ["conv"], ["pooled"], name="pool")]
    if layout == "N11K":
        nodes.append(helper.make_node("Transpose", ["pooled"], ["scores"], name="nhwc", perm=[0, 2, 3, 1]))
        shape = ["N", 1, 1, K]
    else:
        nodes[-1].output[0] = "scores"
        shape = ["N", K, 1, 1]
    m = _model(nodes, [_init("wc", wc)], shape)
    model = dlbatch.read_dl_model(_write(tmp_path, m), batch_size=2, learning_rate=0.1)
    assert model.get_param("class_ids") == list(range(K))
    s = _samples(2)
    np.testing.assert_allclose(raw_outputs(model, s)["scores"], _ort(m, s).reshape(2, K), rtol=1e-5, atol=1e-6)
    result = model.train_batch(s)
    assert np.isfinite(result["total_loss"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_unsupported_op_is_listed_at_once_with_the_plugin_hook(tmp_path, backend):
    w, b = _weights(5)
    nodes = [helper.make_node("Selu", ["x"], ["a"], name="selu_1"),
             helper.make_node("Celu", ["a"], ["c"], name="celu_1"),
             helper.make_node("Selu", ["c"], ["d"], name="selu_2"),
             helper.make_node("Flatten", ["d"], ["flat"], name="flatten"),
             helper.make_node("Gemm", ["flat", "w", "b"], ["scores"], name="fc")]
    m = _model(nodes, [_init("w", w), _init("b", b)], ["N", K])
    with pytest.raises(DLModelFileError) as info:
        dlbatch.read_dl_model(_write(tmp_path, m), backend=backend)
    msg = str(info.value)
    for fragment in ("'Selu'", "'Celu'", "'selu_1'", "'selu_2'", "'celu_1'", "dlbatch_register_ops",
                     f"register({backend!r}"):
        assert fragment in msg, (fragment, msg)


def test_unsupported_ops_are_named_before_an_unknown_output_shape(tmp_path):
    """An op without a kernel that also hides the output shape: the op list comes first."""
    nodes = [helper.make_node("Einsum", ["x", "w"], ["scores"], name="einsum_head", equation="nchw,chwk->nk")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", C, H, W])
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", "K"])
    g = helper.make_graph(nodes, "g", [x], [y], initializer=[_init("w", np.ones((C, H, W, K), np.float32))])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(DLModelFileError, match="'Einsum' \\(node 'einsum_head'\\).*dlbatch_register_ops"):
        dlbatch.read_dl_model(_write(tmp_path, m))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_kernel_failing_at_apply_or_train_time_is_a_dlbatch_error_naming_the_node(tmp_path, backend):
    """A dynamic-batch file whose Reshape target fixes 3 rows: fine for the read, impossible for
    a batch of 4. apply and train raise a dlbatch error naming the node; the model is untouched."""
    w, b = _weights(6)
    nodes = [helper.make_node("Reshape", ["x", "rows"], ["flat"], name="three_rows"),
             helper.make_node("Gemm", ["flat", "w", "b"], ["scores"], name="fc")]
    m = _model(nodes, [_init("rows", np.array([3, F], np.int64)), _init("w", w), _init("b", b)], ["N", K])
    model = dlbatch.read_dl_model(_write(tmp_path, m), backend=backend, batch_size=4, learning_rate=0.1)
    before = snapshot(model)
    with pytest.raises(DLError, match="three_rows.*Reshape"):
        dlbatch.apply_dl_model(model, _samples(4))
    with pytest.raises(DLError, match="three_rows.*Reshape"):
        dlbatch.train_dl_model_batch(model, _samples(4))
    assert_same_snapshot(before, snapshot(model))
    model.set_param("batch_size", 3)
    dlbatch.train_dl_model_batch(model, _samples(3))  # the batch it does fit still trains


def test_every_node_of_a_foreign_domain_is_listed_at_once(tmp_path):
    w, b = _weights(7)
    nodes = [helper.make_node("FusedThing", ["x"], ["a"], name="custom_1", domain="com.example"),
             helper.make_node("OtherThing", ["a"], ["c"], name="custom_2", domain="com.example"),
             helper.make_node("Flatten", ["c"], ["flat"], name="flatten"),
             helper.make_node("Gemm", ["flat", "w", "b"], ["scores"], name="fc")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", C, H, W])
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", K])
    g = helper.make_graph(nodes, "g", [x], [y], initializer=[_init("w", w), _init("b", b)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    with pytest.raises(DLModelFileError) as info:
        dlbatch.read_dl_model(_write(tmp_path, m))
    for fragment in ("'FusedThing'", "'OtherThing'", "'custom_1'", "'custom_2'", "com.example"):
        assert fragment in str(info.value)
