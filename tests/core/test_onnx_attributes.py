"""The shared ONNX attribute rules (dlbatch.core.onnx_attributes) against independent references.

Every expected value comes from outside dlbatch: ONNX's own shape inference (the C++ code the
onnx checker runs), onnx.reference.ReferenceEvaluator, onnxruntime, torch.nn.functional and
the operator schemas in onnx.defs. Which reference checks what, and why:

* Conv: output shapes from the ReferenceEvaluator and shape inference; the pads (including the
  odd SAME_* split) by running the ReferenceEvaluator once with auto_pad and once with the pads
  the rule computed (equal values only if the pads are equal); torch for symmetric pads.
* MaxPool/AveragePool: output shapes from shape inference, over auto_pad x strides x dilations
  x ceil_mode x pads; torch's pools for symmetric pads with ceil_mode. The ReferenceEvaluator's
  pools are not used for pools: they disagree with the spec's formulas in many corners
  (SAME_LOWER with strides, asymmetric pads, dilations, AveragePool in ceil mode), and so does
  onnxruntime (SAME_* with dilations), see test_reference_evaluator_pools_are_not_a_reference.
* ConvTranspose: output shapes for pads/VALID from shape inference and torch; the pads from
  SAME_* and output_shape by running onnxruntime once with those and once with the computed
  pads, and the ReferenceEvaluator's shapes for SAME_*.
"""
from __future__ import annotations

import itertools
import warnings

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, shape_inference
from onnx.reference import ReferenceEvaluator

from dlbatch.core import onnx_attributes as oa
from dlbatch.core.errors import DLPluginError

OPSET = 22
SIZES = (4, 5, 7, 8)
KERNELS = (1, 2, 3)
STRIDES = (1, 2, 3)
DILATIONS = (1, 2)
PADS = ((0, 0), (1, 0), (0, 1), (1, 1), (2, 1))
AUTO_PADS = ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")


# -- helpers ---------------------------------------------------------------------------------------

def _model(op: str, inputs: dict, attrs: dict, opset: int = OPSET, n_outputs: int = 1) -> onnx.ModelProto:
    """One-node model whose inputs have the shapes of the given arrays (None: an omitted input)."""
    names = [name if value is not None else "" for name, value in inputs.items()]
    outputs = [f"y{i}" for i in range(n_outputs)]
    node = helper.make_node(op, names, outputs, **attrs)
    infos = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
             for name, v in inputs.items() if v is not None]
    graph = helper.make_graph([node], "g", infos, [helper.make_tensor_value_info(o, TensorProto.FLOAT, None)
                                                    for o in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model


def _reference(model: onnx.ModelProto, inputs: dict) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ReferenceEvaluator(model).run(None, {k: v for k, v in inputs.items() if v is not None})[0]


def _inferred_spatial_shape(model: onnx.ModelProto) -> list[int]:
    """Output spatial sizes from ONNX shape inference ([] when it cannot tell)."""
    inferred = shape_inference.infer_shapes(model, strict_mode=True)
    dims = inferred.graph.output[0].type.tensor_type.shape.dim
    return [d.dim_value for d in dims][2:]


def _rand(*shape) -> np.ndarray:
    return np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)


def _window_attrs(auto_pad: str, pads, **extra) -> dict:
    attrs = dict(auto_pad=auto_pad, **extra)
    if auto_pad == "NOTSET":
        attrs["pads"] = list(pads)
    return attrs


def _grid(with_pads=True):
    """(size, kernel, stride, dilation, auto_pad, (begin, end)) for 1-D windows that fit."""
    for size, k, s, d, mode, pads in itertools.product(SIZES, KERNELS, STRIDES, DILATIONS, AUTO_PADS, PADS):
        if mode != "NOTSET" and pads != (0, 0):
            continue
        if not with_pads and pads != (0, 0):
            continue
        k_eff = (k - 1) * d + 1
        if max(pads) >= k_eff or k_eff > size + sum(pads):
            continue  # a window entirely in the padding, or none at all
        yield size, k, s, d, mode, pads


# -- Conv ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("auto_pad", AUTO_PADS)
def test_conv_output_shapes_match_reference_evaluator_and_shape_inference(auto_pad):
    mismatches = []
    for size, k, s, d, mode, pads in _grid():
        if mode != auto_pad:
            continue
        attrs = _window_attrs(mode, pads, strides=[s], dilations=[d])
        inputs = {"x": _rand(1, 1, size), "w": _rand(1, 1, k)}
        model = _model("Conv", inputs, attrs)
        expected = list(_reference(model, inputs).shape[2:])
        got = oa.sliding_windows("Conv", attrs, [size], [k], [s], [d]).out
        if got != expected or _inferred_spatial_shape(model) != expected:
            mismatches.append((size, k, s, d, pads, got, expected))
    assert not mismatches


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_conv_auto_pads_give_the_reference_values(auto_pad):
    """Running the reference with auto_pad and with the computed explicit pads gives the same
    output only if the pads (odd one at the end for UPPER, at the start for LOWER) agree."""
    checked = 0
    for size, k, s, d, mode, _ in _grid(with_pads=False):
        if mode != auto_pad:
            continue
        inputs = {"x": _rand(1, 1, size, size + 1), "w": _rand(1, 1, k, k)}
        attrs = dict(auto_pad=mode, strides=[s, s], dilations=[d, d])
        windows = oa.sliding_windows("Conv", attrs, [size, size + 1], [k, k], [s, s], [d, d])
        explicit = dict(pads=windows.begins + windows.ends, strides=[s, s], dilations=[d, d])
        want = _reference(_model("Conv", inputs, attrs), inputs)
        got = _reference(_model("Conv", inputs, explicit), inputs)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=str((size, k, s, d)))
        checked += 1
    assert checked > 30


