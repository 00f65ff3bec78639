"""The torch backend: every op against onnx.reference on a one-node model, gradients against
finite differences (float64), batch-norm statistics, devices, lazy torch import, fused solvers."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from dlbatch.backends.torch.backend import TorchBackend  # noqa: E402
from dlbatch.core import solvers  # noqa: E402
from dlbatch.core.errors import DLBackendError, DLPluginError  # noqa: E402
from dlbatch.core.graph import Graph, Node, ValueInfo  # noqa: E402
from dlbatch.core.plugins import manager  # noqa: E402

BACKEND = TorchBackend()
RNG = np.random.default_rng(1234)


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def kernels():
    return manager.kernels("torch")


# -- one-node models ---------------------------------------------------------------------------
def _onnx_dtype(a):
    return helper.np_dtype_to_tensor_dtype(np.asarray(a).dtype)


def reference(op, inputs, consts, attrs, opset, n_out, engine="reference"):
    """Run a one-node model with onnx.reference (or onnxruntime, where the reference evaluator
    does not implement an opset's semantics). `inputs` are graph inputs, `consts` initializers."""
    in_names = [n for n, _ in inputs]
    node_inputs = [n for n, _ in inputs] + list(consts)
    node = helper.make_node(op, node_inputs, [f"y{i}" for i in range(n_out)], **attrs)
    graph = helper.make_graph(
        [node], "one",
        [helper.make_tensor_value_info(n, _onnx_dtype(a), a.shape) for n, a in inputs],
        [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT if engine == "ort" else TensorProto.UNDEFINED,
                                       None) for i in range(n_out)],
        initializer=[numpy_helper.from_array(np.asarray(a), n) for n, a in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    feed = {n: a for n, a in inputs}
    if engine == "ort":
        ort = pytest.importorskip("onnxruntime")
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return sess.run(None, feed), in_names
    return ReferenceEvaluator(model).run(None, feed), in_names


def ours(op, inputs, consts, attrs, opset, n_out, *, training=False, dtype="float32", device="cpu"):
    node = Node(op, [n for n, _ in inputs] + list(consts), [f"y{i}" for i in range(n_out)], dict(attrs), "n")
    graph = Graph(nodes=[node], inputs=[ValueInfo(n, a.shape) for n, a in inputs],
                  outputs=[ValueInfo(f"y{i}", ()) for i in range(n_out)], trainable=[],
                  constants=list(consts), opset=opset)
    prog = BACKEND.compile(graph, kernels(), device=device, dtype=dtype)
    values = {n: BACKEND.asarray(a, device=device) for n, a in consts.items()}
    feed = {n: BACKEND.asarray(a, device=device) for n, a in inputs}
    res = prog.forward(values, feed, training=training)
    return [BACKEND.to_numpy(res.outputs[f"y{i}"]) for i in range(n_out)]


def check(op, inputs, consts=None, opset=17, n_out=1, tol=1e-5, **attrs):
    consts = consts or {}
    engine = attrs.pop("_engine", "reference")
    inputs = [(f"x{i}", a) for i, a in enumerate(inputs)]
    ref, _ = reference(op, inputs, consts, attrs, opset, n_out, engine)
    got = ours(op, inputs, consts, attrs, opset, n_out)
    for r, g in zip(ref, got):
        assert g.shape == r.shape, (op, attrs, g.shape, r.shape)
        scale = max(1.0, float(np.max(np.abs(r))) if r.size else 1.0)
        np.testing.assert_allclose(g, r, rtol=tol, atol=tol * scale, err_msg=f"{op} {attrs}")


I64 = np.int64
x4 = rand(2, 4, 7, 6)

CASES = [
    # Conv
    ("Conv", [x4, rand(3, 4, 3, 3)], {}, 17, dict(pads=[1, 1, 1, 1])),
    ("Conv", [x4, rand(3, 4, 3, 3), rand(3)], {}, 17, dict(strides=[2, 2])),
    ("Conv", [x4, rand(4, 2, 3, 2)], {}, 17, dict(group=2, dilations=[2, 1], pads=[2, 1, 2, 1])),
    ("Conv", [x4, rand(3, 4, 3, 3)], {}, 17, dict(pads=[0, 1, 2, 0], strides=[1, 2])),
    ("Conv", [x4, rand(3, 4, 3, 3)], {}, 17, dict(auto_pad="SAME_UPPER", strides=[2, 2])),
    ("Conv", [x4, rand(3, 4, 2, 2)], {}, 17, dict(auto_pad="SAME_LOWER")),
    ("Conv", [x4, rand(3, 4, 3, 3)], {}, 17, dict(auto_pad="VALID", kernel_shape=[3, 3])),
    ("Conv", [rand(2, 3, 9), rand(4, 3, 3)], {}, 17, dict(pads=[1, 2], strides=[2])),
    ("Conv", [rand(1, 2, 4, 5, 5), rand(2, 2, 3, 3, 3)], {}, 17, dict(pads=[1] * 6)),
    # ConvTranspose
    ("ConvTranspose", [x4, rand(4, 3, 3, 3)], {}, 17, dict(strides=[2, 2])),
    ("ConvTranspose", [x4, rand(4, 3, 3, 3), rand(3)], {}, 17, dict(strides=[2, 2], pads=[1, 1, 1, 1],
                                                                   output_padding=[1, 1])),
    ("ConvTranspose", [x4, rand(4, 2, 3, 3)], {}, 17, dict(group=2, dilations=[2, 2], _engine="ort")),
    ("ConvTranspose", [x4, rand(4, 3, 3, 3), rand(3)], {}, 17, dict(strides=[2, 1], pads=[0, 1, 2, 0])),
    ("ConvTranspose", [x4, rand(4, 3, 3, 3)], {}, 17, dict(strides=[2, 2], auto_pad="SAME_UPPER")),
    ("ConvTranspose", [x4, rand(4, 3, 3, 3)], {}, 17, dict(strides=[3, 2], auto_pad="SAME_UPPER",
                                                           output_shape=[20, 13])),
    ("ConvTranspose", [rand(2, 3, 5), rand(3, 2, 4), rand(2)], {}, 17, dict(strides=[3], pads=[1, 2])),
    # BatchNormalization (inference)
    ("BatchNormalization", [x4, rand(4), rand(4), rand(4), np.abs(rand(4)) + 0.5], {}, 15, dict(epsilon=1e-3)),
    ("BatchNormalization", [rand(5, 3), rand(3), rand(3), rand(3), np.abs(rand(3)) + 0.5], {}, 9, dict(_engine="ort")),
    # activations
    ("Relu", [x4], {}, 17, {}),
    ("LeakyRelu", [x4], {}, 17, {}),
    ("LeakyRelu", [x4], {}, 17, dict(alpha=0.3)),
    ("Clip", [x4], {"lo": np.array(-0.5, np.float32), "hi": np.array(0.7, np.float32)}, 13, {}),
    ("Clip", [x4], {"lo": np.array(-0.5, np.float32)}, 13, {}),
    ("Clip", [x4], {}, 6, dict(min=-0.2, max=0.3)),
    ("Clip", [x4], {}, 13, {}),
    ("Sigmoid", [x4], {}, 17, {}),
    ("Tanh", [x4], {}, 17, {}),
    ("HardSigmoid", [x4 * 4], {}, 17, {}),
    ("HardSigmoid", [x4 * 4], {}, 17, dict(alpha=0.5, beta=0.4)),
    ("HardSwish", [x4 * 4], {}, 17, {}),
    # pooling
    ("MaxPool", [x4], {}, 17, dict(kernel_shape=[2, 2], strides=[2, 2])),
    ("MaxPool", [x4], {}, 17, dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    ("MaxPool", [x4], {}, 17, dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)),
    ("MaxPool", [x4], {}, 17, dict(kernel_shape=[3, 2], pads=[0, 1, 2, 0], strides=[2, 1])),
    ("MaxPool", [x4], {}, 17, dict(kernel_shape=[2, 2], dilations=[2, 2], strides=[1, 1])),
    ("MaxPool", [x4], {}, 17, dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")),
    ("MaxPool", [rand(2, 3, 9)], {}, 17, dict(kernel_shape=[3], strides=[2])),
    ("AveragePool", [x4], {}, 17, dict(kernel_shape=[2, 2], strides=[2, 2])),
    ("AveragePool", [x4], {}, 17, dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])),
    ("AveragePool", [x4], {}, 17, dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1)),
    ("AveragePool", [x4], {}, 17, dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)),
    ("AveragePool", [x4], {}, 17, dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1,
                                       count_include_pad=1)),
    ("AveragePool", [x4], {}, 17, dict(kernel_shape=[3, 2], pads=[0, 1, 2, 0])),
    ("AveragePool", [x4], {}, 17, dict(kernel_shape=[3, 2], pads=[0, 1, 2, 0], count_include_pad=1)),
    ("AveragePool", [x4], {}, 17, dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")),
    ("AveragePool", [x4], {}, 19, dict(kernel_shape=[2, 2], dilations=[2, 2], pads=[1, 1, 1, 1])),
    ("GlobalAveragePool", [x4], {}, 17, {}),
    # linear
    ("Gemm", [rand(3, 5), rand(5, 4), rand(4)], {}, 17, {}),
    ("Gemm", [rand(5, 3), rand(4, 5), rand(3, 4)], {}, 17, dict(transA=1, transB=1, alpha=0.5, beta=2.0)),
    ("Gemm", [rand(3, 5), rand(5, 4)], {}, 17, dict(alpha=3.0)),
    ("Gemm", [rand(3, 5), rand(4, 5), rand(1)], {}, 17, dict(transB=1)),
    ("MatMul", [rand(3, 5), rand(5, 4)], {}, 17, {}),
    ("MatMul", [rand(2, 3, 5), rand(5, 4)], {}, 17, {}),
    ("MatMul", [rand(5), rand(2, 5, 4)], {}, 17, {}),
    # elementwise
    ("Add", [x4, rand(4, 1, 1)], {}, 17, {}),
    ("Sub", [x4, rand(6)], {}, 17, {}),
    ("Mul", [rand(2, 1, 7, 1), rand(4, 1, 6)], {}, 17, {}),
    ("Div", [x4, np.abs(rand(1, 4, 1, 1)) + 0.5], {}, 17, {}),
    ("Sum", [x4, rand(4, 1, 1), rand(6)], {}, 17, {}),
    # shape
    ("Concat", [x4, rand(2, 3, 7, 6)], {}, 17, dict(axis=1)),
    ("Concat", [x4, rand(2, 4, 7, 2)], {}, 17, dict(axis=-1)),
    ("Flatten", [x4], {}, 17, {}),
    ("Flatten", [x4], {}, 17, dict(axis=0)),
    ("Flatten", [x4], {}, 17, dict(axis=-2)),
    ("Reshape", [x4], {"shape": np.array([0, -1, 3], I64)}, 17, {}),
    ("Reshape", [x4], {"shape": np.array([4, 0, 21], I64)}, 17, {}),
    ("Reshape", [rand(0, 3)], {"shape": np.array([3, 0], I64)}, 17, dict(allowzero=1)),
    ("Transpose", [x4], {}, 17, {}),
    ("Transpose", [x4], {}, 17, dict(perm=[0, 2, 3, 1])),
    ("Identity", [x4], {}, 17, {}),
    ("Unsqueeze", [x4], {"axes": np.array([0, -1], I64)}, 17, {}),
    ("Unsqueeze", [x4], {}, 11, dict(axes=[1, 3])),
    ("Squeeze", [rand(2, 1, 3, 1)], {"axes": np.array([-1], I64)}, 17, {}),
    ("Squeeze", [rand(2, 1, 3, 1)], {}, 17, {}),
    ("Squeeze", [rand(2, 1, 3, 1)], {}, 11, dict(axes=[1])),
    ("Pad", [x4], {"pads": np.array([0, 0, 1, 2, 0, 0, 3, 1], I64), "v": np.array(1.5, np.float32)}, 17, {}),
    ("Pad", [x4], {"pads": np.array([0, 1, 2, 0, 0, 0, 3, -2], I64)}, 17, dict(mode="reflect", _engine="ort")),
    ("Pad", [x4], {"pads": np.array([1, 0, 2, 0, 0, 1, 3, 1], I64)}, 17, dict(mode="edge")),
    ("Pad", [x4], {"pads": np.array([0, 0, 2, 3, 0, 0, 1, 4], I64)}, 19, dict(mode="wrap")),
    ("Pad", [x4], {"pads": np.array([0, 0, -1, 2, 0, 0, 1, -3], I64)}, 17, dict(_engine="ort")),
    ("Pad", [x4], {"pads": np.array([2, 1, 1, 0], I64), "v": np.array(0.5, np.float32),
                   "axes": np.array([-1, 1], I64)}, 18, {}),
    ("Pad", [x4], {}, 2, dict(pads=[0, 0, 1, 1, 0, 0, 1, 1], mode="edge")),
    # softmax
    ("Softmax", [x4], {}, 11, dict(_engine="ort")),  # the reference ignores the pre-13 flattening
    ("Softmax", [x4], {}, 11, dict(axis=2, _engine="ort")),
    ("Softmax", [x4], {}, 13, {}),
    ("Softmax", [x4], {}, 13, dict(axis=1)),
    # dropout (inference: identity)
    ("Dropout", [x4], {}, 17, {}),
    ("Dropout", [x4], {}, 10, dict(ratio=0.3)),
    # LRN (the reference loops over N for C, so N == C here)
    ("LRN", [rand(5, 5, 3, 4)], {}, 17, dict(size=3)),
    ("LRN", [rand(5, 5, 3, 4)], {}, 17, dict(size=4, alpha=0.01, beta=0.5, bias=2.0)),
    # ReduceMean
    ("ReduceMean", [x4], {}, 13, dict(axes=[2, 3])),
    ("ReduceMean", [x4], {}, 13, dict(axes=[-1], keepdims=0)),
    ("ReduceMean", [x4], {}, 13, {}),
    ("ReduceMean", [x4], {"axes": np.array([1], I64)}, 18, dict(keepdims=0)),
    ("ReduceMean", [x4], {}, 18, dict(noop_with_empty_axes=1)),
    # Resize
    ("Resize", [x4], {"roi": np.zeros(0, np.float32), "scales": np.array([1, 1, 2, 2], np.float32)}, 13,
     dict(mode="nearest")),
    ("Resize", [x4], {"roi": np.zeros(0, np.float32), "scales": np.array([1, 1, 2, 3], np.float32)}, 13,
     dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")),
    ("Resize", [x4], {"roi": np.zeros(0, np.float32), "scales": np.array([1, 1, 0.5, 0.5], np.float32)}, 13,
     dict(mode="nearest")),
    ("Resize", [x4], {"roi": np.zeros(0, np.float32), "scales": np.zeros(0, np.float32),
                      "sizes": np.array([2, 4, 10, 15], I64)}, 13,
     dict(mode="nearest", nearest_mode="round_prefer_ceil", coordinate_transformation_mode="pytorch_half_pixel")),
    ("Resize", [x4], {"roi": np.zeros(0, np.float32), "scales": np.array([1, 1, 2, 1.5], np.float32)}, 13,
     dict(mode="linear")),
    ("Resize", [x4], {"roi": np.zeros(0, np.float32), "scales": np.zeros(0, np.float32),
                      "sizes": np.array([2, 4, 4, 11], I64)}, 13,
     dict(mode="linear", coordinate_transformation_mode="align_corners")),
    ("Resize", [x4], {"roi": np.zeros(0, np.float32), "scales": np.array([1, 1, 1.7, 0.6], np.float32)}, 13,
     dict(mode="cubic")),
    ("Resize", [x4], {"roi": np.zeros(0, np.float32), "scales": np.array([1, 1, 2, 2], np.float32)}, 13,
     dict(mode="cubic", exclude_outside=1, cubic_coeff_a=-0.5, coordinate_transformation_mode="asymmetric")),
    ("Resize", [x4], {"roi": np.array([0, 0, 0.2, 0.1, 1, 1, 0.9, 1.3], np.float32),
                      "scales": np.zeros(0, np.float32), "sizes": np.array([2, 4, 5, 5], I64)}, 13,
     dict(mode="linear", coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=-7.0)),
    ("Resize", [x4], {"roi": np.zeros(0, np.float32), "scales": np.zeros(0, np.float32),
                      "sizes": np.array([9, 9], I64)}, 18,
     dict(mode="linear", axes=[2, 3], keep_aspect_ratio_policy="not_larger")),
    ("Resize", [x4], {"roi": np.zeros(0, np.float32), "scales": np.array([1.5, 2.5], np.float32)}, 19,
     dict(mode="linear", axes=[3, 2], coordinate_transformation_mode="half_pixel_symmetric")),
]


@pytest.mark.parametrize("op,inputs,consts,opset,attrs", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_op_matches_onnx_reference(op, inputs, consts, opset, attrs):
    check(op, inputs, consts, opset=opset, **attrs)


def test_every_registered_op_is_covered():
    """Each torch kernel is checked against onnx.reference here or in the issue-15 op tests."""
    from .test_ops_issue15_numpy import CASES as MORE_CASES
    assert set(kernels()) <= {c[0] for c in CASES} | {c.op for c in MORE_CASES if c.onnx_ref}


def test_legacy_broadcast_before_opset7():
    b = rand(4)
    got = ours("Add", [("x0", x4), ("x1", b)], {}, dict(broadcast=1, axis=1), 6, 1)[0]
    np.testing.assert_allclose(got, x4 + b[None, :, None, None], rtol=1e-6)
    got = ours("Mul", [("x0", x4), ("x1", rand(6))], {}, dict(broadcast=1), 6, 1)[0]
    assert got.shape == x4.shape


# -- errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize("op,inputs,consts,opset,attrs,fragment", [
    ("MaxPool", [x4], {}, 17, dict(kernel_shape=[2, 2], storage_order=1), "storage_order"),
    ("Resize", [x4], {"roi": np.zeros(0, np.float32), "scales": np.array([1, 1, 2, 2], np.float32)}, 13,
     dict(mode="area"), "mode"),
    ("Resize", [x4], {"roi": np.zeros(0, np.float32), "scales": np.array([1, 1, 0.5, 0.5], np.float32)}, 18,
     dict(mode="linear", antialias=1), "antialias"),
    ("BatchNormalization", [x4, rand(4), rand(4), rand(4), np.ones(4, np.float32)], {}, 7, dict(spatial=0),
     "spatial"),
    ("Pad", [x4], {"pads": np.zeros(8, I64)}, 17, dict(mode="mirror"), "mode"),
    ("Conv", [x4, rand(3, 4, 3, 3)], {}, 17, dict(auto_pad="SAME"), "auto_pad"),
])
def test_unsupported_attribute_names_op_and_choices(op, inputs, consts, opset, attrs, fragment):
    with pytest.raises(DLPluginError, match=fragment) as info:
        ours(op, [(f"x{i}", a) for i, a in enumerate(inputs)], consts, attrs, opset, 1)
    assert op in str(info.value) and "supported" in str(info.value)


