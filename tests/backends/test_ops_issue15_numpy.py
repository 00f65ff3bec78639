"""The numpy kernels added for issue 15 (normalisation, GELU parts, indexing, shape
computations, reductions) against three independent references:

* onnx.reference.ReferenceEvaluator on a one-node model, in float32 and in float64;
* central finite differences of the kernel's own forward (float64) for every backward,
  summed over every float output (Split has several);
* torch autograd in float64 (values and gradients to 1e-10) where torch has the function.

CASES is shared with test_ops_issue15_torch.py, which holds the torch backend to the same
cases and to the numpy backend.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from dlbatch.backends.numpy_cpu.ops import KERNELS
from dlbatch.core.backend import OpContext
from dlbatch.core.errors import DLError

torch = pytest.importorskip("torch")
F = torch.nn.functional

KERNEL = {k.op_type: k for k in KERNELS}
I64_MAX = 2 ** 63 - 1


def i64(*v):
    return np.array(v, dtype=np.int64)


def n(r, *shape):
    return r.standard_normal(shape)


def pos(r, *shape):
    return r.uniform(0.5, 2.0, shape)


def nz(r, *shape):
    return r.uniform(0.5, 2.0, shape) * r.choice([-1.0, 1.0], shape)


@dataclass
class Case:
    id: str
    op: str
    make: Callable[[np.random.Generator], list]  # float64 inputs (ints and bools stay as they are)
    attrs: dict = field(default_factory=dict)
    opset: int = 17
    n_out: int = 1
    diff: tuple | None = None  # inputs whose gradient is checked (default: every float input)
    torch_fn: Callable | None = None  # torch tensors (inputs in order) -> output or tuple of outputs
    onnx_ref: bool = True
    keep_dtype: bool = True  # float32 in -> float32 out (Cast to another float type keeps the input's)
    ref_f64_tol: float = 1e-12  # onnx.reference computes Erf (and so Gelu) in float32 even for doubles

    def inputs(self, seed=0):
        return self.make(np.random.default_rng(seed))

    def float_inputs(self, xs):
        if self.diff is not None:
            return list(self.diff)
        return [i for i, v in enumerate(xs) if v is not None and np.issubdtype(v.dtype, np.floating)]

    def __str__(self):
        return self.id


class _Ctx(OpContext):
    """OpContext plus the node's output count (the torch context has it; Split reads it)."""


def run(op, inputs, attrs, *, opset=17, training=True, needs=None, n_out=1):
    flags = tuple(needs) if needs is not None else tuple(
        v is not None and np.issubdtype(v.dtype, np.floating) for v in inputs)
    ctx = _Ctx(training=training, needs_input_grad=flags, rng=np.random.default_rng(0), opset=opset)
    ctx.num_outputs = n_out
    outs, saved = KERNEL[op].forward(ctx, list(inputs), dict(attrs))
    return outs, saved, ctx


def cls_token(x, idx):
    return x[:, idx]


def ln_ref(shape_axes, eps=1e-5):
    def fn(x, w, b=None):
        return F.layer_norm(x, x.shape[shape_axes:], w, b, eps)
    return fn


