"""The onnxruntime backend: inference only (`trains = False`), on the CPU, in float32.

Its arrays are numpy arrays, as on the numpy backend, so a model moves between the two for
free; the weights go into an onnxruntime InferenceSession when the program is first run and
again only after they change (program.py). onnxruntime is imported on first use
(check_device, compile), never at plugin load.

Threads: `DLBATCH_NUM_THREADS` (the numpy backend's setting) sets the session's intra-op
thread count when it is set; otherwise onnxruntime chooses (one thread per physical core).
"""
from __future__ import annotations

import os

import numpy as np

from ...core.backend import Backend
from ...core.errors import DLBackendError
from ._lazy import require_onnxruntime

ENV_THREADS = "DLBATCH_NUM_THREADS"
DTYPES = ("float32",)


def env_num_threads() -> int | None:
    """The thread count from DLBATCH_NUM_THREADS, or None (unset or not a number)."""
    text = os.environ.get(ENV_THREADS, "").strip()
    try:
        return max(1, int(text)) if text else None
    except ValueError:
        return None


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    description = ("onnxruntime InferenceSession on the cpu, float32, inference only (train on numpy or "
                   "torch); optional extra dlbatch[onnxruntime]")
    trains = False

    @property
    def xp(self):
        return np

    def compile(self, graph, kernels, *, device, dtype):
        from .program import OnnxRuntimeProgram
        self.check_device(device)
        if dtype not in DTYPES:
            raise DLBackendError(f"the onnxruntime backend runs float32 models, not {dtype!r} (onnxruntime's "
                                 "CPU kernels, Conv among them, have no float64): set precision to "
                                 "'float32', or use backend 'numpy' or 'torch' for this precision")
        return OnnxRuntimeProgram(graph, dtype=dtype, session_options=self.session_options)

    def session_options(self):
        """Options of every session this backend builds (threads from DLBATCH_NUM_THREADS)."""
        ort = require_onnxruntime()
        options = ort.SessionOptions()
        threads = env_num_threads()
        if threads is not None:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3  # errors only: they reach the user as DLBackendError
        return options

    def asarray(self, array, *, device="cpu", dtype=None):
        arr = np.asarray(array)
        if dtype is not None and arr.dtype != dtype:
            arr = arr.astype(dtype)
        return arr

    def to_numpy(self, array):
        return np.asarray(array)

    def check_device(self, device: str) -> str:
        require_onnxruntime()
        if device != "cpu":
            raise DLBackendError(f"the onnxruntime backend runs on 'cpu' only, not {device!r}; use "
                                 "backend='torch' (pip install 'dlbatch[torch]') for a GPU")
        return device