def test_conv_output_sizes_match_torch_for_symmetric_pads():
    for size, k, s, d, p in itertools.product(SIZES, KERNELS, STRIDES, DILATIONS, (0, 1, 2)):
        if (k - 1) * d + 1 > size + 2 * p:
            continue
        attrs = dict(pads=[p, p], strides=[s], dilations=[d])
        y = F.conv1d(torch.zeros(1, 1, size), torch.zeros(1, 1, k), stride=s, padding=p, dilation=d)
        assert oa.sliding_windows("Conv", attrs, [size], [k], [s], [d]).out == [y.shape[2]], (size, k, s, d, p)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_same_upper_pads_match_torch_same_padding():
    """torch's padding='same' (stride 1) puts the odd pad at the end, like SAME_UPPER."""
    x = torch.from_numpy(_rand(1, 1, 9))
    for k, d in itertools.product((1, 2, 3, 4), (1, 2, 3)):
        w = torch.from_numpy(_rand(1, 1, k))
        begins, ends, out = oa.sliding_windows("Conv", dict(auto_pad="SAME_UPPER"), [9], [k], [1], [d])
        want = F.conv1d(x, w, padding="same", dilation=d)
        got = F.conv1d(F.pad(x, (begins[0], ends[0])), w, dilation=d)
        assert out == [9]
        torch.testing.assert_close(got, want)


