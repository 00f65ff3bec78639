"""Torch kernels, one module per concept. This package's __init__ only names them (no torch
import): `lazy_kernels()` returns registration handles that load a module on first compile."""
from __future__ import annotations

from ..kernel import LazyTorchKernel

# op type -> module (in this package) that defines a kernel class of the same name
OPS: dict[str, str] = {
    "Conv": "conv", "ConvTranspose": "conv",
    "BatchNormalization": "batchnorm",
    "Relu": "activations", "LeakyRelu": "activations", "Clip": "activations",
    "Sigmoid": "activations", "Tanh": "activations", "HardSigmoid": "activations",
    "HardSwish": "activations",
    "MaxPool": "pooling", "AveragePool": "pooling", "GlobalAveragePool": "pooling",
    "Gemm": "linear", "MatMul": "linear",
    "Add": "elementwise", "Sub": "elementwise", "Mul": "elementwise", "Div": "elementwise",
    "Sum": "elementwise",
    "Concat": "shape", "Flatten": "shape", "Reshape": "shape", "Transpose": "shape",
    "Identity": "shape", "Unsqueeze": "shape", "Squeeze": "shape", "Pad": "shape",
    "Softmax": "softmax",
    "Dropout": "dropout",
    "LRN": "lrn",
    "ReduceMean": "reduce",
    "Resize": "resize",
    # issue 15: transformers, ConvNeXt and GroupNorm networks as PyTorch exports them
    "LayerNormalization": "normalization", "InstanceNormalization": "normalization",
    "Erf": "pointwise", "Gelu": "pointwise", "Pow": "pointwise", "Sqrt": "pointwise", "Exp": "pointwise",
    "Log": "pointwise", "Neg": "pointwise", "Abs": "pointwise", "Reciprocal": "pointwise",
    "Gather": "indexing", "Slice": "indexing", "Split": "indexing", "Expand": "indexing", "Where": "indexing",
    "Shape": "shapecalc", "ConstantOfShape": "shapecalc", "Range": "shapecalc", "Cast": "shapecalc",
    "Equal": "shapecalc", "Mod": "shapecalc",
    "ReduceSum": "reduce", "ReduceMax": "reduce",
}


def lazy_kernels() -> list[LazyTorchKernel]:
    return [LazyTorchKernel(op, f"{__name__}.{module}:{op}") for op, module in OPS.items()]