CASES = [
    # LayerNormalization
    Case("ln-last-axis", "LayerNormalization", lambda r: [n(r, 2, 5, 8) * 2 + 1, n(r, 8), n(r, 8)],
         torch_fn=ln_ref(-1)),
    Case("ln-axis1-eps", "LayerNormalization", lambda r: [n(r, 2, 3, 4, 5), n(r, 3, 4, 5), n(r, 3, 4, 5)],
         {"axis": 1, "epsilon": 1e-3}, torch_fn=ln_ref(1, 1e-3)),
    Case("ln-axis-neg2-nobias", "LayerNormalization", lambda r: [n(r, 3, 4, 6), n(r, 4, 6)],
         {"axis": -2, "stash_type": 1}, torch_fn=ln_ref(-2)),
    Case("ln-scale-broadcast", "LayerNormalization", lambda r: [n(r, 2, 3, 4), n(r, 1, 4), n(r, 3, 1)],
         {"axis": -2}, torch_fn=lambda x, w, b: F.layer_norm(x, (3, 4)) * w + b),
    # InstanceNormalization
    Case("in-4d", "InstanceNormalization", lambda r: [n(r, 2, 3, 4, 5) * 3 - 1, n(r, 3), n(r, 3)],
         torch_fn=lambda x, w, b: F.instance_norm(x, weight=w, bias=b, eps=1e-5)),
    Case("in-3d-eps", "InstanceNormalization", lambda r: [n(r, 2, 4, 7), n(r, 4), n(r, 4)], {"epsilon": 1e-3},
         torch_fn=lambda x, w, b: F.instance_norm(x, weight=w, bias=b, eps=1e-3)),
    # GELU parts
    Case("erf", "Erf", lambda r: [n(r, 3, 4, 5) * 2], ref_f64_tol=1e-7, torch_fn=torch.erf),
    Case("erf-wide", "Erf", lambda r: [np.linspace(-7, 7, 57).reshape(3, 19)], ref_f64_tol=1e-7, torch_fn=torch.erf),
    Case("gelu-exact", "Gelu", lambda r: [n(r, 4, 6) * 2], opset=20, ref_f64_tol=1e-7, torch_fn=F.gelu),
    Case("gelu-tanh", "Gelu", lambda r: [n(r, 4, 6) * 2], {"approximate": "tanh"}, opset=20,
         ref_f64_tol=1e-7, torch_fn=lambda x: F.gelu(x, approximate="tanh")),
    # Pow and friends
    Case("pow-const2", "Pow", lambda r: [n(r, 3, 5), np.array(2.0)], diff=(0,), torch_fn=lambda a, b: a ** 2),
    Case("pow-const0.5", "Pow", lambda r: [pos(r, 3, 5), np.array(0.5)], diff=(0,),
         torch_fn=lambda a, b: a ** 0.5),
    Case("pow-const3", "Pow", lambda r: [n(r, 3, 5), np.array(3.0)], diff=(0,), torch_fn=lambda a, b: a ** 3),
    Case("pow-tensor-both", "Pow", lambda r: [pos(r, 2, 3, 4), n(r, 3, 1)], torch_fn=torch.pow),
    Case("pow-int-exponent", "Pow", lambda r: [n(r, 3, 4), np.array(2, np.int64)], diff=(0,),
         torch_fn=lambda a, b: a ** 2),
    Case("pow-int-base", "Pow", lambda r: [i64(2, 3, 4), np.array([2.0, 0.5, 1.0])], diff=()),
    Case("pow-scalar-base-broadcast", "Pow", lambda r: [pos(r, 1), n(r, 2, 3)], torch_fn=torch.pow),
    Case("sqrt", "Sqrt", lambda r: [pos(r, 3, 4)], torch_fn=torch.sqrt),
    Case("exp", "Exp", lambda r: [n(r, 3, 4)], torch_fn=torch.exp),
    Case("log", "Log", lambda r: [pos(r, 3, 4)], torch_fn=torch.log),
    Case("neg", "Neg", lambda r: [n(r, 3, 4)], torch_fn=torch.neg),
    Case("abs", "Abs", lambda r: [nz(r, 3, 4)], torch_fn=torch.abs),
    Case("reciprocal", "Reciprocal", lambda r: [nz(r, 3, 4)], torch_fn=torch.reciprocal),
    # Gather
    Case("gather-axis0-repeat-neg", "Gather", lambda r: [n(r, 5, 4), i64(0, -1, 2, 2)], diff=(0,),
         torch_fn=lambda d, i: d[torch.where(i < 0, i + 5, i)]),
    Case("gather-cls-token", "Gather", lambda r: [n(r, 2, 5, 3), np.array(0, np.int64)], {"axis": 1},
         diff=(0,), torch_fn=lambda d, i: d[:, 0]),
    Case("gather-neg-axis-2d-idx", "Gather", lambda r: [n(r, 2, 3, 6), np.array([[1, 0], [5, -2]], np.int64)],
         {"axis": -1}, diff=(0,), torch_fn=lambda d, i: d[..., torch.where(i < 0, i + 6, i)]),
    Case("gather-shape-vector", "Gather", lambda r: [i64(4, 3, 8, 8), np.array(0, np.int64)], diff=()),
    # Slice / Split
    Case("slice-basic", "Slice", lambda r: [n(r, 4, 6), i64(1), i64(3), i64(1)], diff=(0,),
         torch_fn=lambda x, *a: x[:, 1:3]),
    Case("slice-neg-steps", "Slice", lambda r: [n(r, 5, 6, 3), i64(-1, 0), i64(-I64_MAX, 3), i64(0, 2), i64(-2, 2)],
         diff=(0,), torch_fn=lambda x, *a: x.flip(0)[::2][:, :, 0:3:2]),
    Case("slice-end-max", "Slice", lambda r: [n(r, 3, 5), i64(2), i64(I64_MAX), i64(-1)], diff=(0,),
         torch_fn=lambda x, *a: x[:, 2:]),
    Case("slice-opset9-attrs", "Slice", lambda r: [n(r, 4, 5)], {"starts": [1, -3], "ends": [3, 100], "axes": [0, 1]},
         opset=9, torch_fn=lambda x: x[1:3, 2:]),
    Case("slice-shape-vector", "Slice", lambda r: [i64(4, 3, 8, 8), i64(1), i64(3)], diff=()),
    Case("split-sizes-input", "Split", lambda r: [n(r, 2, 7, 3), i64(2, 5)], {"axis": 1}, opset=13, n_out=2,
         diff=(0,), torch_fn=lambda x, s: torch.split(x, [2, 5], dim=1)),
    Case("split-opset18-num-outputs", "Split", lambda r: [n(r, 2, 7)], {"axis": -1, "num_outputs": 3},
         opset=18, n_out=3, torch_fn=lambda x: torch.split(x, 3, dim=-1)),
    Case("split-opset11-attr", "Split", lambda r: [n(r, 3, 4)], {"split": [1, 2]}, opset=11, n_out=2,
         torch_fn=lambda x: torch.split(x, [1, 2])),
    Case("split-equal-by-outputs", "Split", lambda r: [n(r, 6, 2)], opset=13, n_out=3,
         torch_fn=lambda x: torch.split(x, 2)),
    # Expand / Where / Equal
    Case("expand-cls-over-batch", "Expand", lambda r: [n(r, 1, 1, 4), i64(3, 1, 1)], diff=(0,),
         torch_fn=lambda x, s: x.expand(3, 1, 4)),
    Case("expand-grow-rank", "Expand", lambda r: [n(r, 3, 1), i64(2, 1, 6)], diff=(0,),
         torch_fn=lambda x, s: x.expand(2, 3, 6)),
    Case("where-broadcast", "Where", lambda r: [n(r, 2, 1, 4) > 0, n(r, 2, 3, 4), n(r, 4)], diff=(1, 2),
         torch_fn=torch.where),
    Case("where-scalar-branch", "Where", lambda r: [n(r, 3, 4) > 0, n(r, 3, 4), np.array(-1e4)], diff=(1, 2),
         torch_fn=torch.where),
    Case("where-int", "Where", lambda r: [np.array([True, False, True]), i64(1, 2, 3), i64(-1)], diff=()),
    Case("equal-int", "Equal", lambda r: [i64(4, -1, 3), i64(4, 3, -1)], diff=()),
    Case("equal-float-broadcast", "Equal", lambda r: [np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([2.0])],
         diff=()),
    # shape computations
    Case("shape", "Shape", lambda r: [n(r, 2, 3, 4)], diff=()),
    Case("shape-start", "Shape", lambda r: [n(r, 2, 3, 4)], {"start": 1}, opset=15, diff=()),
    Case("shape-neg-range", "Shape", lambda r: [n(r, 2, 3, 4, 5)], {"start": -3, "end": -1}, opset=15, diff=()),
    Case("constantofshape-default", "ConstantOfShape", lambda r: [i64(2, 3)], diff=()),
    Case("constantofshape-int", "ConstantOfShape", lambda r: [i64(3)], {"value": np.array([7], np.int64)},
         diff=()),
    Case("constantofshape-float", "ConstantOfShape", lambda r: [i64(2, 1, 2)],
         {"value": np.array([1.5], np.float32)}, diff=()),
    Case("range-int", "Range", lambda r: [np.array(0, np.int64), np.array(7, np.int64), np.array(2, np.int64)],
         diff=()),
    Case("range-float", "Range", lambda r: [np.array(1.0), np.array(2.0), np.array(0.3)], diff=()),
    Case("cast-int-to-float", "Cast", lambda r: [i64(3, -2, 5)], {"to": TensorProto.FLOAT}, diff=()),
    Case("cast-float-to-int", "Cast", lambda r: [n(r, 3, 4) * 5], {"to": TensorProto.INT64}, diff=()),
    Case("cast-bool-to-float", "Cast", lambda r: [n(r, 5) > 0], {"to": TensorProto.FLOAT}, diff=()),
    Case("cast-float-to-bool", "Cast", lambda r: [np.array([0.0, 1.5, -2.0])], {"to": TensorProto.BOOL}, diff=()),
    Case("cast-float-keeps-precision", "Cast", lambda r: [n(r, 3, 4)], {"to": TensorProto.DOUBLE},
         keep_dtype=False, torch_fn=lambda x: x),
    Case("mod-int", "Mod", lambda r: [i64(7, -7, 7, -7), i64(3, 3, -3, -3)], diff=()),
    Case("mod-fmod-float", "Mod", lambda r: [n(r, 3, 4) * 5, nz(r, 4)], {"fmod": 1}, torch_fn=torch.fmod),
    # reductions
    Case("reducesum-opset13-input", "ReduceSum", lambda r: [n(r, 2, 3, 4), i64(1)], {"keepdims": 0}, opset=13,
         torch_fn=lambda x, a: x.sum(1)),
    Case("reducesum-all", "ReduceSum", lambda r: [n(r, 2, 3, 4)], opset=13, torch_fn=lambda x: x.sum().reshape(1, 1, 1)),
    Case("reducesum-noop", "ReduceSum", lambda r: [n(r, 2, 3), np.zeros(0, np.int64)],
         {"noop_with_empty_axes": 1}, opset=13, torch_fn=lambda x, a: x),
    Case("reducesum-opset11-attr", "ReduceSum", lambda r: [n(r, 2, 3, 4)], {"axes": [-1, 0]}, opset=11,
         torch_fn=lambda x: x.sum((0, 2), keepdim=True)),
    Case("reducemean-opset18-two-axes", "ReduceMean", lambda r: [n(r, 2, 3, 4, 5), i64(-1, 1)], opset=18,
         torch_fn=lambda x, a: x.mean((1, 3), keepdim=True)),
    Case("reducemean-opset18-noop", "ReduceMean", lambda r: [n(r, 2, 3)], {"noop_with_empty_axes": 1}, opset=18,
         torch_fn=lambda x: x),
    Case("reducemax-opset18-input", "ReduceMax", lambda r: [n(r, 2, 3, 4), i64(1)], {"keepdims": 0}, opset=18,
         torch_fn=lambda x, a: x.amax(1)),
    Case("reducemax-opset13-attr", "ReduceMax", lambda r: [n(r, 2, 3, 4)], {"axes": [0, 2]}, opset=13,
         torch_fn=lambda x: x.amax((0, 2), keepdim=True)),
    Case("reducemax-empty-axis", "ReduceMax", lambda r: [np.zeros((2, 0, 3)), i64(1)], opset=18, diff=()),
    # existing kernels in transformer shapes
    Case("matmul-ntd-de", "MatMul", lambda r: [n(r, 2, 5, 4), n(r, 4, 6)], torch_fn=torch.matmul),
    Case("matmul-attention-scores", "MatMul", lambda r: [n(r, 2, 3, 5, 4), n(r, 2, 3, 4, 5)], torch_fn=torch.matmul),
    Case("softmax-last-4d", "Softmax", lambda r: [n(r, 2, 3, 5, 5)], {"axis": -1}, opset=13,
         torch_fn=lambda x: torch.softmax(x, -1)),
    Case("transpose-heads", "Transpose", lambda r: [n(r, 2, 5, 3, 4)], {"perm": [0, 2, 1, 3]},
         torch_fn=lambda x: x.permute(0, 2, 1, 3)),
    Case("div-3d-broadcast", "Div", lambda r: [n(r, 2, 5, 4), nz(r, 2, 5, 1)], torch_fn=torch.div),
    Case("mul-3d-param", "Mul", lambda r: [n(r, 2, 5, 4), n(r, 4)], torch_fn=torch.mul),
    Case("add-pos-embedding", "Add", lambda r: [n(r, 2, 5, 4), n(r, 1, 5, 4)], torch_fn=torch.add),
    Case("sub-3d-broadcast", "Sub", lambda r: [n(r, 2, 5, 4), n(r, 2, 5, 1)], torch_fn=torch.sub),
    Case("tanh", "Tanh", lambda r: [n(r, 2, 5, 4)], torch_fn=torch.tanh),
]