# -- pools -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("ceil_mode", [0, 1])
@pytest.mark.parametrize("auto_pad", AUTO_PADS)
def test_pool_output_shapes_match_shape_inference(op, ceil_mode, auto_pad):
    mismatches, checked = [], 0
    for size, k, s, d, mode, pads in _grid():
        if mode != auto_pad:
            continue
        attrs = _window_attrs(mode, pads, kernel_shape=[k, k], strides=[s, s], dilations=[d, d],
                              ceil_mode=ceil_mode)
        if mode == "NOTSET":
            attrs["pads"] = [pads[0], pads[0], pads[1], pads[1]]
        model = _model(op, {"x": _rand(1, 1, size, size)}, attrs)
        expected = _inferred_spatial_shape(model)
        got = oa.sliding_windows(op, attrs, [size, size], [k, k], [s, s], [d, d], bool(ceil_mode)).out
        if got != expected:
            mismatches.append((size, k, s, d, pads, got, expected))
        checked += 1
    assert checked > 40 and not mismatches


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_pool_output_sizes_match_torch(ceil_mode):
    """torch pads symmetrically (at most half the kernel) and, in ceil mode, drops a window
    that would start in the end padding, as ONNX does."""
    for size, k, s, d in itertools.product(range(3, 10), KERNELS, STRIDES, DILATIONS):
        k_eff = (k - 1) * d + 1
        for p in range(0, k // 2 + 1):
            if k_eff > size + 2 * p:
                continue
            attrs = dict(pads=[p, p], kernel_shape=[k], strides=[s], dilations=[d])
            y = F.max_pool1d(torch.zeros(1, 1, size), k, s, p, d, ceil_mode=ceil_mode)
            got = oa.sliding_windows("MaxPool", attrs, [size], [k], [s], [d], ceil_mode).out
            assert got == [y.shape[2]], (size, k, s, d, p)
            if p == 0:  # VALID is the same as no padding, ceil mode included
                valid = oa.sliding_windows("MaxPool", dict(auto_pad="VALID"), [size], [k], [s], [d], ceil_mode)
                assert valid.out == [y.shape[2]] and valid.begins == valid.ends == [0]


def test_valid_ceil_mode_drops_a_window_that_starts_past_the_input():
    """The case the two backends used to disagree on: size 5, window 1, stride 3 has windows
    starting at 0 and 3; in ceil mode a third would start at 6, past the input."""
    attrs = dict(auto_pad="VALID", kernel_shape=[1, 1], strides=[3, 3], ceil_mode=1)
    expected = _inferred_spatial_shape(_model("MaxPool", {"x": _rand(1, 1, 5, 5)}, attrs))
    assert expected == [2, 2]
    assert oa.sliding_windows("MaxPool", attrs, [5, 5], [1, 1], [3, 3], [1, 1], True).out == expected
    assert list(F.max_pool2d(torch.zeros(1, 1, 5, 5), 1, 3, ceil_mode=True).shape[2:]) == expected


def test_reference_evaluator_pools_are_not_a_reference():
    """Why the pool tests above use shape inference and torch: the ReferenceEvaluator's MaxPool
    gives 1 window where the spec's SAME formula ceil(4 / 3) and shape inference give 2. If this
    starts failing, the evaluator was fixed and can join the pool tests."""
    attrs = dict(auto_pad="SAME_LOWER", kernel_shape=[2, 2], strides=[3, 3])
    x = _rand(1, 1, 4, 4)
    model = _model("MaxPool", {"x": x}, attrs)
    assert _inferred_spatial_shape(model) == [2, 2]
    assert list(_reference(model, {"x": x}).shape[2:]) != [2, 2]


# -- ConvTranspose -----------------------------------------------------------------------------------

def test_conv_transpose_shapes_with_pads_match_shape_inference_and_torch():
    checked = 0
    for size, k, s, d, mode, pads in _grid():
        if mode == "SAME_UPPER" or mode == "SAME_LOWER":
            continue
        for opad in range(max(s, d)):
            attrs = _window_attrs(mode, pads, strides=[s], dilations=[d], output_padding=[opad])
            got = oa.conv_transpose_windows("ConvTranspose", attrs, [size], [k], [s], [d])
            if min(got.out) <= 0:
                continue
            model = _model("ConvTranspose", {"x": _rand(1, 1, size), "w": _rand(1, 1, k)}, attrs)
            assert got.out == _inferred_spatial_shape(model), (size, k, s, d, pads, opad, mode)
            assert got.output_padding == [opad]
            if pads[0] == pads[1]:
                y = F.conv_transpose1d(torch.zeros(1, 1, size), torch.zeros(1, 1, k), stride=s,
                                       padding=pads[0] if mode == "NOTSET" else 0, output_padding=opad,
                                       dilation=d)
                assert got.out == [y.shape[2]], (size, k, s, d, pads, opad, mode)
            checked += 1
    assert checked > 100


def _ort_run(model: onnx.ModelProto, inputs: dict) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime")
    options = ort.SessionOptions()
    options.log_severity_level = 4
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, inputs)[0]


