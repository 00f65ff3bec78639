"""The backend "numpy64": dlbatch's numpy backend that always computes in float64.

A model placed on it keeps its `precision` parameter (what a written .onnx file stores), but
every floating array it holds or receives is float64, so training and inference run in double
precision. It runs the numpy backend's own kernels, which the plugin registers for "numpy64".
"""
from __future__ import annotations

import numpy as np

from dlbatch.backends.numpy_cpu.backend import NumpyBackend
from dlbatch.core.backend import missing_kernel_error

NAME = "numpy64"


class Numpy64Backend(NumpyBackend):
    name = NAME
    description = "the numpy backend in float64 whatever the model's precision (dlbatch-example-plugin)"

    def asarray(self, array, *, device="cpu", dtype=None):
        arr = np.asarray(array)
        target = np.dtype(dtype) if dtype is not None else arr.dtype
        if target.kind == "f":
            target = np.dtype(np.float64)
        return arr if arr.dtype == target else arr.astype(target)

    def compile(self, graph, kernels, *, device, dtype):
        err = missing_kernel_error(graph, kernels, self.name)
        if err:
            raise err
        return super().compile(graph, kernels, device=device, dtype="float64")
