"""The numpy kernels against three independent references:

* central finite differences of the kernel's own forward (float64) for every backward;
* onnx.reference.ReferenceEvaluator on a one-node ONNX model for every forward (float32);
* torch autograd (float64) for values and gradients of the main ops, and torch's batch-norm
  running-statistics update.

Plus layout (channel-major views give the same results), float32 accuracy of batch norm at
224x224, dtype preservation and the errors for unsupported attributes.
"""
from __future__ import annotations

import time

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

import dlbatch.backends.numpy_cpu.ops._util as util_mod
import dlbatch.backends.numpy_cpu.ops.conv.gemm as conv_gemm
import dlbatch.backends.numpy_cpu.ops.conv.plan as conv_plan
from dlbatch.backends.numpy_cpu.ops import KERNELS
from dlbatch.core.backend import OpContext
from dlbatch.core.errors import DLPluginError

torch = pytest.importorskip("torch")
F = torch.nn.functional

KERNEL = {k.op_type: k for k in KERNELS}


def i64(*v):
    return np.array(v, dtype=np.int64)


def cmajor(x):
    """Same logical array, channel-major memory (what the spatial kernels return)."""
    return np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)


def run(op, inputs, attrs, *, training=False, opset=17, needs=None, momentum=0.9):
    ctx = OpContext(training=training, bn_momentum=momentum,
                    needs_input_grad=tuple(needs) if needs is not None else tuple(
                        v is not None and np.issubdtype(v.dtype, np.floating) for v in inputs),
                    rng=np.random.default_rng(0), opset=opset)
    outs, saved = KERNEL[op].forward(ctx, list(inputs), dict(attrs))
    return outs, saved, ctx


@dataclass
class Case:
    id: str
    op: str
    make: Callable[[np.random.Generator], list]  # float64 inputs (ints stay ints)
    attrs: dict = field(default_factory=dict)
    training: bool = False
    opset: int = 17
    diff: tuple | None = None  # inputs whose gradient is checked (default: every float input)
    onnx_ref: bool = True
    ref: str = "onnx"  # "ort": onnxruntime, where onnx.reference is wrong or lacks a feature
    #                   (opset<13 Softmax, LRN, negative Pad, grouped/output_shape ConvTranspose)

    def inputs(self, seed=0):
        return self.make(np.random.default_rng(seed))

    def __str__(self):
        return self.id


def n(r, *shape):
    return r.standard_normal(shape)


def bn_inputs(r, shape):
    c = shape[1]
    return [n(r, *shape) * 1.5 + 0.7, r.uniform(0.5, 1.5, c), n(r, c), n(r, c) * 0.1, r.uniform(0.5, 2.0, c)]