@pytest.mark.parametrize("auto_pad", ["NOTSET", "SAME_UPPER", "SAME_LOWER"])
def test_conv_transpose_pads_from_output_shape_and_same_match_onnxruntime(auto_pad):
    """onnxruntime with auto_pad / output_shape, and with the pads the rule computed, give the
    same output. (onnxruntime wants output_padding < stride, stricter than the spec.)"""
    checked = 0
    for size, k, s, d, extra in itertools.product((3, 4, 5), KERNELS, STRIDES, DILATIONS, (None, 0, 1, -1)):
        if auto_pad == "NOTSET" and extra is None:
            continue  # plain pads: covered above
        for opad in range(s):
            attrs = dict(auto_pad=auto_pad, strides=[s, s], dilations=[d, d], output_padding=[opad, opad])
            if extra is not None:
                attrs["output_shape"] = [size * s + extra, size * s + extra + 1]
            got = oa.conv_transpose_windows("ConvTranspose", attrs, [size, size], [k, k], [s, s], [d, d])
            if min(got.out) <= 0 or min(got.begins + got.ends) < 0:
                continue
            inputs = {"x": _rand(1, 1, size, size), "w": _rand(1, 1, k, k)}
            explicit = dict(pads=got.begins + got.ends, strides=[s, s], dilations=[d, d],
                            output_padding=[opad, opad])
            want = _ort_run(_model("ConvTranspose", inputs, attrs), inputs)
            assert list(want.shape[2:]) == got.out, (size, k, s, d, opad, extra)
            np.testing.assert_allclose(_ort_run(_model("ConvTranspose", inputs, explicit), inputs), want,
                                       rtol=1e-5, atol=1e-5, err_msg=str((size, k, s, d, opad, extra)))
            checked += 1
    assert checked > 50


def test_conv_transpose_same_output_is_input_times_stride_like_the_reference_evaluator():
    for size, k, s, d, mode in itertools.product((3, 4, 5), KERNELS, STRIDES, DILATIONS, ("SAME_UPPER", "SAME_LOWER")):
        attrs = dict(auto_pad=mode, strides=[s], dilations=[d])
        inputs = {"x": _rand(1, 1, size), "w": _rand(1, 1, k)}
        expected = list(_reference(_model("ConvTranspose", inputs, attrs), inputs).shape[2:])
        assert oa.conv_transpose_windows("ConvTranspose", attrs, [size], [k], [s], [d]).out == expected


# -- attribute reading and validation ------------------------------------------------------------------

def test_values_are_read_from_bytes_arrays_and_tensors():
    assert oa.text(b"SAME_UPPER") == "SAME_UPPER" and oa.text(None, "NOTSET") == "NOTSET"
    assert oa.int_list(np.array([[1], [2]], np.int64)) == [1, 2]
    assert oa.int_list(torch.tensor([3, 4])) == [3, 4]
    assert oa.int_list(np.int64(5)) == [5] and oa.int_list(None) is None
    assert oa.float_list(torch.tensor(0.25)) == [0.25]
    assert not oa.is_given(np.zeros(0)) and not oa.is_given(torch.zeros(0)) and not oa.is_given(None)
    assert oa.is_given(np.zeros(())) and oa.is_given(torch.zeros(1)) and oa.is_given(0.5)


@pytest.mark.parametrize("attrs,fragment", [
    (dict(auto_pad="SAME"), "auto_pad"),
    (dict(pads=[1, 1, 1]), "pads"),
    (dict(strides=[1, 1, 1]), "strides"),
])
def test_malformed_window_attributes_are_rejected_with_the_op_name(attrs, fragment):
    with pytest.raises(DLPluginError, match=fragment) as info:
        strides = oa.spatial_ints("Conv", attrs, "strides", 2, 1)
        oa.sliding_windows("Conv", attrs, [5, 5], [3, 3], strides, [1, 1])
    assert "Conv" in str(info.value)