def test_missing_kernel_names_node_and_hook():
    graph = Graph([Node("Foo", ["x"], ["y"], name="foo1")], [ValueInfo("x", (1,))], [ValueInfo("y", (1,))], [])
    with pytest.raises(DLPluginError, match="foo1.*Foo.*dlbatch_register_ops"):
        BACKEND.compile(graph, kernels(), device="cpu", dtype="float32")


# -- training forward: batch norm and dropout ---------------------------------------------------
def _bn_graph():
    node = Node("BatchNormalization", ["x", "s", "b", "rm", "rv"], ["y"], {"epsilon": 1e-5}, "bn")
    return Graph([node], [ValueInfo("x", (None, 3, None, None))], [ValueInfo("y", ())], ["s", "b"],
                 statistics=["rm", "rv"])


def test_batchnorm_training_statistics_follow_spec_and_inputs_untouched():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 5, 6)) * 3 + 1
    vals = {"s": rng.standard_normal(3), "b": rng.standard_normal(3), "rm": rng.standard_normal(3),
            "rv": rng.random(3) + 0.5}
    prog = BACKEND.compile(_bn_graph(), kernels(), device="cpu", dtype="float64")
    values = {k: BACKEND.asarray(v) for k, v in vals.items()}
    before = {k: v.clone() for k, v in values.items()}
    m = 0.8
    res = prog.forward(values, {"x": BACKEND.asarray(x)}, training=True, bn_momentum=m)
    mean = x.mean(axis=(0, 2, 3))
    var_b = x.var(axis=(0, 2, 3))
    var_u = x.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(BACKEND.to_numpy(res.statistics["rm"]), m * vals["rm"] + (1 - m) * mean, rtol=1e-12)
    np.testing.assert_allclose(BACKEND.to_numpy(res.statistics["rv"]), m * vals["rv"] + (1 - m) * var_u, rtol=1e-12)
    expect = ((x - mean[None, :, None, None]) / np.sqrt(var_b[None, :, None, None] + 1e-5)
              * vals["s"][None, :, None, None] + vals["b"][None, :, None, None])
    np.testing.assert_allclose(BACKEND.to_numpy(res.outputs["y"]), expect, rtol=1e-10, atol=1e-12)
    for k in values:
        assert torch.equal(values[k], before[k]), f"{k} was modified in place"
    # inference uses the running statistics
    res = prog.forward(values, {"x": BACKEND.asarray(x)}, training=False)
    expect = ((x - vals["rm"][None, :, None, None]) / np.sqrt(vals["rv"][None, :, None, None] + 1e-5)
              * vals["s"][None, :, None, None] + vals["b"][None, :, None, None])
    np.testing.assert_allclose(BACKEND.to_numpy(res.outputs["y"]), expect, rtol=1e-10)
    assert res.statistics == {} and res.tape is None


