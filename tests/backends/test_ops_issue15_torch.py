"""The torch kernels added for issue 15, on the cases of test_ops_issue15_numpy.py:

* forward through a compiled torch program equals onnx.reference (float32);
* the torch backend equals the numpy backend in float64, values and gradients, with the
  float inputs as trainable parameters and the integer/bool ones as graph constants (so
  integer tensors flow through both programs next to the float graph);
* GroupNorm as torch exports it (Reshape -> InstanceNormalization -> Reshape -> Mul -> Add)
  equals torch's group_norm in values and gradients on both backends.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dlbatch.backends.numpy_cpu.backend import NumpyBackend  # noqa: E402
from dlbatch.backends.torch.backend import TorchBackend  # noqa: E402
from dlbatch.core.errors import DLError  # noqa: E402
from dlbatch.core.graph import Graph, Node, ValueInfo  # noqa: E402
from dlbatch.core.plugins import manager  # noqa: E402

from .test_ops_issue15_numpy import CASES, as_dtype, i64, onnx_reference  # noqa: E402

BACKENDS = {"numpy": NumpyBackend(), "torch": TorchBackend()}
NEW_OPS = {"LayerNormalization", "InstanceNormalization", "Erf", "Gelu", "Pow", "Sqrt", "Exp", "Log", "Neg", "Abs",
           "Reciprocal", "Gather", "Slice", "Split", "Expand", "Where", "Shape", "ConstantOfShape", "Range",
           "Cast", "Equal", "Mod", "ReduceSum", "ReduceMax", "ReduceMean"}


def is_float(v):
    return v is not None and np.issubdtype(v.dtype, np.floating)


def one_node_graph(case, xs, trainable: bool):
    """Float inputs are graph inputs (or trainable parameters), the others constants."""
    names, inputs, params, consts = [], [], [], []
    for i, v in enumerate(xs):
        if v is None:
            names.append("")
            continue
        name = f"x{i}"
        names.append(name)
        if not is_float(v):
            consts.append(name)
        elif trainable:
            params.append(name)
        else:
            inputs.append(ValueInfo(name, v.shape))
    outs = [f"y{k}" for k in range(case.n_out)]
    node = Node(case.op, names, outs, dict(case.attrs), f"node_{case.id}")
    return Graph(nodes=[node], inputs=inputs, outputs=[ValueInfo(o, ()) for o in outs], trainable=params,
                 constants=consts, opset=case.opset)


def run_program(backend_name, case, xs, *, training, dtype, out_grads=None, device="cpu"):
    backend = BACKENDS[backend_name]
    graph = one_node_graph(case, xs, trainable=training)
    prog = backend.compile(graph, manager.kernels(backend_name), device=device, dtype=dtype)
    values = {f"x{i}": backend.asarray(v, device=device) for i, v in enumerate(xs)
              if v is not None and f"x{i}" in graph.initializer_names()}
    feed = {v.name: backend.asarray(xs[int(v.name[1:])], device=device) for v in graph.inputs}
    res = prog.forward(values, feed, training=training)
    outs = [backend.to_numpy(res.outputs[f"y{k}"]) for k in range(case.n_out)]
    grads = {}
    if training and out_grads is not None:
        g = {f"y{k}": backend.asarray(gk, device=device) for k, gk in enumerate(out_grads) if gk is not None}
        grads = {k: backend.to_numpy(v) for k, v in prog.backward(res.tape, g).items()}
    return outs, grads


def test_every_new_op_is_registered_on_both_backends():
    for name in BACKENDS:
        assert NEW_OPS <= set(manager.kernels(name)), (name, NEW_OPS - set(manager.kernels(name)))
    assert {c.op for c in CASES} >= NEW_OPS


@pytest.mark.parametrize("case", [c for c in CASES if c.onnx_ref], ids=str)
def test_torch_forward_matches_onnx_reference_float32(case):
    xs = as_dtype(case.inputs(), np.float32)
    attrs = {k: float(np.float32(v)) if isinstance(v, float) else v for k, v in case.attrs.items()}
    refs = onnx_reference(case.op, xs, attrs, case.opset, case.n_out)
    outs, _ = run_program("torch", case, xs, training=False, dtype="float32")
    for y, ref in zip(outs, refs):
        assert y.shape == ref.shape, (case.id, y.shape, ref.shape)
        if case.keep_dtype:
            assert y.dtype == ref.dtype, (case.id, y.dtype, ref.dtype)
        if ref.dtype.kind == "f":
            np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5, err_msg=case.id)
        else:
            np.testing.assert_array_equal(y, ref, err_msg=case.id)


NUMPY_PROGRAM_GAPS: dict[str, str] = {}  # case id -> why the numpy program cannot run it yet


def _compare_with_numpy(case, device):
    xs = case.inputs(seed=7)
    has_float = any(is_float(v) for v in xs)
    r = np.random.default_rng(8)
    outs_np, _ = run_program("numpy", case, xs, training=False, dtype="float64")
    gs = [r.standard_normal(y.shape) if np.issubdtype(y.dtype, np.floating) else None for y in outs_np]
    yn, gn = run_program("numpy", case, xs, training=has_float, dtype="float64", out_grads=gs)
    yt, gt = run_program("torch", case, xs, training=has_float, dtype="float64", out_grads=gs, device=device)
    for a, b in zip(yn, yt):
        assert a.shape == b.shape and a.dtype == b.dtype, (case.id, a.shape, b.shape, a.dtype, b.dtype)
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=f"{case.id} value")
    wanted = {f"x{i}" for i in case.float_inputs(xs)}
    assert wanted <= set(gn), (case.id, set(gn))
    for name in wanted:
        assert name in gt, (case.id, name, sorted(gt))
        np.testing.assert_allclose(gn[name], gt[name], rtol=1e-10, atol=1e-12, err_msg=f"{case.id} grad {name}")


@pytest.mark.parametrize("case", CASES, ids=str)
def test_torch_backend_equals_numpy_backend_float64(case):
    if case.id in NUMPY_PROGRAM_GAPS:
        pytest.xfail(NUMPY_PROGRAM_GAPS[case.id])
    _compare_with_numpy(case, "cpu")


@pytest.mark.cuda
@pytest.mark.parametrize("case", [c for c in CASES if c.id not in NUMPY_PROGRAM_GAPS], ids=str)
def test_torch_cuda_equals_numpy_backend_float64(case):
    """The same on a GPU: host operands (indices, shapes, axes) and integer tensors next to
    CUDA tensors."""
    _compare_with_numpy(case, "cuda")


def _groupnorm_graph(groups, c):
    """GroupNorm(groups, c) as torch.onnx.export writes it (legacy exporter, opset 13/17)."""
    nodes = [
        Node("Shape", ["x"], ["xshape"], {}, "shape"),
        Node("Reshape", ["x", "gshape"], ["xg"], {}, "reshape_in"),
        Node("InstanceNormalization", ["xg", "ones", "zeros"], ["xn"], {"epsilon": 1e-5}, "inorm"),
        Node("Reshape", ["xn", "xshape"], ["xr"], {}, "reshape_out"),
        Node("Mul", ["xr", "gamma"], ["xm"], {}, "mul"),
        Node("Add", ["xm", "beta"], ["y"], {}, "add"),
    ]
    return Graph(nodes, [ValueInfo("x", (None, c, None, None))], [ValueInfo("y", ())], trainable=["gamma", "beta"],
                 constants=["gshape", "ones", "zeros"], opset=13)


@pytest.mark.parametrize("backend_name", ["numpy", "torch"])
def test_groupnorm_as_exported_matches_torch_group_norm(backend_name):
    groups, c = 2, 6
    r = np.random.default_rng(11)
    x = r.standard_normal((3, c, 4, 5)) * 2 + 1
    vals = {"gshape": i64(0, groups, -1), "ones": np.ones(groups), "zeros": np.zeros(groups),
            "gamma": r.standard_normal((c, 1, 1)), "beta": r.standard_normal((c, 1, 1))}
    g = r.standard_normal(x.shape)
    backend = BACKENDS[backend_name]
    prog = backend.compile(_groupnorm_graph(groups, c), manager.kernels(backend_name), device="cpu",
                           dtype="float64")
    res = prog.forward({k: backend.asarray(v, device="cpu") for k, v in vals.items()},
                       {"x": backend.asarray(x, device="cpu")}, training=True)
    grads = prog.backward(res.tape, {"y": backend.asarray(g, device="cpu")})
    tw = torch.from_numpy(vals["gamma"].reshape(c)).requires_grad_(True)
    tb = torch.from_numpy(vals["beta"].reshape(c)).requires_grad_(True)
    ty = torch.nn.functional.group_norm(torch.from_numpy(x), groups, tw, tb, 1e-5)
    ty.backward(torch.from_numpy(g))
    np.testing.assert_allclose(backend.to_numpy(res.outputs["y"]), ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(grads["gamma"]).reshape(c), tw.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(backend.to_numpy(grads["beta"]).reshape(c), tb.grad.numpy(), rtol=1e-10)


@pytest.mark.parametrize("op,inputs,attrs,opset,n_out,fragment", [
    ("LayerNormalization", [np.ones((2, 3)), np.ones(3)], {"stash_type": 11}, 17, 1, "stash_type"),
    ("Gather", [np.ones((2, 3)), i64(3)], {"axis": 1}, 13, 1, "index 3"),
    ("Gelu", [np.ones(3)], {"approximate": "sigmoid"}, 20, 1, "approximate"),
    ("Split", [np.ones((2, 5))], {"axis": 1}, 13, 2, "equal parts"),
    ("Cast", [np.ones(3)], {"to": 8}, 13, 1, "to=8"),
])
def test_torch_unsupported_values_are_clear_dlerrors(op, inputs, attrs, opset, n_out, fragment):
    from .test_ops_issue15_numpy import Case
    case = Case("err", op, lambda r: inputs, attrs, opset=opset, n_out=n_out)
    with pytest.raises(DLError, match=fragment) as info:
        run_program("torch", case, inputs, training=False, dtype="float64")
    assert op in str(info.value)