def test_conv_kernel_shape_must_match_the_weight():
    assert oa.conv_kernel_shape("Conv", {}, (3, 2)) == [3, 2]
    assert oa.conv_kernel_shape("Conv", dict(kernel_shape=[3, 2]), (3, 2)) == [3, 2]
    with pytest.raises(DLPluginError, match="kernel_shape"):
        oa.conv_kernel_shape("Conv", dict(kernel_shape=[3, 3]), (3, 2))
    with pytest.raises(DLPluginError, match="kernel_shape"):
        oa.pool_kernel_shape("MaxPool", {})


# -- operands that moved from attributes to inputs -----------------------------------------------------

# the input's name in the schema where it differs from the attribute's
_INPUT_NAMES = {("Pad", "value"): "constant_value"}


@pytest.mark.parametrize("op,name", sorted(oa.MOVED_TO_INPUT))
def test_moved_operands_match_the_onnx_schemas(op, name):
    """The operand is an attribute in the schema just before `since` and input `index` from it."""
    index, since = oa.MOVED_TO_INPUT[(op, name)]
    before = onnx.defs.get_schema(op, since - 1)
    after = onnx.defs.get_schema(op, since)
    assert after.since_version == since
    assert name in before.attributes and name not in after.attributes
    assert after.inputs[index].name == _INPUT_NAMES.get((op, name), name)


def test_operand_reads_the_attribute_before_and_the_input_from_the_opset():
    attrs = dict(axes=[0])
    inputs = [None, np.array([1])]
    assert oa.operand("Squeeze", "axes", 12, attrs, inputs) == [0]
    assert oa.operand("Squeeze", "axes", 13, attrs, inputs).tolist() == [1]
    assert oa.operand("Squeeze", "axes", 13, attrs, [None], default="absent") == "absent"


def _reference_shape(op, inputs: dict, attrs: dict, opset: int) -> list[int]:
    return list(_reference(_model(op, inputs, attrs, opset), inputs).shape)


def _as_inputs(inputs: dict) -> list:
    return list(inputs.values())


I64 = np.int64


@pytest.mark.parametrize("opset,attrs,extra", [
    (11, dict(axes=[1, -1]), {}),
    (13, {}, {"axes": np.array([1, -1], I64)}),
    (13, {}, {}),
])
def test_squeeze_axes_match_the_reference(opset, attrs, extra):
    inputs = {"x": _rand(2, 1, 3, 1), **extra}
    axes = oa.squeeze_axes(opset, attrs, _as_inputs(inputs), (2, 1, 3, 1))
    expected = _reference_shape("Squeeze", inputs, attrs, opset)
    assert [s for i, s in enumerate((2, 1, 3, 1)) if i not in axes] == expected


@pytest.mark.parametrize("opset,attrs,extra", [
    (11, dict(axes=[0, -1]), {}),
    (13, {}, {"axes": np.array([-1, 1], I64)}),
])
def test_unsqueeze_axes_match_the_reference(opset, attrs, extra):
    inputs = {"x": _rand(2, 3), **extra}
    shape = [2, 3]
    for a in oa.unsqueeze_axes(opset, attrs, _as_inputs(inputs), 2):
        shape.insert(a, 1)
    assert shape == _reference_shape("Unsqueeze", inputs, attrs, opset)


@pytest.mark.parametrize("opset,attrs,extra", [
    (13, dict(axes=[1, -1], keepdims=0), {}),
    (13, dict(keepdims=0), {}),
    (18, dict(keepdims=0), {"axes": np.array([0, 2], I64)}),
    (18, dict(keepdims=0), {}),
    (18, dict(keepdims=0, noop_with_empty_axes=1), {}),
])
def test_reduce_axes_match_the_reference(opset, attrs, extra):
    inputs = {"x": _rand(2, 3, 4), **extra}
    axes = oa.reduce_axes("ReduceMean", opset, attrs, _as_inputs(inputs), 3)
    shape = [2, 3, 4] if axes is None else [s for i, s in enumerate((2, 3, 4)) if i not in axes]
    assert shape == _reference_shape("ReduceMean", inputs, attrs, opset)


