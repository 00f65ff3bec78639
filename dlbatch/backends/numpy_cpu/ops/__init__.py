"""The numpy kernels, one instance per ONNX op type (registered by the numpy plugin)."""
from __future__ import annotations

from .activations import Clip, HardSigmoid, HardSwish, LeakyRelu, Relu, Sigmoid, Tanh
from .batchnorm import BatchNormalization
from .conv import Conv, ConvTranspose
from .dropout import Dropout
from .elementwise import Add, Div, Mul, Sub, Sum
from .linear import Gemm, MatMul
from .lrn import LRN
from .pooling import AveragePool, GlobalAveragePool, MaxPool
from .indexing import Expand, Gather, Slice, Split, Where
from .normalization import InstanceNormalization, LayerNormalization
from .pointwise import Abs, Erf, Exp, Gelu, Log, Neg, Pow, Reciprocal, Sqrt
from .reduce import ReduceMax, ReduceMean, ReduceSum
from .shapecalc import Cast, ConstantOfShape, Equal, Mod, Range, Shape
from .resize import Resize
from .shape import Concat, Flatten, Identity, Pad, Reshape, Squeeze, Transpose, Unsqueeze
from .softmax import Softmax

KERNELS = [
    Conv(), ConvTranspose(), BatchNormalization(),
    Relu(), LeakyRelu(), Clip(), Sigmoid(), Tanh(), HardSigmoid(), HardSwish(),
    MaxPool(), AveragePool(), GlobalAveragePool(),
    Gemm(), MatMul(),
    Add(), Sub(), Mul(), Div(), Sum(),
    Concat(), Flatten(), Reshape(), Transpose(), Identity(), Squeeze(), Unsqueeze(), Pad(),
    Softmax(), Dropout(), LRN(), ReduceMean(), Resize(),
    # issue 15: transformers, ConvNeXt and GroupNorm networks as PyTorch exports them
    LayerNormalization(), InstanceNormalization(),
    Erf(), Gelu(), Pow(), Sqrt(), Exp(), Log(), Neg(), Abs(), Reciprocal(),
    Gather(), Slice(), Split(), Expand(), Where(),
    Shape(), ConstantOfShape(), Range(), Cast(), Equal(), Mod(),
    ReduceSum(), ReduceMax(),
]