# --------------------------------------------------------------------------- ONNX reference

def onnx_reference(op, inputs, attrs, opset, n_out=1):
    names = [f"in{i}" if v is not None else "" for i, v in enumerate(inputs)]
    attrs = {k: numpy_helper.from_array(v) if isinstance(v, np.ndarray) else v for k, v in attrs.items()}
    node = helper.make_node(op, names, [f"y{k}" for k in range(n_out)], **attrs)
    graph = helper.make_graph(
        [node], "one_node",
        [helper.make_tensor_value_info(nm, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
         for nm, v in zip(names, inputs) if nm],
        [helper.make_tensor_value_info(f"y{k}", TensorProto.UNDEFINED, None) for k in range(n_out)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    feeds = {nm: v for nm, v in zip(names, inputs) if nm}
    return ReferenceEvaluator(model).run(None, feeds)


def as_dtype(xs, dtype):
    return [v.astype(dtype) if v is not None and v.dtype == np.float64 else v for v in xs]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", [c for c in CASES if c.onnx_ref], ids=str)
def test_forward_matches_onnx_reference(case, dtype):
    xs = as_dtype(case.inputs(), dtype)
    # ONNX stores float attributes as float32: read them back as the importer would
    attrs = {k: float(np.float32(v)) if isinstance(v, float) else v for k, v in case.attrs.items()}
    outs, saved, ctx = run(case.op, xs, attrs, opset=case.opset, n_out=case.n_out, training=False)
    refs = onnx_reference(case.op, xs, case.attrs, case.opset, case.n_out)
    assert len(outs) >= case.n_out
    tol = 1e-5 if dtype == np.float32 else case.ref_f64_tol
    for y, ref in zip(outs, refs):
        assert y.shape == ref.shape, (case.id, y.shape, ref.shape)
        if case.keep_dtype:
            assert y.dtype == ref.dtype, (case.id, y.dtype, ref.dtype)
        if ref.dtype.kind in "fc":
            np.testing.assert_allclose(y, ref, rtol=tol, atol=tol, err_msg=case.id)
        else:
            np.testing.assert_array_equal(y, ref, err_msg=case.id)


# --------------------------------------------------------------------------- finite differences

def _loss_weights(outs, seed=1):
    r = np.random.default_rng(seed)
    return [r.standard_normal(y.shape) if np.issubdtype(y.dtype, np.floating) else None for y in outs]


@pytest.mark.parametrize("case", [c for c in CASES if c.float_inputs(c.inputs())], ids=str)
def test_backward_matches_finite_differences(case, eps=1e-6):
    xs = case.inputs()
    outs, saved, ctx = run(case.op, xs, case.attrs, opset=case.opset, n_out=case.n_out)
    outs = outs[:case.n_out]
    gs = _loss_weights(outs)
    grads = KERNEL[case.op].backward(ctx, saved, gs, case.attrs)
    assert len(grads) >= len(xs)

    def loss(vals):
        ys = run(case.op, vals, case.attrs, opset=case.opset, n_out=case.n_out)[0]
        return sum(float(np.sum(g * y)) for g, y in zip(gs, ys) if g is not None)

    pick = np.random.default_rng(2)
    for i in case.float_inputs(xs):
        ga = grads[i]
        assert ga is not None, f"{case.id}: no gradient for input {i}"
        assert ga.shape == xs[i].shape and ga.dtype == np.float64, (case.id, i, ga.shape, ga.dtype)
        idx = np.arange(xs[i].size)
        if idx.size > 60:
            idx = pick.choice(idx, 60, replace=False)
        num = np.empty(idx.size)
        for k, j in enumerate(idx):
            vals = [v.copy() if v is not None else None for v in xs]
            vals[i].reshape(-1)[j] += eps
            fp = loss(vals)
            vals[i].reshape(-1)[j] -= 2 * eps
            num[k] = (fp - loss(vals)) / (2 * eps)
        np.testing.assert_allclose(np.asarray(ga).reshape(-1)[idx], num, rtol=1e-5, atol=1e-6,
                                   err_msg=f"{case.id}: gradient of input {i}")
    for i, v in enumerate(xs):
        if v is not None and not np.issubdtype(v.dtype, np.floating):
            assert grads[i] is None, f"{case.id}: non-float input {i} got a gradient"


# --------------------------------------------------------------------------- torch autograd

def torch_values_and_grads(case, xs, gs):
    """torch's outputs and the gradients of sum(g * y) w.r.t. the case's float inputs."""
    diff = case.float_inputs(xs)
    tx = [None if v is None else torch.from_numpy(np.array(v)) for v in xs]
    for i in diff:
        tx[i].requires_grad_(True)
    ty = case.torch_fn(*tx)
    ty = list(ty) if isinstance(ty, (tuple, list)) else [ty]
    total = sum((y * torch.from_numpy(g)).sum() for y, g in zip(ty, gs) if g is not None)
    grads = torch.autograd.grad(total, [tx[i] for i in diff], allow_unused=True) if diff else []
    return [y.detach().numpy() for y in ty], dict(zip(diff, grads))


@pytest.mark.parametrize("case", [c for c in CASES if c.torch_fn is not None], ids=str)
def test_values_and_gradients_match_torch_float64(case):
    xs = case.inputs(seed=3)
    outs, saved, ctx = run(case.op, xs, case.attrs, opset=case.opset, n_out=case.n_out)
    outs = outs[:case.n_out]
    gs = _loss_weights(outs, seed=5)
    grads = KERNEL[case.op].backward(ctx, saved, gs, case.attrs)
    ty, tgrads = torch_values_and_grads(case, xs, gs)
    for y, t in zip(outs, ty):
        np.testing.assert_allclose(y, t, rtol=1e-10, atol=1e-12, err_msg=f"{case.id} value")
    for i, tg in tgrads.items():
        expect = np.zeros_like(xs[i]) if tg is None else tg.numpy()
        np.testing.assert_allclose(grads[i], expect, rtol=1e-10, atol=1e-12, err_msg=f"{case.id} grad {i}")


# --------------------------------------------------------------------------- specifics

def test_layernorm_mean_and_invstddev_outputs_match_reference():
    r = np.random.default_rng(0)
    xs = [r.standard_normal((2, 3, 4)).astype(np.float32), r.standard_normal(4).astype(np.float32)]
    outs = run("LayerNormalization", xs, {}, n_out=3, training=False)[0]
    refs = onnx_reference("LayerNormalization", xs, {}, 17, 3)
    for y, ref in zip(outs, refs):
        assert y.shape == ref.shape
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


def test_layernorm_gradient_through_mean_output_is_a_clear_error():
    r = np.random.default_rng(0)
    xs = [r.standard_normal((2, 4)), r.standard_normal(4)]
    outs, saved, ctx = run("LayerNormalization", xs, {}, n_out=3)
    with pytest.raises(DLError, match="LayerNormalization.*Mean"):
        KERNEL["LayerNormalization"].backward(ctx, saved, [np.ones((2, 4)), np.ones((2, 1)), None], {})


def test_reducemax_ties_share_the_gradient_like_torch_amax():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    outs, saved, ctx = run("ReduceMax", [x, i64(1)], {"keepdims": 0}, opset=18)
    g = np.array([1.0, 3.0])
    dx = KERNEL["ReduceMax"].backward(ctx, saved, [g], {})[0]
    tx = torch.from_numpy(x).requires_grad_(True)
    tx.amax(1).backward(torch.from_numpy(g))
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=0, atol=1e-15)


def test_erf_is_accurate_in_float64_everywhere():
    from dlbatch.backends.numpy_cpu.ops.pointwise import erf
    x = np.concatenate([np.linspace(-9, 9, 20001), np.geomspace(1e-300, 1.0, 400), -np.geomspace(1e-30, 1, 50)])
    ref = np.array([math.erf(v) for v in x])
    got = erf(x)
    assert np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-300)) < 1e-14
    assert erf(x.astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize("op,inputs,attrs,opset,fragment", [
    ("LayerNormalization", [np.ones((2, 3)), np.ones(3)], {"stash_type": 11}, 17, "stash_type"),
    ("Gather", [np.ones((2, 3)), i64(3)], {"axis": 1}, 13, "index 3"),
    ("Gather", [np.ones((2, 3)), i64(-4)], {"axis": 1}, 13, "index -4"),
    ("Gelu", [np.ones(3)], {"approximate": "sigmoid"}, 20, "approximate"),
    ("Slice", [np.ones((2, 3)), i64(0), i64(1), i64(1), i64(0)], {}, 13, "step 0"),
    ("Split", [np.ones((2, 5))], {"axis": 1, "split": [2, 2]}, 11, "split"),
    ("Split", [np.ones((2, 5))], {"axis": 1}, 13, "equal parts"),
    ("Expand", [np.ones((2, 3)), i64(4, 3)], {}, 13, "broadcast"),
    ("Cast", [np.ones(3)], {"to": 8}, 13, "to=8"),
    ("InstanceNormalization", [np.ones((2, 3)), np.ones(3), np.ones(3)], {}, 13, "rank"),
])
def test_unsupported_values_are_clear_dlerrors(op, inputs, attrs, opset, fragment):
    with pytest.raises(DLError, match=fragment) as info:
        run(op, inputs, attrs, opset=opset, n_out=2)
    assert op in str(info.value)