@pytest.mark.parametrize("opset,attrs,extra", [
    (2, dict(pads=[0, 1, 2, 0]), {}),
    (11, {}, {"pads": np.array([1, 0, 0, 2], I64), "value": np.array(1.5, np.float32)}),
    (18, {}, {"pads": np.array([2, 3], I64), "value": None, "axes": np.array([-1], I64)}),
])
def test_pad_spec_matches_the_reference(opset, attrs, extra):
    inputs = {"x": _rand(3, 4), **extra}
    spec = oa.pad_spec(opset, attrs, _as_inputs(inputs), 2)
    y = _reference(_model("Pad", inputs, attrs, opset), inputs)
    assert [n + b + e for n, b, e in zip((3, 4), spec.begins, spec.ends)] == list(y.shape)
    value = float(extra["value"]) if extra.get("value") is not None else 0.0
    assert spec.mode == "constant" and spec.value == value
    if spec.begins[0] > 0:
        assert np.all(y[0] == np.float32(value))


@pytest.mark.parametrize("opset,ratio", [(10, 0.3), (12, np.array(0.3, np.float32)), (12, None)])
def test_dropout_ratio_follows_the_opset(opset, ratio):
    if opset < 12:
        got = oa.dropout_ratio(opset, dict(ratio=ratio), [None])
    else:
        got = oa.dropout_ratio(opset, {}, [None, ratio])
    assert got == pytest.approx(0.5 if ratio is None else 0.3)


@pytest.mark.parametrize("opset,attrs,extra", [
    (10, dict(min=-0.5, max=0.5), {}),
    (11, {}, {"min": np.array(-0.5, np.float32), "max": None}),
    (13, {}, {"min": None, "max": np.array(0.25, np.float32)}),
])
def test_clip_bounds_match_the_reference(opset, attrs, extra):
    inputs = {"x": _rand(4, 5) * 3, **extra}
    lo, hi = oa.clip_bounds(opset, attrs, _as_inputs(inputs))
    x = inputs["x"]
    expected = np.clip(x, -np.inf if lo is None else float(lo), np.inf if hi is None else float(hi))
    np.testing.assert_array_equal(expected, _reference(_model("Clip", inputs, attrs, opset), inputs))


@pytest.mark.parametrize("opset,attrs", [(11, dict(axis=1)), (11, {}), (11, dict(axis=-1)), (13, {}),
                                         (13, dict(axis=1))])
def test_softmax_axis_matches_onnxruntime(opset, attrs):
    """(onnxruntime: the ReferenceEvaluator normalizes along the axis at every opset.)"""
    x = _rand(2, 3, 4)
    axis, as_2d = oa.softmax_axis(opset, attrs, 3)
    v = x.reshape(int(np.prod(x.shape[:axis])), -1) if as_2d else x
    ax = 1 if as_2d else axis
    e = np.exp(v - v.max(axis=ax, keepdims=True))
    expected = (e / e.sum(axis=ax, keepdims=True)).reshape(x.shape)
    np.testing.assert_allclose(expected, _ort_run(_model("Softmax", {"x": x}, attrs, opset), {"x": x}),
                               rtol=1e-5)


@pytest.mark.parametrize("opset,attrs,extra", [
    (5, {}, {"shape": np.array([0, -1], I64)}),
    (14, dict(allowzero=0), {"shape": np.array([3, 0, 2], I64)}),
])
def test_reshape_target_matches_the_reference(opset, attrs, extra):
    inputs = {"x": _rand(3, 4, 2), **extra}
    target = oa.reshape_target(opset, attrs, _as_inputs(inputs), (3, 4, 2))
    assert list(np.empty((3, 4, 2)).reshape(target).shape) == _reference_shape("Reshape", inputs, attrs, opset)