def test_dropout_training_uses_own_seeded_generator():
    graph = Graph([Node("Dropout", ["x", "r"], ["y", "mask"], {}, "d")], [ValueInfo("x", ())],
                  [ValueInfo("y", ()), ValueInfo("mask", ())], [], constants=["r"], opset=13)
    prog = BACKEND.compile(graph, kernels(), device="cpu", dtype="float32")
    x = np.ones((200, 100), np.float32)
    values = {"r": BACKEND.asarray(np.array(0.25, np.float32))}

    def run():
        BACKEND.seed(7)
        torch.manual_seed(0)
        res = prog.forward(values, {"x": BACKEND.asarray(x)}, training=True)
        return BACKEND.to_numpy(res.outputs["y"]), BACKEND.to_numpy(res.outputs["mask"])

    global_state = torch.get_rng_state()
    y1, m1 = run()
    y2, m2 = run()
    np.testing.assert_array_equal(y1, y2)
    assert abs(m1.mean() - 0.75) < 0.02
    np.testing.assert_allclose(y1[m1], 1 / 0.75, rtol=1e-6)
    assert (y1[~m1] == 0).all()
    torch.set_rng_state(global_state)


# -- gradients against finite differences (float64) ----------------------------------------------
def _grad_graph():
    """A small net touching most differentiable ops; every parameter is trainable."""
    n = []
    n.append(Node("Conv", ["x", "w1", "b1"], ["c1"], {"pads": [0, 1, 1, 0], "strides": [1, 1]}, "conv1"))
    n.append(Node("BatchNormalization", ["c1", "g1", "be1", "rm1", "rv1"], ["bn1"], {}, "bn1"))
    n.append(Node("LeakyRelu", ["bn1"], ["a1"], {"alpha": 0.1}, "lrelu"))
    n.append(Node("MaxPool", ["a1"], ["p1"], {"kernel_shape": [2, 2], "strides": [1, 1]}, "mp"))
    n.append(Node("Pad", ["p1", "pads"], ["pd"], {"mode": "reflect"}, "pad"))
    n.append(Node("Conv", ["pd", "w2"], ["c2"], {"group": 2}, "conv2"))
    n.append(Node("LRN", ["c2"], ["l2"], {"size": 3, "alpha": 0.5}, "lrn"))
    n.append(Node("HardSwish", ["l2"], ["h2"], {}, "hswish"))
    n.append(Node("ConvTranspose", ["h2", "wt"], ["t2"], {"strides": [2, 2], "pads": [1, 0, 0, 1]}, "convt"))
    n.append(Node("Resize", ["t2", "", "scales"], ["r2"], {"mode": "linear"}, "resize"))
    n.append(Node("AveragePool", ["r2"], ["ap"], {"kernel_shape": [3, 3], "strides": [2, 2],
                                                  "pads": [1, 1, 1, 1], "count_include_pad": 1}, "avgpool"))
    n.append(Node("Sigmoid", ["ap"], ["sg"], {}, "sig"))
    n.append(Node("Mul", ["ap", "sg"], ["sw"], {}, "mul"))
    n.append(Node("Concat", ["sw", "ap"], ["cat"], {"axis": 1}, "cat"))
    n.append(Node("ReduceMean", ["cat"], ["rmn"], {"axes": [3], "keepdims": 1}, "rmean"))
    n.append(Node("Transpose", ["rmn"], ["tr"], {"perm": [0, 2, 1, 3]}, "tr"))
    n.append(Node("Flatten", ["tr"], ["fl"], {"axis": 1}, "flat"))
    n.append(Node("Gemm", ["fl", "wf", "bf"], ["g"], {"transB": 1, "alpha": 0.7}, "fc"))
    n.append(Node("Tanh", ["g"], ["tg"], {}, "tanh"))
    n.append(Node("Clip", ["tg", "lo", ""], ["cl"], {}, "clip"))
    n.append(Node("Softmax", ["cl"], ["out"], {"axis": 1}, "softmax"))
    return Graph(n, [ValueInfo("x", (None, 2, 6, 6))], [ValueInfo("out", (None, 3))],
                 trainable=["w1", "b1", "g1", "be1", "w2", "wt", "wf", "bf"], statistics=["rm1", "rv1"],
                 constants=["pads", "scales", "lo"], opset=17)


