"""Example third-party dlbatch plugin, found through its entry point in the group "dlbatch".

It uses only dlbatch's public hooks (dlbatch.core.hookspecs), exactly as dlbatch's built-ins do:
- losses "label_smoothing_logistic" and "binary_logistic",
- model type "multi_label_classification" (any number of classes per image, binary_logistic),
- backend "numpy64" (the numpy backend in float64) with the numpy kernels registered for it,
- the numpy kernel of the ONNX op Softplus, for "numpy" and "numpy64".
"""
from __future__ import annotations

from dlbatch.core.hookspecs import hookimpl

from .losses import BinaryLogistic, LabelSmoothingLogistic
from .multi_label import MultiLabelClassification
from .numpy64 import NAME as NUMPY64, Numpy64Backend
from .softplus import Softplus

__all__ = ["BinaryLogistic", "LabelSmoothingLogistic", "MultiLabelClassification", "Numpy64Backend", "Softplus"]


@hookimpl
def dlbatch_register_losses(register):
    register(LabelSmoothingLogistic())
    register(BinaryLogistic())


@hookimpl
def dlbatch_register_model_types(register):
    register(MultiLabelClassification())


@hookimpl
def dlbatch_register_backends(register):
    register(Numpy64Backend())


@hookimpl
def dlbatch_register_ops(register):
    from dlbatch.backends.numpy_cpu.ops import KERNELS
    for kernel in KERNELS:
        register(NUMPY64, kernel.op_type, kernel)
    softplus = Softplus()
    register("numpy", softplus.op_type, softplus)
    register(NUMPY64, softplus.op_type, softplus)