PHASE1 = [
    # convolution
    Case("conv-3x3-pad1-bias", "Conv", lambda r: [n(r, 2, 3, 6, 6), n(r, 4, 3, 3, 3), n(r, 4)],
         {"pads": [1, 1, 1, 1]}),
    Case("conv-stride2-asympad", "Conv", lambda r: [n(r, 2, 3, 7, 6), n(r, 4, 3, 3, 3), n(r, 4)],
         {"strides": [2, 2], "pads": [1, 0, 2, 1]}),
    Case("conv-dilated", "Conv", lambda r: [n(r, 2, 2, 8, 7), n(r, 3, 2, 3, 2)],
         {"dilations": [2, 2], "pads": [2, 1, 2, 1]}),
    Case("conv-groups2", "Conv", lambda r: [n(r, 2, 4, 5, 5), n(r, 6, 2, 3, 3), n(r, 6)],
         {"group": 2, "pads": [1, 1, 1, 1], "strides": [1, 2]}),
    Case("conv-depthwise", "Conv", lambda r: [n(r, 2, 3, 6, 6), n(r, 3, 1, 3, 3), n(r, 3)],
         {"group": 3, "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    Case("conv-depthwise-mult2", "Conv", lambda r: [n(r, 2, 3, 5, 5), n(r, 6, 1, 3, 3)],
         {"group": 3, "pads": [1, 1, 1, 1]}),
    Case("conv-pointwise", "Conv", lambda r: [n(r, 2, 5, 4, 3), n(r, 3, 5, 1, 1)]),
    Case("conv-1x1-stride2", "Conv", lambda r: [n(r, 2, 3, 5, 5), n(r, 4, 3, 1, 1), n(r, 4)],
         {"strides": [2, 2]}),
    Case("conv-same-upper", "Conv", lambda r: [n(r, 2, 2, 7, 6), n(r, 3, 2, 3, 3)],
         {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    Case("conv-same-lower", "Conv", lambda r: [n(r, 2, 2, 6, 6), n(r, 3, 2, 2, 2)],
         {"auto_pad": "SAME_LOWER"}),
    Case("conv-valid-2x3", "Conv", lambda r: [n(r, 1, 2, 6, 7), n(r, 3, 2, 2, 3), n(r, 3)],
         {"auto_pad": "VALID", "kernel_shape": [2, 3]}),
    # batch norm
    Case("bn-train-4d", "BatchNormalization", lambda r: bn_inputs(r, (3, 2, 4, 5)), training=True, diff=(0, 1, 2),
         onnx_ref=False),
    Case("bn-train-2d", "BatchNormalization", lambda r: bn_inputs(r, (6, 3)), training=True, diff=(0, 1, 2),
         onnx_ref=False),
    Case("bn-infer-4d", "BatchNormalization", lambda r: bn_inputs(r, (2, 3, 4, 4)), {"epsilon": 1e-3},
         diff=(0, 1, 2)),
    Case("bn-infer-2d", "BatchNormalization", lambda r: bn_inputs(r, (4, 3)), diff=(0, 1, 2)),
    # activations
    Case("relu", "Relu", lambda r: [n(r, 2, 3, 4, 4)]),
    Case("leakyrelu-default", "LeakyRelu", lambda r: [n(r, 2, 3, 4)]),
    Case("leakyrelu-alpha0.3", "LeakyRelu", lambda r: [n(r, 3, 5)], {"alpha": 0.3}),
    Case("leakyrelu-alpha-neg", "LeakyRelu", lambda r: [n(r, 3, 5)], {"alpha": -1.5}),
    Case("clip-min-max-inputs", "Clip", lambda r: [n(r, 3, 6), np.array(-0.5), np.array(0.6)], diff=(0,)),
    Case("clip-min-only", "Clip", lambda r: [n(r, 3, 6), np.array(0.0)], diff=(0,)),
    Case("clip-no-bounds", "Clip", lambda r: [n(r, 3, 6)]),
    Case("clip-opset6-attrs", "Clip", lambda r: [n(r, 3, 6)], {"min": -0.3, "max": 0.4}, opset=6),
    Case("sigmoid", "Sigmoid", lambda r: [n(r, 2, 3, 4) * 3]),
    # pooling
    Case("maxpool-2x2-s2", "MaxPool", lambda r: [n(r, 2, 3, 6, 6)], {"kernel_shape": [2, 2], "strides": [2, 2]}),
    Case("maxpool-3x3-s2-p1", "MaxPool", lambda r: [n(r, 2, 2, 7, 7)],
         {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    Case("maxpool-ceil", "MaxPool", lambda r: [n(r, 1, 2, 6, 7)],
         {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    Case("maxpool-dilated", "MaxPool", lambda r: [n(r, 1, 2, 7, 7)],
         {"kernel_shape": [2, 2], "dilations": [2, 2], "pads": [1, 0, 1, 0]}),
    Case("maxpool-same-upper", "MaxPool", lambda r: [n(r, 1, 2, 5, 6)],
         {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    Case("avgpool-2x2", "AveragePool", lambda r: [n(r, 2, 3, 6, 6)], {"kernel_shape": [2, 2], "strides": [2, 2]}),
    Case("avgpool-pad-exclude", "AveragePool", lambda r: [n(r, 2, 2, 5, 5)],
         {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    Case("avgpool-pad-include", "AveragePool", lambda r: [n(r, 2, 2, 5, 5)],
         {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 1}),
    Case("avgpool-ceil", "AveragePool", lambda r: [n(r, 1, 2, 6, 7)],
         {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    Case("avgpool-ceil-pad-include", "AveragePool", lambda r: [n(r, 1, 2, 6, 6)],
         {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1,
          "count_include_pad": 1}),
    Case("globalavgpool", "GlobalAveragePool", lambda r: [n(r, 2, 3, 4, 5)]),
    # linear
    Case("gemm-bias-vector", "Gemm", lambda r: [n(r, 4, 5), n(r, 5, 3), n(r, 3)]),
    Case("gemm-transA", "Gemm", lambda r: [n(r, 5, 4), n(r, 5, 3), n(r, 4, 3)], {"transA": 1}),
    Case("gemm-transB-alpha-beta", "Gemm", lambda r: [n(r, 4, 5), n(r, 3, 5), n(r, 1, 3)],
         {"transB": 1, "alpha": 0.7, "beta": -1.3}),
    Case("gemm-transAB-col-C", "Gemm", lambda r: [n(r, 5, 4), n(r, 3, 5), n(r, 4, 1)],
         {"transA": 1, "transB": 1}),
    Case("gemm-scalar-C", "Gemm", lambda r: [n(r, 4, 5), n(r, 5, 3), n(r)], {"beta": 2.0}),
    Case("gemm-no-C", "Gemm", lambda r: [n(r, 4, 5), n(r, 5, 3)], {"alpha": 1.5}),
    Case("matmul-2d", "MatMul", lambda r: [n(r, 3, 4), n(r, 4, 5)]),
    Case("matmul-batched-broadcast", "MatMul", lambda r: [n(r, 3, 1, 4, 5), n(r, 2, 5, 6)]),
    Case("matmul-vec-mat", "MatMul", lambda r: [n(r, 4), n(r, 2, 4, 3)]),
    Case("matmul-mat-vec", "MatMul", lambda r: [n(r, 2, 3, 4), n(r, 4)]),
    # elementwise
    Case("add-same", "Add", lambda r: [n(r, 2, 3, 4), n(r, 2, 3, 4)]),
    Case("add-channel-bias", "Add", lambda r: [n(r, 2, 3, 4, 5), n(r, 3, 1, 1)]),
    Case("add-broadcast-both", "Add", lambda r: [n(r, 2, 1, 4), n(r, 3, 1)]),
    Case("sub-broadcast", "Sub", lambda r: [n(r, 2, 3, 4, 5), n(r, 1, 3, 1, 1)]),
    Case("sub-scalar-first", "Sub", lambda r: [n(r, 1), n(r, 2, 3)]),
    Case("mul-same", "Mul", lambda r: [n(r, 2, 3, 4), n(r, 2, 3, 4)]),
    Case("mul-broadcast", "Mul", lambda r: [n(r, 2, 3, 4, 5), n(r, 2, 1, 4, 1)]),
    # shape
    Case("concat-axis1", "Concat", lambda r: [n(r, 2, 3, 4), n(r, 2, 1, 4), n(r, 2, 2, 4)], {"axis": 1}),
    Case("concat-axis-neg", "Concat", lambda r: [n(r, 2, 3), n(r, 2, 4)], {"axis": -1}),
    Case("flatten-axis1", "Flatten", lambda r: [n(r, 2, 3, 2, 2)]),
    Case("flatten-axis0", "Flatten", lambda r: [n(r, 2, 3, 2)], {"axis": 0}),
    Case("flatten-axis-neg", "Flatten", lambda r: [n(r, 2, 3, 2, 2)], {"axis": -2}),
    Case("reshape-0-and-minus1", "Reshape", lambda r: [n(r, 2, 3, 4), i64(0, -1, 2)]),
    Case("reshape-allowzero", "Reshape", lambda r: [n(r, 2, 3, 4), i64(4, 6)], {"allowzero": 1}),
    Case("transpose-perm", "Transpose", lambda r: [n(r, 2, 3, 4)], {"perm": [1, 2, 0]}),
    Case("transpose-default", "Transpose", lambda r: [n(r, 2, 3, 4)]),
    Case("identity", "Identity", lambda r: [n(r, 2, 3)]),
    # softmax
    Case("softmax-last", "Softmax", lambda r: [n(r, 3, 5)]),
    Case("softmax-axis1-4d", "Softmax", lambda r: [n(r, 2, 3, 2, 2)], {"axis": 1}),
    Case("softmax-opset11-flatten", "Softmax", lambda r: [n(r, 2, 3, 2)], {"axis": 1}, opset=11, ref="ort"),
    Case("softmax-opset11-default", "Softmax", lambda r: [n(r, 2, 3, 2)], opset=11, ref="ort"),
    # dropout
    Case("dropout-train", "Dropout", lambda r: [n(r, 4, 6), np.array(0.3)], training=True, diff=(0,),
         onnx_ref=False),
    Case("dropout-infer", "Dropout", lambda r: [n(r, 4, 6), np.array(0.3)], diff=(0,)),
    Case("dropout-opset10-train", "Dropout", lambda r: [n(r, 4, 6)], {"ratio": 0.5}, training=True,
         opset=10, onnx_ref=False),
]

def nz(r, *shape):
    """Values bounded away from zero (divisors)."""
    return r.uniform(0.5, 2.0, shape) * r.choice([-1.0, 1.0], shape)


def f32(*v):
    return np.array(v, dtype=np.float64)  # float scales; cast to float32 with the data


PHASE2 = [
    Case("sum-three-broadcast", "Sum", lambda r: [n(r, 2, 3, 4), n(r, 3, 1), n(r, 4)]),
    Case("sum-single", "Sum", lambda r: [n(r, 2, 3)]),
    Case("div-same", "Div", lambda r: [n(r, 2, 3, 4), nz(r, 2, 3, 4)]),
    Case("div-broadcast", "Div", lambda r: [n(r, 2, 3, 4, 5), nz(r, 3, 1, 1)]),
    Case("div-scalar-numerator", "Div", lambda r: [n(r, 1), nz(r, 2, 3)]),
    Case("lrn-size3", "LRN", lambda r: [n(r, 2, 5, 3, 3)], {"size": 3}, ref="ort"),
    Case("lrn-size5-params", "LRN", lambda r: [n(r, 2, 7, 3, 2) * 2], {"size": 5, "alpha": 0.3, "beta": 0.6,
                                                                        "bias": 1.5}, ref="ort"),
    Case("lrn-size4-even", "LRN", lambda r: [n(r, 1, 6, 2, 3)], {"size": 4, "alpha": 0.5},
         onnx_ref=False),  # onnxruntime rejects even sizes; see test_lrn_even_size_follows_spec
    Case("unsqueeze-input-axes", "Unsqueeze", lambda r: [n(r, 2, 3), i64(0, -1)]),
    Case("unsqueeze-opset11-attr", "Unsqueeze", lambda r: [n(r, 2, 3)], {"axes": [1]}, opset=11),
    Case("squeeze-input-axes", "Squeeze", lambda r: [n(r, 2, 1, 3, 1), i64(-1)]),
    Case("squeeze-all", "Squeeze", lambda r: [n(r, 1, 3, 1, 2)]),
    Case("squeeze-opset11-attr", "Squeeze", lambda r: [n(r, 2, 1, 3)], {"axes": [1]}, opset=11),
    Case("pad-constant", "Pad", lambda r: [n(r, 2, 3, 4, 4), i64(0, 0, 1, 2, 0, 0, 2, 1), np.array(0.5)], diff=(0,)),
    Case("pad-constant-negative", "Pad", lambda r: [n(r, 2, 3, 5, 5), i64(0, 0, -1, 2, 0, 0, 1, -2)], diff=(0,),
         ref="ort"),
    Case("pad-reflect", "Pad", lambda r: [n(r, 2, 2, 4, 5), i64(0, 0, 2, 1, 0, 0, 1, 3)], {"mode": "reflect"},
         diff=(0,)),
    Case("pad-edge", "Pad", lambda r: [n(r, 2, 2, 3, 4), i64(0, 1, 2, 1, 0, 0, 3, 2)], {"mode": "edge"},
         diff=(0,)),
    Case("pad-opset2-attrs", "Pad", lambda r: [n(r, 2, 3, 3)], {"pads": [0, 1, 1, 0, 2, 0], "value": 1.5},
         opset=2),
    Case("pad-opset18-axes", "Pad", lambda r: [n(r, 2, 3, 4), i64(1, 2, 2, 0), None, i64(-1, 1)],
         opset=18, diff=(0,)),
    Case("reducemean-axes-keep", "ReduceMean", lambda r: [n(r, 2, 3, 4, 5)], {"axes": [2, 3]}, opset=13),
    Case("reducemean-noKeep-neg", "ReduceMean", lambda r: [n(r, 2, 3, 4)], {"axes": [-1, 0], "keepdims": 0},
         opset=13),
    Case("reducemean-all", "ReduceMean", lambda r: [n(r, 2, 3, 4)], opset=13),
    Case("reducemean-opset18-input", "ReduceMean", lambda r: [n(r, 2, 3, 4), i64(1)], opset=18),
    Case("reducemean-opset18-noop", "ReduceMean", lambda r: [n(r, 2, 3)], {"noop_with_empty_axes": 1}, opset=18),
    Case("resize-nearest-x2-asym-floor", "Resize", lambda r: [n(r, 2, 3, 3, 4), None, f32(1, 1, 2, 2)],
         {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}, diff=(0,)),
    Case("resize-nearest-x1.5-halfpixel", "Resize", lambda r: [n(r, 1, 2, 4, 4), None, f32(1, 1, 1.5, 1.5)],
         {"mode": "nearest"}, diff=(0,)),
    Case("resize-nearest-sizes-down-ceil", "Resize", lambda r: [n(r, 1, 2, 6, 7), None, None, i64(1, 2, 4, 3)],
         {"mode": "nearest", "nearest_mode": "ceil", "coordinate_transformation_mode": "align_corners"},
         diff=(0,)),
    Case("resize-nearest-prefer-ceil", "Resize", lambda r: [n(r, 1, 2, 3, 5), None, f32(1, 1, 2.5, 0.6)],
         {"mode": "nearest", "nearest_mode": "round_prefer_ceil",
          "coordinate_transformation_mode": "pytorch_half_pixel"}, diff=(0,)),
    Case("resize-linear-x2-halfpixel", "Resize", lambda r: [n(r, 2, 2, 3, 4), None, f32(1, 1, 2, 2)],
         {"mode": "linear"}, diff=(0,)),
    Case("resize-linear-sizes-aligncorners", "Resize", lambda r: [n(r, 1, 2, 4, 3), None, None, i64(1, 2, 7, 5)],
         {"mode": "linear", "coordinate_transformation_mode": "align_corners"}, diff=(0,)),
    Case("resize-linear-down-pytorch", "Resize", lambda r: [n(r, 1, 2, 6, 5), None, f32(1, 1, 0.6, 0.5)],
         {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}, diff=(0,)),
    Case("resize-linear-asym-symmetric", "Resize", lambda r: [n(r, 1, 2, 4, 5), None, f32(1, 1, 1.7, 1.3)],
         {"mode": "linear", "coordinate_transformation_mode": "half_pixel_symmetric"}, diff=(0,)),
    Case("resize-linear-opset18-axes", "Resize", lambda r: [n(r, 1, 2, 3, 4), None, f32(2, 1.5)],
         {"mode": "linear", "axes": [2, 3]}, opset=18, diff=(0,)),
    Case("convT-3x3", "ConvTranspose", lambda r: [n(r, 2, 3, 4, 4), n(r, 3, 2, 3, 3), n(r, 2)]),
    Case("convT-stride2-pad-outpad", "ConvTranspose", lambda r: [n(r, 2, 3, 3, 4), n(r, 3, 4, 3, 3)],
         {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}),
    Case("convT-dilated-asympad", "ConvTranspose", lambda r: [n(r, 1, 2, 4, 3), n(r, 2, 3, 2, 3), n(r, 3)],
         {"dilations": [2, 1], "pads": [1, 0, 0, 2]}),
    Case("convT-groups2", "ConvTranspose", lambda r: [n(r, 2, 4, 3, 3), n(r, 4, 3, 3, 3)],
         {"group": 2, "strides": [2, 1]}, ref="ort"),
    Case("convT-output-shape", "ConvTranspose", lambda r: [n(r, 1, 2, 3, 3), n(r, 2, 2, 3, 3)],
         {"strides": [2, 2], "output_shape": [6, 7]}, ref="ort"),
    Case("convT-2x2-s2", "ConvTranspose", lambda r: [n(r, 2, 3, 3, 3), n(r, 3, 2, 2, 2), n(r, 2)],
         {"strides": [2, 2]}),
    Case("tanh", "Tanh", lambda r: [n(r, 3, 4)]),
    Case("hardsigmoid-default", "HardSigmoid", lambda r: [n(r, 4, 5) * 4]),
    Case("hardsigmoid-params", "HardSigmoid", lambda r: [n(r, 4, 5) * 2], {"alpha": 0.5, "beta": 0.3}),
    Case("hardswish", "HardSwish", lambda r: [n(r, 4, 6) * 4]),
]

CASES = PHASE1 + PHASE2


# --------------------------------------------------------------------------- finite differences

def numeric_grad_check(case: Case, *, eps=1e-6, max_points=80, rtol=1e-5, atol=1e-6):
    xs = case.inputs()
    op, attrs = case.op, case.attrs
    outs, saved, ctx = run(op, xs, attrs, training=case.training, opset=case.opset)
    y = outs[0]
    g = np.random.default_rng(1).standard_normal(y.shape)
    grads = KERNEL[op].backward(ctx, saved, [g] + [None] * (len(outs) - 1), attrs)
    assert len(grads) >= len(xs)
    diff = case.diff if case.diff is not None else [
        i for i, v in enumerate(xs) if v is not None and np.issubdtype(v.dtype, np.floating)]
    pick = np.random.default_rng(2)

    def loss(vals):
        return float(np.sum(g * run(op, vals, attrs, training=case.training, opset=case.opset)[0][0]))

    for i in diff:
        ga = grads[i]
        assert ga is not None, f"no gradient for input {i}"
        assert ga.shape == xs[i].shape and ga.dtype == np.float64
        idx = np.arange(xs[i].size)
        if idx.size > max_points:
            idx = pick.choice(idx, max_points, replace=False)
        num = np.empty(idx.size)
        for k, j in enumerate(idx):
            vals = [v.copy() if v is not None else None for v in xs]
            vals[i].reshape(-1)[j] += eps
            fp = loss(vals)
            vals[i].reshape(-1)[j] -= 2 * eps
            fm = loss(vals)
            num[k] = (fp - fm) / (2 * eps)
        np.testing.assert_allclose(np.asarray(ga).reshape(-1)[idx], num, rtol=rtol, atol=atol,
                                   err_msg=f"{case.id}: gradient of input {i}")
    for i, v in enumerate(xs):
        if v is not None and not np.issubdtype(v.dtype, np.floating):
            assert grads[i] is None, f"integer input {i} got a gradient"


@pytest.mark.parametrize("case", CASES, ids=str)
def test_backward_matches_finite_differences(case):
    numeric_grad_check(case)


# --------------------------------------------------------------------------- ONNX reference

_ONNX_TYPE = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE,
              np.dtype(np.int64): TensorProto.INT64}


def onnx_reference(op, inputs, attrs, opset, ref="onnx"):
    names = [f"in{i}" if v is not None else "" for i, v in enumerate(inputs)]
    node = helper.make_node(op, names, ["y"], **attrs)
    graph = helper.make_graph(
        [node], "one_node",
        [helper.make_tensor_value_info(nm, _ONNX_TYPE[v.dtype], v.shape) for nm, v in zip(names, inputs) if nm],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    feeds = {nm: v for nm, v in zip(names, inputs) if nm}
    if ref == "ort":
        ort = pytest.importorskip("onnxruntime")
        model.ir_version = min(model.ir_version, 9)
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return sess.run(None, feeds)[0]
    return ReferenceEvaluator(model).run(None, feeds)[0]


def to32(xs):
    return [v.astype(np.float32) if v is not None and v.dtype == np.float64 else v for v in xs]


@pytest.mark.parametrize("case", [c for c in CASES if c.onnx_ref], ids=str)
def test_forward_matches_onnx_reference(case):
    xs = to32(case.inputs())
    outs, saved, ctx = run(case.op, xs, case.attrs, training=False, opset=case.opset)
    y = outs[0]
    ref = onnx_reference(case.op, xs, case.attrs, case.opset, case.ref)
    assert y.dtype == np.float32
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    # float32 in, float32 gradients out, with the inputs' shapes
    grads = KERNEL[case.op].backward(ctx, saved, [np.ones_like(y)], case.attrs)
    for v, gv in zip(xs, grads):
        if gv is not None:
            assert gv.dtype == np.float32 and gv.shape == v.shape


# --------------------------------------------------------------------------- torch autograd

def t(v):
    return torch.from_numpy(np.array(v)).requires_grad_(True)


def torch_conv(attrs):
    def fn(x, w, b=None):
        pads = attrs.get("pads", [0, 0, 0, 0])
        x = F.pad(x, (pads[1], pads[3], pads[0], pads[2]))
        return F.conv2d(x, w, b, stride=attrs.get("strides", 1), dilation=attrs.get("dilations", 1),
                        groups=attrs.get("group", 1))
    return fn


@dataclass
class TorchCase:
    id: str
    op: str
    make: Callable
    attrs: dict
    fn: Callable  # torch tensors -> output
    training: bool = False
    diff: tuple = ()  # inputs compared (the rest are passed to fn without requires_grad)

    def __str__(self):
        return self.id


TORCH_CASES = [
    TorchCase("conv-pad-stride", "Conv", lambda r: [n(r, 2, 3, 9, 8), n(r, 5, 3, 3, 3), n(r, 5)],
              {"strides": [2, 1], "pads": [1, 0, 2, 1]}, None, diff=(0, 1, 2)),
    TorchCase("conv-dilated-groups", "Conv", lambda r: [n(r, 2, 4, 9, 9), n(r, 6, 2, 3, 3)],
              {"dilations": [2, 1], "group": 2, "pads": [2, 1, 2, 1]}, None, diff=(0, 1)),
    TorchCase("conv-depthwise", "Conv", lambda r: [n(r, 3, 8, 10, 10), n(r, 8, 1, 3, 3), n(r, 8)],
              {"group": 8, "strides": [2, 2], "pads": [1, 1, 1, 1]}, None, diff=(0, 1, 2)),
    TorchCase("conv-7x7-s2", "Conv", lambda r: [n(r, 2, 3, 20, 20), n(r, 4, 3, 7, 7)],
              {"strides": [2, 2], "pads": [3, 3, 3, 3]}, None, diff=(0, 1)),
    TorchCase("maxpool-3x3-s2-p1", "MaxPool", lambda r: [n(r, 2, 3, 9, 9)],
              {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
              lambda x: F.max_pool2d(x, 3, 2, 1), diff=(0,)),
    TorchCase("maxpool-ceil-dilated", "MaxPool", lambda r: [n(r, 2, 3, 10, 9)],
              {"kernel_shape": [2, 3], "strides": [2, 2], "dilations": [2, 1], "ceil_mode": 1},
              lambda x: F.max_pool2d(x, (2, 3), 2, 0, (2, 1), ceil_mode=True), diff=(0,)),
    TorchCase("avgpool-exclude-pad", "AveragePool", lambda r: [n(r, 2, 3, 9, 9)],
              {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
              lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False), diff=(0,)),
    TorchCase("avgpool-ceil-include-pad", "AveragePool", lambda r: [n(r, 2, 3, 8, 8)],
              {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1,
               "count_include_pad": 1},
              lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=True), diff=(0,)),
    TorchCase("avgpool-ceil-exclude-pad", "AveragePool", lambda r: [n(r, 2, 3, 8, 8)],
              {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1},
              lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False), diff=(0,)),
    TorchCase("gemm-transB-bias", "Gemm", lambda r: [n(r, 6, 5), n(r, 4, 5), n(r, 4)],
              {"transB": 1, "alpha": 0.5, "beta": 2.0},
              lambda a, b, c: 0.5 * a @ b.T + 2.0 * c, diff=(0, 1, 2)),
    TorchCase("softmax-axis1", "Softmax", lambda r: [n(r, 2, 4, 3, 3)], {"axis": 1},
              lambda x: torch.softmax(x, 1), diff=(0,)),
    TorchCase("softmax-last", "Softmax", lambda r: [n(r, 5, 7)], {}, lambda x: torch.softmax(x, -1), diff=(0,)),
    TorchCase("convT-s2-p1-outpad-groups", "ConvTranspose", lambda r: [n(r, 2, 4, 5, 4), n(r, 4, 3, 3, 3), n(r, 6)],
              {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 0], "group": 2},
              lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=(1, 0), groups=2),
              diff=(0, 1, 2)),
    TorchCase("convT-dilated-s3", "ConvTranspose", lambda r: [n(r, 2, 3, 4, 4), n(r, 3, 2, 3, 2)],
              {"strides": [3, 2], "dilations": [2, 2], "pads": [2, 1, 2, 1], "output_padding": [2, 1]},
              lambda x, w: F.conv_transpose2d(x, w, stride=(3, 2), padding=(2, 1), output_padding=(2, 1),
                                              dilation=2),
              diff=(0, 1)),
    TorchCase("resize-bilinear-x2", "Resize", lambda r: [n(r, 2, 3, 5, 4), None, f32(1, 1, 2, 2)],
              {"mode": "linear"},
              lambda x, roi, sc: F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False),
              diff=(0,)),
    TorchCase("resize-bilinear-aligncorners-sizes", "Resize",
              lambda r: [n(r, 2, 3, 5, 4), None, None, i64(2, 3, 9, 7)],
              {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
              lambda x, roi, sc, sz: F.interpolate(x, size=(9, 7), mode="bilinear", align_corners=True),
              diff=(0,)),
    TorchCase("resize-bilinear-down-sizes", "Resize",
              lambda r: [n(r, 2, 3, 9, 8), None, None, i64(2, 3, 4, 5)],
              {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"},
              lambda x, roi, sc, sz: F.interpolate(x, size=(4, 5), mode="bilinear", align_corners=False),
              diff=(0,)),
    TorchCase("resize-nearest-x2", "Resize", lambda r: [n(r, 2, 3, 4, 5), None, f32(1, 1, 2, 2)],
              {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
              lambda x, roi, sc: F.interpolate(x, scale_factor=2, mode="nearest"), diff=(0,)),
    TorchCase("resize-nearest-exact-sizes", "Resize", lambda r: [n(r, 2, 3, 5, 7), None, None, i64(2, 3, 8, 4)],
              {"mode": "nearest", "nearest_mode": "round_prefer_ceil"},
              lambda x, roi, sc, sz: F.interpolate(x, size=(8, 4), mode="nearest-exact"), diff=(0,)),
    TorchCase("lrn-size5", "LRN", lambda r: [n(r, 2, 8, 4, 4) * 2], {"size": 5, "alpha": 0.2, "beta": 0.75, "bias": 2.0},
              lambda x: F.local_response_norm(x, 5, alpha=0.2, beta=0.75, k=2.0), diff=(0,)),
    TorchCase("lrn-size3", "LRN", lambda r: [n(r, 2, 5, 3, 3)], {"size": 3, "alpha": 0.5},
              lambda x: F.local_response_norm(x, 3, alpha=0.5, beta=0.75, k=1.0), diff=(0,)),
]
for _c in TORCH_CASES:
    if _c.fn is None:
        _c.fn = torch_conv(_c.attrs)


def compare_with_torch(op, xs, attrs, fn, diff, training=False, rtol=1e-10, atol=1e-10, momentum=0.9):
    outs, saved, ctx = run(op, xs, attrs, training=training, momentum=momentum)
    y = outs[0]
    g = np.random.default_rng(5).standard_normal(y.shape)
    grads = KERNEL[op].backward(ctx, saved, [g], attrs)
    tx = [t(v) if i in diff else (torch.from_numpy(np.array(v)) if v is not None else None)
          for i, v in enumerate(xs)]
    ty = fn(*tx)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=rtol, atol=atol, err_msg=f"{op} value")
    ty.backward(torch.from_numpy(g))
    for i in diff:
        np.testing.assert_allclose(grads[i], tx[i].grad.numpy(), rtol=rtol, atol=atol,
                                   err_msg=f"{op} gradient of input {i}")
    return ctx


@pytest.mark.parametrize("case", TORCH_CASES, ids=str)
def test_values_and_gradients_match_torch(case):
    xs = case.make(np.random.default_rng(3))
    compare_with_torch(case.op, xs, case.attrs, case.fn, case.diff, training=case.training)


@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (8, 5)], ids=["4d", "2d"])
@pytest.mark.parametrize("momentum", [0.9, 0.6])
def test_batchnorm_training_matches_torch_with_running_stats(shape, momentum):
    xs = bn_inputs(np.random.default_rng(4), shape)
    x, scale, bias, mean, var = xs
    rm, rv = torch.from_numpy(mean.copy()), torch.from_numpy(var.copy())

    def fn(x_, s_, b_, m_, v_):
        return F.batch_norm(x_, rm, rv, s_, b_, training=True, momentum=1 - momentum, eps=1e-5)

    ours = compare_with_torch("BatchNormalization", xs, {}, fn, (0, 1, 2), training=True,
                              momentum=momentum).statistic_updates  # torch updates rm, rv in place
    assert set(ours) == {3, 4}
    np.testing.assert_allclose(ours[3], rm.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours[4], rv.numpy(), rtol=1e-12, atol=1e-12)
    assert ours[3].dtype == mean.dtype and ours[4].dtype == var.dtype


def test_batchnorm_inference_matches_torch_and_leaves_stats():
    xs = bn_inputs(np.random.default_rng(6), (3, 4, 5, 5))
    x, scale, bias, mean, var = xs
    rm, rv = torch.from_numpy(mean.copy()), torch.from_numpy(var.copy())
    ctx = compare_with_torch("BatchNormalization", xs, {"epsilon": 1e-3},
                             lambda x_, s_, b_, m_, v_: F.batch_norm(x_, rm, rv, s_, b_, training=False, eps=1e-3),
                             (0, 1, 2), training=False)
    assert ctx.statistic_updates == {}


def test_batchnorm_float32_224_gradients_are_accurate():
    """float32 statistics over N*224*224 values per channel: compared with float64 torch.
    A large mean offset makes sequential float32 accumulation visibly worse than pairwise."""
    r = np.random.default_rng(7)
    c = 3
    x = (r.standard_normal((4, c, 224, 224)) * 3.0 + 20.0).astype(np.float32)
    scale = r.uniform(0.5, 1.5, c).astype(np.float32)
    bias = r.standard_normal(c).astype(np.float32)
    mean, var = np.zeros(c, np.float32), np.ones(c, np.float32)
    dy = r.standard_normal(x.shape).astype(np.float32)
    outs, saved, ctx = run("BatchNormalization", [x, scale, bias, mean, var], {}, training=True)
    dx, dscale, dbias = KERNEL["BatchNormalization"].backward(ctx, saved, [dy], {})[:3]
    tx, ts, tb = t(x.astype(np.float64)), t(scale.astype(np.float64)), t(bias.astype(np.float64))
    ty = F.batch_norm(tx, None, None, ts, tb, training=True, eps=1e-5)
    ty.backward(torch.from_numpy(dy.astype(np.float64)))

    def rel(a, b):
        return float(np.max(np.abs(a.astype(np.float64) - b)) / np.max(np.abs(b)))

    assert outs[0].dtype == dx.dtype == np.float32
    assert rel(outs[0], ty.detach().numpy()) < 1e-5
    # pairwise sums give ~1e-6 here; sequential float32 sums give 2e-5 (dx) and 1e-4 (dscale)
    assert rel(dx, tx.grad.numpy()) < 1e-5
    assert rel(dscale, ts.grad.numpy()) < 1e-5
    assert rel(dbias, tb.grad.numpy()) < 1e-5
    np.testing.assert_allclose(ctx.statistic_updates[3], 0.1 * x.astype(np.float64).mean(axis=(0, 2, 3)),
                               rtol=1e-5)


# --------------------------------------------------------------------------- memory layout

LAYOUT_CASES = [
    Case("conv", "Conv", lambda r: [n(r, 2, 3, 6, 6), n(r, 4, 3, 3, 3), n(r, 4)], {"pads": [1, 1, 1, 1]}),
    Case("conv-pointwise", "Conv", lambda r: [n(r, 2, 3, 5, 5), n(r, 4, 3, 1, 1)]),
    Case("conv-depthwise", "Conv", lambda r: [n(r, 2, 3, 6, 6), n(r, 3, 1, 3, 3)], {"group": 3, "pads": [1, 1, 1, 1]}),
    Case("bn-train", "BatchNormalization", lambda r: bn_inputs(r, (2, 3, 4, 4)), training=True),
    Case("bn-infer", "BatchNormalization", lambda r: bn_inputs(r, (2, 3, 4, 4))),
    Case("maxpool", "MaxPool", lambda r: [n(r, 2, 3, 6, 6)], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    Case("avgpool", "AveragePool", lambda r: [n(r, 2, 3, 6, 6)], {"kernel_shape": [2, 2], "strides": [2, 2]}),
    Case("globalavgpool", "GlobalAveragePool", lambda r: [n(r, 2, 3, 4, 4)]),
    Case("relu", "Relu", lambda r: [n(r, 2, 3, 4, 4)]),
    Case("add-bias", "Add", lambda r: [n(r, 2, 3, 4, 4), n(r, 3, 1, 1)]),
    Case("mul-same", "Mul", lambda r: [n(r, 2, 3, 4, 4), n(r, 2, 3, 4, 4)]),
    Case("concat", "Concat", lambda r: [n(r, 2, 3, 4, 4), n(r, 2, 2, 4, 4)], {"axis": 1}),
    Case("flatten", "Flatten", lambda r: [n(r, 2, 3, 2, 2)]),
    Case("convT", "ConvTranspose", lambda r: [n(r, 2, 3, 4, 4), n(r, 3, 2, 3, 3), n(r, 2)],
         {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}),
    Case("lrn", "LRN", lambda r: [n(r, 2, 5, 3, 3)], {"size": 3}),
    Case("resize-linear", "Resize", lambda r: [n(r, 2, 3, 3, 4), None, f32(1, 1, 2, 1.5)], {"mode": "linear"}),
    Case("resize-nearest", "Resize", lambda r: [n(r, 2, 3, 3, 4), None, f32(1, 1, 2, 2)], {"mode": "nearest"}),
    Case("pad-reflect", "Pad", lambda r: [n(r, 2, 3, 4, 4), i64(0, 0, 1, 2, 0, 0, 2, 1)], {"mode": "reflect"}),
    Case("sigmoid", "Sigmoid", lambda r: [n(r, 2, 3, 4, 4)]),
]


@pytest.mark.parametrize("case", LAYOUT_CASES, ids=str)
def test_channel_major_inputs_give_same_results(case):
    xs = case.inputs()
    cmx = [cmajor(v) if v is not None and v.ndim == 4 else v for v in xs]
    assert any(v is not None and v.ndim == 4 and not v.flags.c_contiguous for v in cmx)
    o1, s1, c1 = run(case.op, xs, case.attrs, training=case.training)
    o2, s2, c2 = run(case.op, cmx, case.attrs, training=case.training)
    np.testing.assert_allclose(o2[0], o1[0], rtol=1e-12, atol=1e-12)
    g = np.random.default_rng(1).standard_normal(o1[0].shape)
    g2 = cmajor(g) if g.ndim == 4 else g
    d1 = KERNEL[case.op].backward(c1, s1, [g], case.attrs)
    d2 = KERNEL[case.op].backward(c2, s2, [g2], case.attrs)
    for a, b in zip(d1, d2):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)


def test_spatial_outputs_are_channel_major_views():
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6))
    w = np.random.default_rng(1).standard_normal((4, 3, 3, 3))
    y = run("Conv", [x, w], {"pads": [1, 1, 1, 1]})[0][0]
    assert y.shape == (2, 4, 6, 6) and y.transpose(1, 0, 2, 3).flags.c_contiguous
    z = run("Relu", [y], {})[0][0]
    assert z.transpose(1, 0, 2, 3).flags.c_contiguous


# --------------------------------------------------------------------------- conv details

def test_conv_chunked_batch_equals_single_chunk(monkeypatch):
    xs = [np.random.default_rng(0).standard_normal(s) for s in [(5, 3, 7, 7), (4, 3, 3, 3), (4,)]]
    attrs = {"pads": [1, 1, 1, 1], "strides": [2, 1]}
    o1, s1, c1 = run("Conv", xs, attrs)
    g = np.random.default_rng(1).standard_normal(o1[0].shape)
    d1 = KERNEL["Conv"].backward(c1, s1, [g], attrs)
    monkeypatch.setattr(conv_plan, "COLS_BUDGET", 1)  # one sample per chunk
    o2, s2, c2 = run("Conv", xs, attrs)
    d2 = KERNEL["Conv"].backward(c2, s2, [g], attrs)
    np.testing.assert_allclose(o2[0], o1[0], rtol=1e-12)
    for a, b in zip(d1, d2):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)


def test_depthwise_channel_blocks_equal_one_block(monkeypatch):
    r = np.random.default_rng(0)
    xs = [r.standard_normal((2, 5, 7, 6)), r.standard_normal((5, 1, 3, 3))]
    attrs = {"group": 5, "pads": [1, 2, 1, 0], "strides": [2, 1]}
    o1, s1, c1 = run("Conv", xs, attrs)
    g = r.standard_normal(o1[0].shape)
    d1 = KERNEL["Conv"].backward(c1, s1, [g], attrs)
    from dlbatch.backends.numpy_cpu.ops.conv import depthwise
    monkeypatch.setattr(depthwise, "BLOCK_ELEMS", 1)  # one channel per block
    o2, s2, c2 = run("Conv", xs, attrs)
    d2 = KERNEL["Conv"].backward(c2, s2, [g], attrs)
    np.testing.assert_allclose(o2[0], o1[0], rtol=1e-12)
    for a, b in zip(d1, d2):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)


def test_maxpool_ties_route_each_gradient_to_one_window_maximum():
    x = np.zeros((1, 2, 6, 6))
    x[0, 0, 2:4, 2:4] = 1.0  # ties inside windows, among zeros and among ones
    attrs = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}
    outs, saved, ctx = run("MaxPool", [x], attrs)
    y = outs[0]
    for c, ho, wo in np.ndindex(*y.shape[1:]):
        g = np.zeros_like(y)
        g[0, c, ho, wo] = 1.0
        dx = KERNEL["MaxPool"].backward(ctx, saved, [g], attrs)[0]
        hit = np.argwhere(dx != 0)
        assert len(hit) == 1 and dx[tuple(hit[0])] == 1.0
        _, hc, h, w = hit[0]
        assert hc == c and 2 * ho - 1 <= h <= 2 * ho + 1 and 2 * wo - 1 <= w <= 2 * wo + 1
        assert x[0, c, h, w] == y[0, c, ho, wo]



@pytest.mark.parametrize("op,torch_pool", [("MaxPool", F.max_pool2d), ("AveragePool", F.avg_pool2d)])
def test_valid_pools_in_ceil_mode_drop_a_window_starting_past_the_input(op, torch_pool):
    """Windows of 1 with stride 3 over 5 rows start at 0 and 3; ceil mode must not add one at
    6 (the numpy kernels used to, with -inf or 0/0 there); over 7 columns the partial window at
    6 stays. torch pools with no padding are the reference."""
    x = np.random.default_rng(0).standard_normal((1, 2, 5, 7))
    attrs = {"kernel_shape": [1, 2], "strides": [3, 3], "auto_pad": "VALID", "ceil_mode": 1}
    y = run(op, [x], attrs)[0][0]
    want = torch_pool(torch.from_numpy(x), (1, 2), (3, 3), ceil_mode=True).numpy()
    assert y.shape == want.shape == (1, 2, 2, 3)
    np.testing.assert_allclose(y, want, rtol=1e-12)

@pytest.mark.parametrize("groups", [1, 3])
def test_conv_skips_input_gradient_when_not_needed(groups):
    r = np.random.default_rng(0)
    x, w, b = r.standard_normal((2, 3, 5, 5)), r.standard_normal((3, 3 // groups, 3, 3)), r.standard_normal(3)
    attrs = {"pads": [1, 1, 1, 1], "group": groups}
    _, s_all, c_all = run("Conv", [x, w, b], attrs)
    outs, saved, ctx = run("Conv", [x, w, b], attrs, needs=(False, True, True))
    g = r.standard_normal(outs[0].shape)
    dx, dw, db = KERNEL["Conv"].backward(ctx, saved, [g], attrs)
    ref = KERNEL["Conv"].backward(c_all, s_all, [g], attrs)
    assert dx is None
    np.testing.assert_allclose(dw, ref[1], rtol=1e-12)
    np.testing.assert_allclose(db, ref[2], rtol=1e-12)


def test_lrn_even_size_follows_spec():
    """ONNX: square_sum[c] sums channels max(0, c - floor((size-1)/2)) .. min(C-1, c + ceil((size-1)/2))."""
    x = np.random.default_rng(0).standard_normal((2, 6, 3, 2))
    size, alpha, beta, bias = 4, 0.5, 0.75, 1.0
    want = np.empty_like(x)
    for c in range(6):
        lo, hi = max(0, c - 1), min(5, c + 2)
        sq = (x[:, lo:hi + 1] ** 2).sum(axis=1)
        want[:, c] = x[:, c] / (bias + alpha / size * sq) ** beta
    got = run("LRN", [x], {"size": size, "alpha": alpha})[0][0]
    np.testing.assert_allclose(got, want, rtol=1e-12)


# --------------------------------------------------------------------------- dropout, errors

def test_dropout_training_mask_scale_and_rng():
    x = np.ones((200, 50), np.float32)
    outs, saved, ctx = run("Dropout", [x, np.array(0.25, np.float32)], {}, training=True)
    y = outs[0]
    assert y.dtype == np.float32
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((y == 0).mean() - 0.25) < 0.02
    # same generator state -> same mask; the mask is reused by backward
    y2 = run("Dropout", [x, np.array(0.25, np.float32)], {}, training=True)[0][0]
    np.testing.assert_array_equal(y, y2)
    dx = KERNEL["Dropout"].backward(ctx, saved, [np.full_like(x, 2.0)], {})[0]
    np.testing.assert_array_equal(dx, 2.0 * y)
    # inference is the identity
    assert run("Dropout", [x, np.array(0.25, np.float32)], {}, training=False)[0][0] is x


@pytest.mark.parametrize("op,inputs,attrs,needle", [
    ("Conv", [np.zeros((1, 2, 5)), np.zeros((3, 2, 3))], {}, "rank 3"),
    ("Conv", [np.zeros((1, 2, 5, 5)), np.zeros((3, 2, 3, 3))], {"auto_pad": "FOO"}, "auto_pad"),
    ("Conv", [np.zeros((1, 4, 5, 5)), np.zeros((3, 2, 3, 3))], {"group": 3}, "group"),
    ("MaxPool", [np.zeros((1, 2, 5, 5))], {"kernel_shape": [2, 2], "storage_order": 1}, "storage_order"),
    ("MaxPool", [np.zeros((1, 2, 5))], {"kernel_shape": [2]}, "MaxPool"),
    ("ConvTranspose", [np.zeros((1, 2, 5, 5, 5)), np.zeros((2, 3, 3, 3, 3))], {}, "rank 5"),
    ("Resize", [np.zeros((1, 2, 4, 4)), None, np.ones(4)], {"mode": "cubic"}, "cubic"),
    ("Resize", [np.zeros((1, 2, 4, 4)), None, np.ones(4)], {"mode": "linear", "antialias": 1}, "antialias"),
    ("Resize", [np.zeros((1, 2, 4, 4)), None, np.ones(4)],
     {"coordinate_transformation_mode": "tf_crop_and_resize"}, "tf_crop_and_resize"),
    ("Pad", [np.zeros((2, 3)), i64(1, 1, 1, 1)], {"mode": "mirror"}, "mirror"),
])
def test_unsupported_attributes_raise_clear_errors(op, inputs, attrs, needle):
    with pytest.raises(DLPluginError) as err:
        run(op, inputs, attrs)
    assert op in str(err.value) and needle in str(err.value)


def test_every_kernel_has_a_distinct_op_type():
    names = [k.op_type for k in KERNELS]
    assert len(names) == len(set(names)) and all(names)


# --------------------------------------------------------------------------- threads, fusion, buffers

import dlbatch.backends.numpy_cpu.buffers as buffers_mod  # noqa: E402
import dlbatch.backends.numpy_cpu.parallel as parallel_mod  # noqa: E402
from dlbatch.backends.numpy_cpu.ops import fused as fused_mod  # noqa: E402


@pytest.fixture
def threads():
    """Set the kernel thread count inside a test; restored afterwards."""
    before = parallel_mod.num_threads()
    yield parallel_mod.set_num_threads
    parallel_mod.set_num_threads(before)


def _fwd_bwd(op, xs, attrs, training=True, seed=1):
    outs, saved, ctx = run(op, xs, attrs, training=training)
    g = np.random.default_rng(seed).standard_normal(outs[0].shape).astype(outs[0].dtype)
    return outs[0], KERNEL[op].backward(ctx, saved, [g], attrs), ctx


THREAD_CASES = [
    ("Conv", lambda r: [r.standard_normal((6, 8, 20, 20), np.float32), r.standard_normal((16, 8, 3, 3), np.float32)],
     {"pads": [1, 1, 1, 1]}),
    ("Conv", lambda r: [r.standard_normal((4, 8, 30, 30), np.float32), r.standard_normal((70, 8, 3, 3), np.float32)],
     {"pads": [1, 1, 1, 1], "strides": [2, 2]}),
    ("Conv", lambda r: [r.standard_normal((8, 70, 5, 5), np.float32), r.standard_normal((80, 70, 3, 3), np.float32)],
     {"pads": [1, 1, 1, 1]}),
    ("BatchNormalization", lambda r: [r.standard_normal((8, 6, 40, 40), np.float32) * 3 + 5,
                                      r.uniform(0.5, 1.5, 6).astype(np.float32), r.standard_normal(6).astype(np.float32),
                                      np.zeros(6, np.float32), np.ones(6, np.float32)], {}),
    ("MaxPool", lambda r: [r.standard_normal((4, 6, 40, 40), np.float32)], {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ("MaxPool", lambda r: [r.standard_normal((4, 6, 41, 41), np.float32)],
     {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("Relu", lambda r: [r.standard_normal((4, 8, 64, 64), np.float32)], {}),
]


@pytest.mark.parametrize("case", range(len(THREAD_CASES)))
def test_results_are_bit_identical_for_any_thread_count(case, threads, monkeypatch):
    """Chunking depends on shapes only and partial sums are combined in chunk order, so 1, 2 or
    3 threads (and repeated runs) give the same bits."""
    op, make, attrs = THREAD_CASES[case]
    monkeypatch.setattr(conv_plan, "COLS_BUDGET", 1 << 16)  # many chunks even for small test shapes
    monkeypatch.setattr(conv_plan, "SPLIT_MIN_BYTES", 0)
    monkeypatch.setattr(util_mod, "TASK_ELEMS", 1 << 10)
    monkeypatch.setattr(util_mod, "FLAT_TASK_ELEMS", 1 << 12)
    xs = make(np.random.default_rng(0))
    results = []
    for n in (1, 2, 3, 2):
        threads(n)
        with parallel_mod.blas_single_threaded():
            y, grads, _ = _fwd_bwd(op, xs, attrs)
        results.append((y, grads))
    y0, g0 = results[0]
    for y, grads in results[1:]:
        np.testing.assert_array_equal(y, y0)
        for a, b in zip(grads, g0):
            assert (a is None) == (b is None)
            if a is not None:
                np.testing.assert_array_equal(a, b)


def test_parallel_run_keeps_order_propagates_errors_and_nests(threads):
    threads(3)
    assert parallel_mod.run(lambda i: i * i, list(range(50))) == [i * i for i in range(50)]
    nested = parallel_mod.run(lambda i: sum(parallel_mod.run(lambda j: j, list(range(i)))), list(range(8)))
    assert nested == [sum(range(i)) for i in range(8)]

    def boom(i):
        if i == 7:
            raise ValueError("item 7")
        return i

    with pytest.raises(ValueError, match="item 7"):
        parallel_mod.run(boom, list(range(20)))


def test_parallel_run_from_concurrent_callers_and_thread_count_changes(threads):
    """Two Python threads training side by side share the helpers (the one that finds them busy
    works alone); changing the thread count retires the old helpers without a deadlock."""
    import threading
    threads(2)
    out, errors = {}, []

    def caller(k):
        try:
            for _ in range(200):
                got = parallel_mod.run(lambda i: (k, i), list(range(6)))
                assert got == [(k, i) for i in range(6)]
            out[k] = True
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    ts = [threading.Thread(target=caller, args=(k,)) for k in range(3)]
    for t_ in ts:
        t_.start()
    for n_threads in (3, 2, 4, 2):
        threads(n_threads)
        assert parallel_mod.run(lambda i: -i, list(range(9))) == [-i for i in range(9)]
    for t_ in ts:
        t_.join(timeout=60)
    assert not errors and sorted(out) == [0, 1, 2]
    used = {threading.current_thread().name}
    seen = parallel_mod.run(lambda i: (time.sleep(0.01), threading.current_thread().name)[1], list(range(8)))
    assert len(set(seen) - used) >= 1  # a helper thread took part


def test_parallel_run_keeps_no_reference_to_its_items(threads):
    """Helper threads must drop the finished region's work: arrays it references would stay
    alive and the program's buffer pool could not reuse them (peak memory grew 40%)."""
    import weakref
    threads(2)

    class Big:
        pass

    big = Big()
    ref = weakref.ref(big)
    assert parallel_mod.run(lambda o: o is not None, [big] * 4) == [True] * 4
    del big
    assert ref() is None


def test_blas_thread_setting_is_restored():
    ctl = parallel_mod._blas_ctl()
    if not ctl.available:
        pytest.skip("no controllable BLAS")
    before = ctl.get()
    with parallel_mod.blas_single_threaded():
        assert ctl.get() == 1
        with parallel_mod.blas_single_threaded():
            assert ctl.get() == 1
        assert ctl.get() == 1
    assert ctl.get() == before


CONV_PATH_CASES = [
    ((2, 3, 9, 8), (5, 3, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((2, 4, 7, 6), (3, 4, 3, 2), {"dilations": [2, 2], "pads": [2, 1, 2, 1]}),
    ((3, 2, 6, 6), (4, 2, 2, 2), {"auto_pad": "SAME_LOWER"}),
    ((2, 3, 5, 5), (70, 3, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((4, 3, 8, 8), (6, 3, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]}),
]


@pytest.mark.parametrize("case", range(len(CONV_PATH_CASES)), ids=lambda i: f"geom{i}")
@pytest.mark.parametrize("switch", ["flat_im2col", "full_k_dw", "dw_orientation", "row_chunks",
                                    "dw_from_x_columns"])
def test_conv_internal_paths_agree(case, switch, monkeypatch):
    """Each internal Conv variant against the default path: flat-plane vs per-tap im2col,
    whole-column vs chunked dW, both dW GEMM orientations, row chunks (two-phase col2im),
    stride-1 dW from the columns of x instead of those of dy."""
    xs_shape, w_shape, attrs = CONV_PATH_CASES[case]
    r = np.random.default_rng(case)
    xs = [r.standard_normal(xs_shape), r.standard_normal(w_shape)]
    y1, g1, _ = _fwd_bwd("Conv", xs, attrs)
    if switch == "flat_im2col":
        monkeypatch.setattr(conv_plan, "FLAT_MAX", 0)
    elif switch == "full_k_dw":
        monkeypatch.setattr(conv_gemm, "FULL_COLS_BUDGET", 0 if conv_gemm.FULL_COLS_BUDGET else 1 << 30)
    elif switch == "dw_orientation":
        flipped = 0 if w_shape[0] < conv_gemm.DW_TRANSPOSED_BELOW else 10 ** 6
        monkeypatch.setattr(conv_gemm, "DW_TRANSPOSED_BELOW", flipped)
    elif switch == "dw_from_x_columns":
        monkeypatch.setattr(conv_gemm, "SHARED_COLUMNS", False)
    else:
        monkeypatch.setattr(conv_plan, "COLS_BUDGET", 1)
    y2, g2, _ = _fwd_bwd("Conv", xs, attrs)
    np.testing.assert_allclose(y2, y1, rtol=1e-12, atol=1e-12)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(b, a, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("layout", ["nchw", "channel_major"])
@pytest.mark.parametrize("shape,attrs,budget", [
    (((2, 3, 9, 8), (5, 3, 3, 3)), {"pads": [1, 1, 1, 1]}, None),
    (((2, 4, 9, 7), (3, 4, 3, 3)), {"pads": [2, 0, 1, 2], "dilations": [2, 1]}, None),
    (((2, 70, 6, 6), (8, 70, 3, 3)), {"pads": [1, 1, 1, 1]}, None),  # dW GEMM untransposed (C >= 64)
    (((1, 3, 12, 10), (4, 3, 5, 5)), {"pads": [2, 2, 2, 2]}, 1),  # row chunks of one sample
], ids=["3x3", "asym-dilated", "wide-input", "row-chunks"])
def test_conv_stride1_dw_from_dy_columns_matches_torch(shape, attrs, budget, layout, monkeypatch):
    """Stride-1 backward takes dW from the columns of dy that dx gathers (x @ cols.T, flipped);
    checked against torch autograd for both memory layouts of x."""
    called = []
    real = conv_gemm._backward_shared_columns
    monkeypatch.setattr(conv_gemm, "_backward_shared_columns", lambda *a: called.append(1) or real(*a))
    if budget is not None:
        monkeypatch.setattr(conv_plan, "COLS_BUDGET", budget)
    r = np.random.default_rng(11)
    x, w = r.standard_normal(shape[0]), r.standard_normal(shape[1])
    x = cmajor(x) if layout == "channel_major" else x
    compare_with_torch("Conv", [x, w], attrs, torch_conv(attrs), (0, 1))
    assert called


def test_conv_full_k_dw_is_used_and_matches_torch(monkeypatch):
    """Small maps with many channels take the whole-column dW (one K per GEMM)."""
    called = []
    real = conv_gemm._dw_full_k
    monkeypatch.setattr(conv_gemm, "_dw_full_k", lambda *a: called.append(1) or real(*a))
    monkeypatch.setattr(conv_plan, "SPLIT_MIN_BYTES", 0)
    r = np.random.default_rng(3)
    xs = [r.standard_normal((4, 96, 3, 3)), r.standard_normal((96, 96, 3, 3))]
    compare_with_torch("Conv", xs, {"pads": [1, 1, 1, 1]}, torch_conv({"pads": [1, 1, 1, 1]}), (0, 1))
    assert called


def test_fused_kernels_equal_the_node_sequence():
    r = np.random.default_rng(0)
    x = r.standard_normal((4, 5, 9, 9)) * 2 + 1
    bn = [x, r.uniform(0.5, 1.5, 5), r.standard_normal(5), r.standard_normal(5) * 0.1, r.uniform(0.5, 2, 5)]
    g = r.standard_normal(x.shape)
    for training in (True, False):
        o1, s1, c1 = run("BatchNormalization", bn, {}, training=training)
        o2, s2, c2 = run("Relu", [o1[0]], {})
        d2 = KERNEL["Relu"].backward(c2, s2, [g], {})
        d1 = KERNEL["BatchNormalization"].backward(c1, s1, d2, {})
        ctx = OpContext(training=training, needs_input_grad=(True, True, True, False, False))
        k = fused_mod.BatchNormRelu()
        out, saved = k.forward(ctx, list(bn), (({}, 5), ({}, 1)))
        np.testing.assert_allclose(out[0], o2[0], rtol=1e-12, atol=1e-12)
        df = k.backward(ctx, saved, [g], (({}, 5), ({}, 1)))
        for a, b in zip(d1[:3], df[:3]):
            np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)
        if training:
            for i in (3, 4):
                np.testing.assert_allclose(ctx.statistic_updates[i], c1.statistic_updates[i], rtol=1e-12)
    a, b = r.standard_normal((3, 4, 5, 5)), r.standard_normal((3, 4, 5, 5))
    o1, s1, c1 = run("Add", [a, b], {})
    o2, s2, c2 = run("Relu", [o1[0]], {})
    d = KERNEL["Add"].backward(c1, s1, KERNEL["Relu"].backward(c2, s2, [g[:3, :4, :5, :5]], {}), {})
    ctx = OpContext(training=True, needs_input_grad=(True, True))
    out, saved = fused_mod.AddRelu().forward(ctx, [a, b], None)
    np.testing.assert_array_equal(out[0], o2[0])
    for u, v in zip(d, fused_mod.AddRelu().backward(ctx, saved, [g[:3, :4, :5, :5]], None)):
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("pool", [
    {"kernel_shape": [2, 2], "strides": [2, 2]},  # fused fast path
    {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},  # the two kernels in turn
], ids=["2x2", "3x3-pad"])
@pytest.mark.parametrize("need_x", [True, False])
def test_fused_batchnorm_relu_maxpool_training_matches_torch(pool, need_x):
    """BatchNormalization -> Relu -> MaxPool in training: output, gradients of x, scale and bias
    and the running statistics against torch autograd in float64 (continuous data: no ties)."""
    r = np.random.default_rng(5)
    x = cmajor(r.standard_normal((3, 4, 8, 10)) * 2 + 0.3)
    scale, bias = r.uniform(-1.5, 1.5, 4), r.standard_normal(4)
    mean, var = r.standard_normal(4) * 0.1, r.uniform(0.5, 2, 4)
    g = r.standard_normal((3, 4) + ((4, 5) if pool["kernel_shape"] == [2, 2] else (4, 5)))
    ctx = OpContext(training=True, bn_momentum=0.8, needs_input_grad=(need_x, True, True, False, False))
    k = fused_mod.FUSED[("BatchNormalization", "Relu", "MaxPool")]
    links = (({"epsilon": 1e-3}, 5), ({}, 1), (pool, 1))
    out, saved = k.forward(ctx, [x, scale, bias, mean, var], links)
    grads = k.backward(ctx, saved, [g], links)

    tx, ts, tb = (torch.tensor(np.ascontiguousarray(a), requires_grad=True) for a in (x, scale, bias))
    rm, rv = torch.tensor(mean), torch.tensor(var)
    ty = F.batch_norm(tx, rm, rv, ts, tb, training=True, momentum=0.2, eps=1e-3)
    ty = F.max_pool2d(F.relu(ty), pool["kernel_shape"], pool["strides"], padding=pool.get("pads", [0])[0])
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(out[0], ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    if need_x:
        np.testing.assert_allclose(grads[0], tx.grad.numpy(), rtol=1e-9, atol=1e-11)
    else:
        assert grads[0] is None
    np.testing.assert_allclose(grads[1], ts.grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(grads[2], tb.grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(ctx.statistic_updates[3], rm.numpy(), rtol=1e-12)
    np.testing.assert_allclose(ctx.statistic_updates[4], rv.numpy(), rtol=1e-12)


def test_fused_batchnorm_relu_maxpool_is_bit_identical_for_any_thread_count(threads, monkeypatch):
    monkeypatch.setattr(util_mod, "TASK_ELEMS", 1 << 10)  # many channel blocks
    r = np.random.default_rng(8)
    ins = [r.standard_normal((4, 6, 20, 20)).astype(np.float32), r.uniform(0.5, 1.5, 6).astype(np.float32),
           r.standard_normal(6).astype(np.float32), np.zeros(6, np.float32), np.ones(6, np.float32)]
    g = r.standard_normal((4, 6, 10, 10)).astype(np.float32)
    k = fused_mod.FUSED[("BatchNormalization", "Relu", "MaxPool")]
    links = (({}, 5), ({}, 1), ({"kernel_shape": [2, 2], "strides": [2, 2]}, 1))
    results = []
    for n in (1, 2, 3):
        threads(n)
        ctx = OpContext(training=True, needs_input_grad=(True, True, True, False, False))
        out, saved = k.forward(ctx, ins, links)
        results.append([np.array(out[0])] + [np.array(v) for v in k.backward(ctx, saved, [g], links)[:3]])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def test_fused_batchnorm_relu_maxpool_breaks_ties_like_the_node_sequence():
    """Pooling before the ReLU must pick the same winner as MaxPool after it, ties included
    (integer-valued data makes equal maxima common; negative windows pass no gradient)."""
    r = np.random.default_rng(6)
    x = r.integers(-3, 4, (2, 3, 6, 8)).astype(np.float64)
    bn = [x, np.array([1.0, -0.5, 2.0]), np.array([0.1, 0.0, -0.2]), np.zeros(3), np.ones(3)]
    pool = {"kernel_shape": [2, 2], "strides": [2, 2]}
    g = r.standard_normal((2, 3, 3, 4))
    o1, s1, c1 = run("BatchNormalization", bn, {}, training=True)
    o2, s2, c2 = run("Relu", [o1[0]], {})
    o3, s3, c3 = run("MaxPool", [o2[0]], pool)
    d = KERNEL["MaxPool"].backward(c3, s3, [g], pool)
    d = KERNEL["BatchNormalization"].backward(c1, s1, KERNEL["Relu"].backward(c2, s2, d, {}), {})
    ctx = OpContext(training=True, needs_input_grad=(True, True, True, False, False))
    k = fused_mod.FUSED[("BatchNormalization", "Relu", "MaxPool")]
    links = (({}, 5), ({}, 1), (pool, 1))
    out, saved = k.forward(ctx, list(bn), links)
    np.testing.assert_array_equal(out[0], o3[0])
    for a, b in zip(d[:3], k.backward(ctx, saved, [g], links)[:3]):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("conv_bias", [False, True])
def test_inference_conv_batchnorm_folding(relu, conv_bias):
    r = np.random.default_rng(1)
    x, w = r.standard_normal((2, 3, 7, 7)), r.standard_normal((4, 3, 3, 3))
    cb = [r.standard_normal(4)] if conv_bias else []
    stats = [r.uniform(0.5, 1.5, 4), r.standard_normal(4), r.standard_normal(4), r.uniform(0.5, 2, 4)]
    attrs = {"pads": [1, 1, 1, 1]}
    y = run("Conv", [x, w] + cb, attrs)[0][0]
    y = run("BatchNormalization", [y] + stats, {"epsilon": 1e-3})[0][0]
    if relu:
        y = np.maximum(y, 0)
    k = fused_mod.FUSED[("Conv", "BatchNormalization", "Relu") if relu else ("Conv", "BatchNormalization")]
    ctx = OpContext(training=False, needs_input_grad=(False,) * 7)
    links = ((attrs, 2 + len(cb)), ({"epsilon": 1e-3}, 5)) + ((({}, 1),) if relu else ())
    out = k.forward(ctx, [x, w] + cb + stats, links)[0][0]
    np.testing.assert_allclose(out, y, rtol=1e-11, atol=1e-11)


def test_program_fuses_and_falls_back_when_an_intermediate_is_wanted():
    import dlbatch
    model = dlbatch.create_dl_model("classification", backbone="compact", backend="numpy", class_ids=[0, 1],
                                    image_dimensions=[16, 16, 3], batch_size=2)
    prog = model.program()
    train_ops = [st.op_type for st in prog._fused.steps]
    infer_ops = [st.op_type for st in prog._infer.steps]
    assert "BatchNormalization+Relu" in train_ops and "Relu" not in train_ops
    assert "BatchNormalization+Relu+MaxPool" in train_ops and "MaxPool" not in train_ops
    assert "Conv+BatchNormalization+Relu" in infer_ops and "Conv" not in infer_ops
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    name = model.meta["input"]
    hidden = sorted(prog._hidden)[0]
    logits = model.graph.outputs[0].name
    for training in (False, True):
        both = prog.forward(model.values, {name: x}, training=training, wanted=(hidden, logits))
        only = prog.forward(model.values, {name: x}, training=training, wanted=(logits,))
        assert both.outputs[hidden].shape[0] == 2
        np.testing.assert_allclose(both.outputs[logits], only.outputs[logits], rtol=1e-5, atol=1e-6)


def test_buffer_pool_reuses_only_unreferenced_buffers():
    pool = buffers_mod.BufferPool()
    assert buffers_mod.empty((1000, 100), np.float32).base is None  # no pool active: plain np.empty
    with pool:
        a = buffers_mod.empty((1000, 100), np.float32)
        a.fill(1)
        view = a.T[3:]  # a view keeps the buffer in use
        del a
        b = buffers_mod.empty((1000, 100), np.float32)
        assert not np.shares_memory(b, view)
        del view
        c = buffers_mod.empty((100, 1000), np.float32)  # a's buffer is free again: reused
        assert not np.shares_memory(c, b) and len(pool._bases[(100000, "f")]) == 2
        del b
        d = buffers_mod.empty((100, 1000), np.float32)  # b's
        assert len(pool._bases[(100000, "f")]) == 2
        e = buffers_mod.empty_like(cmajor(np.zeros((10, 20, 30, 40), np.float32)))
        assert e.transpose(1, 0, 2, 3).flags.c_contiguous
        assert not np.shares_memory(c, d)
    for _ in range(buffers_mod.KEEP_GENERATIONS + 2):
        pool.new_generation()
    assert sum(len(v) for v in pool._bases.values()) == 3  # c, d, e still referenced


def test_numpy_solver_step_is_bit_identical_to_the_generic_one():
    from dlbatch.backends.numpy_cpu import solver as solver_mod
    from dlbatch.core import solvers
    r = np.random.default_rng(0)
    hp = {"learning_rate": 0.01, "momentum": 0.9, "adam_beta1": 0.9, "adam_beta2": 0.999, "adam_epsilon": 1e-8}
    for dt in (np.float32, np.float64):
        params = {"w": r.standard_normal((300, 700)).astype(dt), "b": r.standard_normal(5).astype(dt)}
        grads = {k: r.standard_normal(v.shape).astype(dt) for k, v in params.items()}
        copies = {k: v.copy() for k, v in list(params.items()) + [("g" + k, g) for k, g in grads.items()]}
        for solver in (solvers.SGD(), solvers.Adam()):
            pool = buffers_mod.BufferPool()
            p1, s1 = solver.step(np, params, grads, solvers.empty_state(), hp)
            p2, s2 = solver_mod.fused_step(solver, params, grads, solvers.empty_state(), hp, pool)
            p1, s1 = solver.step(np, p1, grads, s1, hp)
            p2, s2 = solver_mod.fused_step(solver, p2, grads, s2, hp, pool)
            for k in params:
                np.testing.assert_array_equal(p2[k], p1[k])
                assert p2[k].dtype == dt
                for slot in ("velocity", "adam_m", "adam_v"):
                    if k in s1[slot]:
                        np.testing.assert_array_equal(s2[slot][k], s1[slot][k])
            assert s2["step"] == s1["step"] == 2
        for k, v in params.items():  # inputs untouched
            np.testing.assert_array_equal(v, copies[k])
            np.testing.assert_array_equal(grads[k], copies["g" + k])


def test_all_finite_checks_sums_then_elements():
    from dlbatch.backends.numpy_cpu.solver import all_finite
    big = np.full(1 << 20, 3e38, np.float32)  # finite, but its sum overflows
    assert all_finite([np.ones(10), big, np.ones((3, 4)).T])
    assert not all_finite([np.ones(10), np.array([1.0, np.inf])])
    assert not all_finite([np.array([np.nan], np.float32)])
    assert all_finite([np.arange(5)])


def test_all_finite_checks_small_arrays_together():
    """Small arrays are concatenated and checked as one: a NaN or inf in any of them (of either
    float type, or complex, or a non-contiguous view) is found, and a concatenation whose sum
    overflows is checked element-wise."""
    from dlbatch.backends.numpy_cpu.solver import SMALL, all_finite
    r = np.random.default_rng(0)
    small = [r.standard_normal(n).astype(t) for n, t in zip((3, 40, 700, 5), (np.float32, np.float64) * 2)]
    assert all_finite(small + [np.ones((4, 6)).T, np.array([1 + 2j])])
    for i in range(len(small)):
        for bad in (np.nan, np.inf, -np.inf):
            arrays = [a.copy() for a in small]
            arrays[i][-1] = bad
            assert not all_finite(arrays + [np.ones(SMALL)]), (i, bad)
    view = np.ones((6, 6))[::2, ::3].copy(order="F")
    view[1, 1] = np.nan
    assert not all_finite([np.ones(3), view]) and not all_finite([np.ones(3), np.array([np.nan * 1j])])
    near_max = [np.full(8, 3e38, np.float32) for _ in range(4)]  # finite; their sum overflows
    assert all_finite(near_max)


def test_maxpool_without_input_gradient_computes_maxima_only():
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 9))
    for attrs in ({"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
                  {"kernel_shape": [2, 2], "strides": [2, 2]}):
        full = run("MaxPool", [x], attrs)[0][0]
        outs, saved, ctx = run("MaxPool", [x], attrs, needs=(False,))
        np.testing.assert_array_equal(outs[0], full)
        assert KERNEL["MaxPool"].backward(ctx, saved, [np.ones_like(full)], attrs) == [None]


def test_numpy_training_is_bit_identical_for_one_and_two_threads(threads):
    import dlbatch
    r = np.random.default_rng(0)
    data = [{"image": r.standard_normal((24, 24, 3)).astype(np.float32) * 50, "image_label_id": i % 3}
            for i in range(8)]
    weights = []
    for n in (1, 2):
        threads(n)
        model = dlbatch.create_dl_model("classification", backbone="compact", backend="numpy", class_ids=[0, 1, 2],
                                        image_dimensions=[24, 24, 3], batch_size=8, learning_rate=0.01,
                                        momentum=0.9, seed=1)
        for _ in range(2):
            dlbatch.train_dl_model_batch(model, data)
        weights.append(model.state_dict())
    for k in weights[0]:
        np.testing.assert_array_equal(np.asarray(weights[1][k]), np.asarray(weights[0][k]), err_msg=k)


@pytest.mark.parametrize("pool", [{"kernel_shape": [2, 2], "strides": [2, 2]},
                                  {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}])
def test_inference_conv_batchnorm_relu_maxpool_fusion(pool, monkeypatch):
    monkeypatch.setattr(conv_plan, "SPLIT_MIN_BYTES", 0)  # several chunks, each pooled from cache
    r = np.random.default_rng(2)
    x, w = r.standard_normal((3, 4, 10, 10)), r.standard_normal((6, 4, 3, 3))
    stats = [r.uniform(0.5, 1.5, 6), r.standard_normal(6), r.standard_normal(6), r.uniform(0.5, 2, 6)]
    attrs = {"pads": [1, 1, 1, 1]}
    y = run("Conv", [x, w], attrs)[0][0]
    y = np.maximum(run("BatchNormalization", [y] + stats, {})[0][0], 0)
    y = run("MaxPool", [y], pool)[0][0]
    ctx = OpContext(training=False, needs_input_grad=(False,) * 6)
    k = fused_mod.FUSED[("Conv", "BatchNormalization", "Relu", "MaxPool")]
    out = k.forward(ctx, [x, w] + stats, ((attrs, 2), ({}, 5), ({}, 1), (pool, 1)))[0][0]
    np.testing.assert_allclose(out, y, rtol=1e-11, atol=1e-11)