def _grad_values(rng):
    v = {"w1": rng.standard_normal((4, 2, 3, 3)) * 0.4, "b1": rng.standard_normal(4) * 0.1,
         "g1": 1 + 0.1 * rng.standard_normal(4), "be1": 0.1 * rng.standard_normal(4),
         "rm1": np.zeros(4), "rv1": np.ones(4),
         "w2": rng.standard_normal((4, 2, 3, 3)) * 0.4, "wt": rng.standard_normal((4, 2, 3, 3)) * 0.4,
         "pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "scales": np.array([1, 1, 1.5, 1.5]),
         "lo": np.array(-0.5)}
    return v, rng.standard_normal((2, 2, 6, 6))


def _flat_width(graph, values, x):
    """Width of the Gemm input: run the graph up to Flatten."""
    upto = [n.name for n in graph.nodes].index("flat") + 1
    head = Graph(graph.nodes[:upto], graph.inputs, [ValueInfo("fl", ())], graph.trainable[:6],
                 graph.statistics, graph.constants, graph.opset)
    prog = BACKEND.compile(head, kernels(), device="cpu", dtype="float64")
    res = prog.forward({k: BACKEND.asarray(a) for k, a in values.items()}, {"x": BACKEND.asarray(x)},
                       training=False)
    return int(res.outputs["fl"].shape[1])


