"""The numpy CPU backend: always available, always deterministic (SPEC section 8)."""
from __future__ import annotations

import threading

import numpy as np

from ...core.backend import Backend
from ...core.errors import DLBackendError
from .buffers import BufferPool
from .program import NumpyProgram


class NumpyBackend(Backend):
    name = "numpy"
    description = "pure numpy on the CPU; forward and backward kernels per ONNX op"

    def __init__(self) -> None:
        # one backend object serves every model: each thread seeds and draws its own generator,
        # so models trained from several threads at once get the dropout masks of their own seed
        self._local = threading.local()
        self._pools: dict[str, BufferPool] = {}  # the solver's outputs; the weight prior's gradients

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

    def _pool(self, use: str) -> BufferPool:
        """The buffer pool of one use: its arrays of the last step are free again by the next
        (a pool shared by two uses would count two generations per step and release them)."""
        pool = self._pools.get(use)
        if pool is None:
            pool = self._pools.setdefault(use, BufferPool())
        return pool

    def add_weight_prior(self, params, grads, names, weight_prior):
        """One blocked, threaded pass into pooled arrays (solver.add_weight_prior), else the
        generic code."""
        from .solver import add_weight_prior
        reg = add_weight_prior(params, grads, names, weight_prior, self._pool("prior"))
        return super().add_weight_prior(params, grads, names, weight_prior) if reg is None else reg

    def solver_step(self, solver, params, grads, state, hp):
        """The built-in solvers as blocked, threaded updates (bit-identical to the generic
        step); any other solver runs its own generic step."""
        from .solver import fused_step
        result = fused_step(solver, params, grads, state, hp, self._pool("solver"))
        if result is None:
            return solver.step(self.xp, params, grads, state, hp)
        return result

    def solver_step_checked(self, solver, params, grads, state, hp):
        """The fused update with each block checked for finiteness while in cache
        (solver.fused_step_checked); a solver without a fused form, or a subclass with its own
        solver_step, gets that step and finite=None (the caller checks)."""
        from .solver import fused_step_checked
        result = None
        if type(self).solver_step is NumpyBackend.solver_step:
            result = fused_step_checked(solver, params, grads, state, hp, self._pool("solver"))
        return super().solver_step_checked(solver, params, grads, state, hp) if result is None else result

    def seed(self, seed: int) -> None:
        self._local.generator = np.random.default_rng(int(seed))
