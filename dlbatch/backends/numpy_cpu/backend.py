"""The numpy CPU backend: always available, always deterministic (SPEC section 8)."""
from __future__ import annotations

import threading

import numpy as np

from ...core.backend import Backend
from ...core.errors import DLBackendError
from .program import NumpyProgram


class NumpyBackend(Backend):
    name = "numpy"
    description = "pure numpy on the CPU; forward and backward kernels per ONNX op"

    def __init__(self) -> None:
        # one backend object serves every model: each thread seeds and draws its own generator,
        # so models trained from several threads at once get the dropout masks of their own seed
        self._local = threading.local()
        self._solver_pool = None

    @property
    def xp(self):
        return np

    def compile(self, graph, kernels, *, device, dtype):
        self.check_device(device)
        return NumpyProgram(graph, kernels, dtype, self._rng)

    def _rng(self) -> np.random.Generator:
        generator = getattr(self._local, "generator", None)
        if generator is None:
            generator = self._local.generator = np.random.default_rng(0)
        return generator

    def asarray(self, array, *, device="cpu", dtype=None):
        arr = np.asarray(array)
        if dtype is not None and arr.dtype != dtype:
            arr = arr.astype(dtype)
        return arr

    def to_numpy(self, array):
        return np.asarray(array)

    def check_device(self, device: str) -> str:
        if device != "cpu":
            raise DLBackendError(f"the numpy backend runs on 'cpu' only, not {device!r}; use "
                                 "backend='torch' (pip install 'dlbatch[torch]') for a GPU")
        return device

    def all_finite(self, arrays) -> bool:
        from .solver import all_finite
        return all_finite(arrays)

    def add_weight_prior(self, params, grads, names, weight_prior):
        """One blocked, threaded pass (solver.add_weight_prior), else the generic code."""
        from .solver import add_weight_prior
        reg = add_weight_prior(params, grads, names, weight_prior)
        return super().add_weight_prior(params, grads, names, weight_prior) if reg is None else reg

    def solver_step(self, solver, params, grads, state, hp):
        """The built-in solvers as blocked, threaded updates (bit-identical to the generic
        step); any other solver runs its own generic step."""
        from .buffers import BufferPool
        from .solver import fused_step
        if self._solver_pool is None:
            self._solver_pool = BufferPool()
        result = fused_step(solver, params, grads, state, hp, self._solver_pool)
        if result is None:
            return solver.step(self.xp, params, grads, state, hp)
        return result

    def seed(self, seed: int) -> None:
        self._local.generator = np.random.default_rng(int(seed))