def test_gradients_match_finite_differences_float64():
    rng = np.random.default_rng(5)
    v, x = _grad_values(rng)
    graph = _grad_graph()
    prog = BACKEND.compile(graph, kernels(), device="cpu", dtype="float64")
    width = _flat_width(graph, v, x)
    v["wf"] = rng.standard_normal((3, width)) * 0.5
    v["bf"] = rng.standard_normal(3) * 0.1
    r = rng.standard_normal((2, 3))

    def loss(vals):
        res = prog.forward({k: BACKEND.asarray(a) for k, a in vals.items()}, {"x": BACKEND.asarray(x)},
                           training=True, bn_momentum=0.9)
        return float((BACKEND.to_numpy(res.outputs["out"]) * r).sum()), res

    _, res = loss(v)
    grads = prog.backward(res.tape, {"out": BACKEND.asarray(r)})
    assert set(grads) == set(graph.trainable)
    eps = 1e-6
    for name in graph.trainable:
        g = BACKEND.to_numpy(grads[name])
        assert g.shape == v[name].shape
        flat = v[name].reshape(-1)
        for idx in rng.choice(flat.size, size=min(flat.size, 6), replace=False):
            plus, minus = dict(v), dict(v)
            p, m = flat.copy(), flat.copy()
            p[idx] += eps
            m[idx] -= eps
            plus[name], minus[name] = p.reshape(v[name].shape), m.reshape(v[name].shape)
            fd = (loss(plus)[0] - loss(minus)[0]) / (2 * eps)
            assert abs(g.reshape(-1)[idx] - fd) <= 1e-6 + 1e-5 * abs(fd), (name, idx, g.reshape(-1)[idx], fd)