@pytest.mark.parametrize("op,attrs,shape", [
    ("Flatten", dict(axis=0), (2, 3, 4)),
    ("Flatten", dict(axis=-1), (2, 3, 4)),
    ("Flatten", dict(axis=3), (2, 3, 4)),
    ("Flatten", {}, (2, 3, 4)),
    ("Transpose", {}, (2, 3, 4)),
    ("Transpose", dict(perm=[1, 2, 0]), (2, 3, 4)),
])
def test_flatten_axis_and_transpose_perm_match_the_reference(op, attrs, shape):
    x = _rand(*shape)
    if op == "Flatten":
        axis = oa.flatten_axis(attrs, len(shape))
        got = [int(np.prod(shape[:axis])), int(np.prod(shape[axis:]))]
    else:
        got = [shape[a] for a in oa.transpose_perm(attrs, len(shape))]
    assert got == _reference_shape(op, {"x": x}, attrs, OPSET)


def test_concat_axis_is_required_from_opset_4():
    assert oa.concat_axis(1, {}, 3) == 1 and oa.concat_axis(13, dict(axis=-1), 3) == 2
    with pytest.raises(DLPluginError, match="axis"):
        oa.concat_axis(4, {}, 3)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_lrn_window_matches_the_reference(size):
    """(The ReferenceEvaluator's LRN loops its channels over range(batch size), hence N == C;
    onnxruntime accepts odd sizes only.)"""
    attrs = dict(size=size, alpha=0.3, beta=0.6, bias=1.5)
    x = _rand(6, 6, 3, 3)
    w = oa.lrn_window(attrs)
    assert w.before + 1 + w.after == size
    sq = np.pad(x * x, ((0, 0), (w.before, w.after), (0, 0), (0, 0)))
    window_sum = sum(sq[:, i:i + x.shape[1]] for i in range(size))
    expected = x / (w.bias + w.alpha / w.size * window_sum) ** w.beta
    np.testing.assert_allclose(expected, _reference(_model("LRN", {"x": x}, attrs), {"x": x}), rtol=1e-5)


# -- Resize ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra,attrs", [
    ({"roi": None, "scales": np.array([1, 1, 2.5, 0.6], np.float32)}, {}),
    ({"roi": None, "scales": None, "sizes": np.array([1, 2, 7, 3], I64)}, {}),
    ({"roi": None, "scales": None, "sizes": np.array([7, 3], I64)}, dict(axes=[2, 3])),
    ({"roi": None, "scales": None, "sizes": np.array([7, 3], I64)},
     dict(axes=[2, 3], keep_aspect_ratio_policy="not_larger")),
    ({"roi": None, "scales": None, "sizes": np.array([7, 3], I64)},
     dict(axes=[2, 3], keep_aspect_ratio_policy="not_smaller")),
])
def test_resize_output_shape_matches_the_reference(extra, attrs):
    inputs = {"x": _rand(1, 2, 4, 5), **extra}
    operands = oa.resize_operands(19, attrs, _as_inputs(inputs))
    policy = oa.text(attrs.get("keep_aspect_ratio_policy"), "stretch")
    _, out = oa.resize_shape((1, 2, 4, 5), oa.resize_axes(attrs, 4), operands.scales, operands.sizes, policy)
    assert out == _reference_shape("Resize", inputs, attrs, 19)


def test_resize_opset10_reads_scales_from_input_1_with_asymmetric_floor_rules():
    operands = oa.resize_operands(10, {}, [None, np.array([1, 1, 2, 2], np.float32)])
    assert operands == ("asymmetric", "floor", None, [1.0, 1.0, 2.0, 2.0], None)


@pytest.mark.parametrize("mode", oa.COORDINATE_MODES)
@pytest.mark.parametrize("in_size,out_size", [(4, 7), (5, 3), (3, 1), (1, 4)])
def test_source_coordinates_match_the_reference_resize(mode, in_size, out_size):
    op_resize = pytest.importorskip("onnx.reference.ops.op_resize")
    if not hasattr(op_resize, "_compute_x_ori"):
        pytest.skip("this onnx version has no _compute_x_ori")
    scale = out_size / in_size
    y = np.arange(out_size, dtype=np.float64)
    roi = (0.2, 0.9)
    want, _ = op_resize._compute_x_ori(mode, y, scale, in_size, scale * in_size, out_size, roi)
    got = oa.source_coordinates(mode, y, scale, in_size, out_size, roi)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
