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
from .reduce import ReduceMean
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
]