def _grad_graph2():
    n = [Node("Sub", ["x", "a"], ["s1"], {}, "sub"),
         Node("Div", ["s1", "d"], ["d1"], {}, "div"),
         Node("HardSigmoid", ["d1"], ["h1"], {"alpha": 0.3}, "hsig"),
         Node("Sum", ["h1", "d1", "x"], ["s2"], {}, "sum"),
         Node("Relu", ["s2"], ["r1"], {}, "relu"),
         Node("Pad", ["r1", "pads", "cval"], ["p1"], {}, "pad1"),
         Node("Pad", ["p1", "pads2"], ["p2"], {"mode": "edge"}, "pad2"),
         Node("Resize", ["p2", "", "scales"], ["rz"], {"mode": "cubic"}, "resize"),
         Node("GlobalAveragePool", ["rz"], ["gp"], {}, "gap"),
         Node("Squeeze", ["gp", "axes23"], ["sq"], {}, "squeeze"),
         Node("Unsqueeze", ["sq", "axes1"], ["us"], {}, "unsqueeze"),
         Node("Reshape", ["us", "shape"], ["rs"], {}, "reshape"),
         Node("MatMul", ["rs", "m"], ["mm"], {}, "matmul"),
         Node("Gemm", ["mm", "g"], ["gm"], {"transA": 1}, "gemm"),
         Node("Identity", ["gm"], ["out"], {}, "id")]
    return Graph(n, [ValueInfo("x", (2, 3, 4, 4))], [ValueInfo("out", (4, 5))], trainable=["a", "d", "m", "g"],
                 constants=["pads", "cval", "pads2", "scales", "axes23", "axes1", "shape"], opset=17)


def test_gradients_match_finite_differences_float64_more_ops():
    rng = np.random.default_rng(9)
    graph = _grad_graph2()
    v = {"a": rng.standard_normal((3, 1, 1)), "d": 1.5 + 0.2 * rng.standard_normal((1, 3, 1, 1)),
         "m": rng.standard_normal((3, 4)), "g": rng.standard_normal((2, 5)),
         "pads": np.array([0, 0, 1, 0, 0, 0, 0, 2], np.int64), "cval": np.array(0.3),
         "pads2": np.array([0, 0, 0, 1, 0, 0, 2, 0], np.int64), "scales": np.array([1, 1, 1.5, 0.8]),
         "axes23": np.array([2, 3], np.int64), "axes1": np.array([1], np.int64), "shape": np.array([2, 3], np.int64)}
    x = rng.standard_normal((2, 3, 4, 4))
    prog = BACKEND.compile(graph, kernels(), device="cpu", dtype="float64")
    r = rng.standard_normal((4, 5))

    def loss(vals):
        res = prog.forward({k: BACKEND.asarray(a) for k, a in vals.items()}, {"x": BACKEND.asarray(x)}, training=True)
        return float((BACKEND.to_numpy(res.outputs["out"]) * r).sum()), res

    _, res = loss(v)
    grads = {k: BACKEND.to_numpy(g) for k, g in prog.backward(res.tape, {"out": BACKEND.asarray(r)}).items()}
    eps = 1e-6
    for name in graph.trainable:
        for idx in range(v[name].size):
            plus, minus = dict(v), dict(v)
            p, m = v[name].copy().reshape(-1), v[name].copy().reshape(-1)
            p[idx] += eps
            m[idx] -= eps
            plus[name], minus[name] = p.reshape(v[name].shape), m.reshape(v[name].shape)
            fd = (loss(plus)[0] - loss(minus)[0]) / (2 * eps)
            assert abs(grads[name].reshape(-1)[idx] - fd) <= 1e-6 + 1e-5 * abs(fd), (name, idx)


def test_backward_only_for_parameters_reached_and_tape_is_single_use():
    graph = Graph([Node("Mul", ["x", "w"], ["y"], {}, "mul"), Node("Relu", ["u"], ["z"], {}, "unused")],
                  [ValueInfo("x", ())], [ValueInfo("y", ())], trainable=["w", "u"])
    prog = BACKEND.compile(graph, kernels(), device="cpu", dtype="float32")
    vals = {"w": BACKEND.asarray(np.full(3, 2.0, np.float32)), "u": BACKEND.asarray(np.ones(3, np.float32))}
    res = prog.forward(vals, {"x": BACKEND.asarray(np.arange(3, dtype=np.float32))}, training=True)
    assert not res.outputs["y"].requires_grad  # losses get plain tensors
    grads = prog.backward(res.tape, {"y": BACKEND.asarray(np.ones(3, np.float32))})
    assert set(grads) == {"w"}
    np.testing.assert_array_equal(BACKEND.to_numpy(grads["w"]), [0, 1, 2])
    assert not vals["w"].requires_grad  # the model's tensors are never turned into leaves
    with pytest.raises(DLPluginError, match="already used"):
        prog.backward(res.tape, {"y": BACKEND.asarray(np.ones(3, np.float32))})
    with pytest.raises(DLPluginError, match="training"):
        prog.backward(None, {})


def test_cpu_images_run_channels_last_with_the_same_values():
    """4-D float inputs on the CPU are made channels_last (oneDNN's fast layout), so the
    convolution's output comes back channels_last; values and gradients equal those of the
    NCHW computation (torch autograd on contiguous tensors, float64)."""
    graph = Graph([Node("Conv", ["x", "w"], ["c"], {"pads": [1, 1, 1, 1]}, "conv"),
                   Node("Relu", ["c"], ["y"], {}, "relu")],
                  [ValueInfo("x", ())], [ValueInfo("y", ())], trainable=["w"])
    prog = BACKEND.compile(graph, kernels(), device="cpu", dtype="float64")
    r = np.random.default_rng(0)
    x, w = r.standard_normal((2, 3, 6, 5)), r.standard_normal((4, 3, 3, 3))
    res = prog.forward({"w": BACKEND.asarray(w)}, {"x": BACKEND.asarray(x)}, training=True, wanted=("c", "y"))
    assert res.outputs["c"].is_contiguous(memory_format=torch.channels_last)
    g = r.standard_normal((2, 4, 6, 5))
    grads = prog.backward(res.tape, {"y": BACKEND.asarray(g)})
    tw = torch.tensor(w, requires_grad=True)
    ty = torch.relu(torch.nn.functional.conv2d(torch.tensor(x), tw, padding=1))
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(BACKEND.to_numpy(res.outputs["y"]), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(BACKEND.to_numpy(grads["w"]), tw.grad.numpy(), rtol=1e-12, atol=1e-12)


# -- arrays, devices, determinism ----------------------------------------------------------------
def test_asarray_and_to_numpy_copy_and_cast():
    a = np.arange(6, dtype=np.float64).reshape(2, 3)
    t = BACKEND.asarray(a, device="cpu", dtype="float32")
    assert t.dtype == torch.float32 and tuple(t.shape) == (2, 3)
    a[0, 0] = 99.0
    assert float(t[0, 0]) == 0.0  # no aliasing of the caller's array
    back = BACKEND.to_numpy(t)
    back[0, 1] = -1.0
    assert float(t[0, 1]) == 1.0
    assert BACKEND.asarray(np.array([1, 2], np.int64)).dtype == torch.int64
    ro = np.ones(3)
    ro.flags.writeable = False
    off_host = BACKEND.asarray(ro, device="meta", dtype="float32")  # the non-CPU path, without a GPU
    assert off_host.dtype == torch.float32 and off_host.device.type == "meta"
    assert BACKEND.xp.__name__ == "array_api_compat.torch"


def test_all_finite_is_one_combined_check():
    ok = [BACKEND.asarray(np.ones(5, np.float32)), BACKEND.asarray(np.full((2, 2), 1e300))]
    assert BACKEND.all_finite(ok)
    assert BACKEND.all_finite([])
    assert BACKEND.all_finite([BACKEND.asarray(np.full(8, 3e38, np.float32))])  # the sum overflows, values don't
    for bad in (np.nan, np.inf, -np.inf):
        arr = np.ones(7, np.float32)
        arr[3] = bad
        assert not BACKEND.all_finite(ok + [BACKEND.asarray(arr)])


def test_check_device_names_and_errors():
    assert BACKEND.check_device("cpu") == "cpu"
    with pytest.raises(DLBackendError, match="'cpu', 'cuda' or 'cuda:N'"):
        BACKEND.check_device("tpu")
    if not torch.cuda.is_available():
        for dev in ("cuda", "cuda:0", "cuda:3"):
            with pytest.raises(DLBackendError, match="Available devices: cpu"):
                BACKEND.check_device(dev)


def test_model_on_missing_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    import dlbatch
    with pytest.raises(DLBackendError, match="cuda"):
        dlbatch.create_dl_model("classification", backbone="compact", image_width=8, image_height=8,
                                image_num_channels=1, class_ids=[0, 1], backend="torch", device="cuda")


@pytest.mark.cuda
def test_cuda_device_names():
    assert BACKEND.check_device("cuda") == "cuda:0"
    n = torch.cuda.device_count()
    with pytest.raises(DLBackendError, match="available devices: cpu, cuda:0"):
        BACKEND.check_device(f"cuda:{n}")


def test_set_deterministic_toggles_and_restores_torch_flags():
    backend = TorchBackend()
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
              torch.backends.cudnn.benchmark)
    backend.set_deterministic(True)
    try:
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    finally:
        backend.set_deterministic(False)
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark) == before


def _run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120)


def test_import_dlbatch_and_numpy_training_do_not_import_torch():
    proc = _run_python("""
        import sys
        import numpy as np
        import dlbatch
        print(sorted(dlbatch.plugin_manager.registry.backends))
        m = dlbatch.create_dl_model("classification", backbone="compact", image_width=8, image_height=8,
                                    image_num_channels=1, class_ids=[0, 1], batch_size=2)
        rng = np.random.default_rng(0)
        s = [{"image": rng.standard_normal((8, 8, 1)).astype(np.float32), "image_label_id": i % 2}
             for i in range(2)]
        dlbatch.train_dl_model_batch(m, s)
        assert "torch" not in sys.modules, "torch was imported"
        assert "array_api_compat" not in sys.modules
        print("ok")
    """)
    assert proc.returncode == 0, proc.stderr
    assert "'torch'" in proc.stdout and "ok" in proc.stdout


def test_missing_torch_says_how_to_install():
    proc = _run_python("""
        import sys
        sys.modules["torch"] = None  # makes `import torch` raise ImportError
        import dlbatch
        try:
            dlbatch.create_dl_model("classification", backbone="compact", image_width=8, image_height=8,
                                    image_num_channels=1, class_ids=[0, 1], backend="torch")
        except dlbatch.DLBackendError as exc:
            print("ERR", exc)
    """)
    assert proc.returncode == 0, proc.stderr
    assert "ERR" in proc.stdout and "pip install 'dlbatch[torch]'" in proc.stdout


# -- fused solvers --------------------------------------------------------------------------------
def _params(rng, dtype=np.float64):
    return {"w": rng.standard_normal((3, 4)).astype(dtype), "b": rng.standard_normal(4).astype(dtype)}


def _to_t(d, dtype="float64"):
    return {k: BACKEND.asarray(v, dtype=dtype) for k, v in d.items()}


def _state_to_np(state):
    out = {k: state[k] for k in solvers.COUNTERS}
    for slot in solvers.SLOTS:
        out[slot] = {n: BACKEND.to_numpy(a) for n, a in state[slot].items()}
    return out


def test_sgd_step_matches_halcon_formula_with_learning_rate_change():
    rng = np.random.default_rng(3)
    w = _params(rng)
    grads = [_params(rng), _params(rng)]
    hps = [{"learning_rate": 0.1, "momentum": 0.9}, {"learning_rate": 0.02, "momentum": 0.5}]
    solver = solvers.solver_for("sgd")
    params, state = _to_t(w), solvers.empty_state()
    v = {k: np.zeros_like(a) for k, a in w.items()}
    ref = dict(w)
    for g, hp in zip(grads, hps):
        frozen_p = {k: t.clone() for k, t in params.items()}
        gt = _to_t(g)
        new_p, new_state = BACKEND.solver_step(solver, params, gt, state, hp)
        for k in params:  # functional: inputs untouched
            assert torch.equal(params[k], frozen_p[k])
        for k in ref:
            v[k] = hp["momentum"] * v[k] - hp["learning_rate"] * g[k]
            ref[k] = ref[k] + v[k]
            np.testing.assert_allclose(BACKEND.to_numpy(new_p[k]), ref[k], rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(BACKEND.to_numpy(new_state["velocity"][k]), v[k], rtol=1e-12, atol=1e-14)
        # same layout and values as the generic step of dlbatch.core.solvers
        gp, gs = solver.step(BACKEND.xp, params, gt, state, hp)
        assert set(gs) == set(new_state) and gs["step"] == new_state["step"] == state["step"] + 1
        for k in params:
            np.testing.assert_allclose(BACKEND.to_numpy(gp[k]), BACKEND.to_numpy(new_p[k]), rtol=1e-13)
        params, state = new_p, new_state


def test_adam_step_matches_formula_with_learning_rate_change():
    rng = np.random.default_rng(4)
    w = _params(rng)
    solver = solvers.solver_for("adam")
    hp0 = {"learning_rate": 0.01, "adam_beta1": 0.9, "adam_beta2": 0.999, "adam_epsilon": 1e-8, "momentum": 0.9}
    hps = [hp0, hp0, dict(hp0, learning_rate=0.003, adam_beta1=0.8)]
    params, state = _to_t(w), solvers.empty_state()
    m = {k: np.zeros_like(a) for k, a in w.items()}
    s = {k: np.zeros_like(a) for k, a in w.items()}
    ref = dict(w)
    for t, hp in enumerate(hps, start=1):
        g = _params(rng)
        new_p, new_state = BACKEND.solver_step(solver, params, _to_t(g), state, hp)
        b1, b2, eps, lr = hp["adam_beta1"], hp["adam_beta2"], hp["adam_epsilon"], hp["learning_rate"]
        for k in ref:
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            s[k] = b2 * s[k] + (1 - b2) * g[k] ** 2
            ref[k] = ref[k] - lr * (m[k] / (1 - b1 ** t)) / (np.sqrt(s[k] / (1 - b2 ** t)) + eps)
            np.testing.assert_allclose(BACKEND.to_numpy(new_p[k]), ref[k], rtol=1e-12)
            np.testing.assert_allclose(BACKEND.to_numpy(new_state["adam_m"][k]), m[k], rtol=1e-12)
            np.testing.assert_allclose(BACKEND.to_numpy(new_state["adam_v"][k]), s[k], rtol=1e-12)
        assert new_state["adam_step"] == t and new_state["step"] == t
        params, state = new_p, new_state


def test_solver_step_float32_close_to_float64_formula():
    rng = np.random.default_rng(5)
    w, g = _params(rng), _params(rng)
    hp = {"learning_rate": 0.05, "momentum": 0.9}
    new_p, _ = BACKEND.solver_step(solvers.solver_for("sgd"), _to_t(w, "float32"), _to_t(g, "float32"),
                                   solvers.empty_state(), hp)
    for k in w:
        assert new_p[k].dtype == torch.float32
        np.testing.assert_allclose(BACKEND.to_numpy(new_p[k]), w[k] - 0.05 * g[k], rtol=1e-6, atol=1e-7)


def test_unknown_solver_falls_back_to_generic_step():
    class Halve(solvers.Solver):
        name = "halve"

        def step(self, xp, params, grads, state, hp):
            return {k: params[k] / 2 for k in grads}, solvers.copy_state(state)

    p = _to_t({"w": np.ones(3)})
    new_p, _ = BACKEND.solver_step(Halve(), p, p, solvers.empty_state(), {})
    np.testing.assert_array_equal(BACKEND.to_numpy(new_p["w"]), [0.5, 0.5, 0.5])


# -- CUDA ---------------------------------------------------------------------------------------
@pytest.mark.cuda
@pytest.mark.parametrize("op,inputs,consts,opset,attrs", [c for c in CASES if c[0] in (
    "Conv", "ConvTranspose", "MaxPool", "AveragePool", "Resize", "Pad", "Reshape", "LRN")],
    ids=lambda c: c if isinstance(c, str) else None)
def test_cuda_forward_equals_cpu(op, inputs, consts, opset, attrs):
    attrs = {k: v for k, v in attrs.items() if k != "_engine"}
    feed = [(f"x{i}", a) for i, a in enumerate(inputs)]
    cpu = ours(op, feed, consts, attrs, opset, 1)
    gpu = ours(op, feed, consts, attrs, opset, 1, device="cuda")
    for a, b in zip(cpu, gpu):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(a).max(initial=0.0))))


@pytest.mark.cuda
def test_cuda_training_step_gradients_and_solver():
    rng = np.random.default_rng(5)
    v, x = _grad_values(rng)
    graph = _grad_graph()
    v["wf"] = rng.standard_normal((3, _flat_width(graph, v, x))) * 0.5
    v["bf"] = rng.standard_normal(3) * 0.1
    r = rng.standard_normal((2, 3))
    grads = {}
    for device in ("cpu", "cuda"):
        prog = BACKEND.compile(graph, kernels(), device=device, dtype="float64")
        res = prog.forward({k: BACKEND.asarray(a, device=device) for k, a in v.items()},
                           {"x": BACKEND.asarray(x, device=device)}, training=True)
        g = prog.backward(res.tape, {"out": BACKEND.asarray(r, device=device)})
        assert BACKEND.all_finite(g.values())
        grads[device] = {k: BACKEND.to_numpy(t) for k, t in g.items()}
    for k in grads["cpu"]:
        np.testing.assert_allclose(grads["cuda"][k], grads["cpu"][k], rtol=1e-8, atol=1e-10)
    p = {k: BACKEND.asarray(v[k], device="cuda") for k in graph.trainable}
    new_p, state = BACKEND.solver_step(solvers.solver_for("adam"), p, p, solvers.empty_state(),
                                       {"learning_rate": 0.1, "adam_beta1": 0.9, "adam_beta2": 0.999,
                                        "adam_epsilon": 1e-8})
    assert all(t.device.type == "cuda" for t in new_p.values())
