"""The torch backend: PyTorch on "cpu", "cuda" or "cuda:N"; autograd does backward.

torch is imported on first use (compile, asarray, check_device, ...), never at plugin load.
"""
from __future__ import annotations

import os
import re
import threading
from typing import Any, Mapping

import numpy as np

from ...core.backend import Backend
from ...core.errors import DLBackendError
from ._lazy import require_torch, require_xp

DTYPES = ("float32", "float64", "float16", "bfloat16")


def _channels_last(t) -> bool:
    """Whether a tensor is kept in channels_last memory: 4-D floats on the CPU (images and
    convolution weights), oneDNN's fastest layout there; the program keeps the activations in it
    too (program.py), and weights in it save a reorder per convolution and step (a conv weight
    gradient comes back in the weight's layout, and the solver keeps it)."""
    return t.dim() == 4 and t.is_floating_point() and t.device.type == "cpu"


class TorchBackend(Backend):
    name = "torch"
    description = "PyTorch on cpu or cuda; ONNX ops as torch functions, backward by autograd"
    # model precisions computed under torch.autocast over float32 master weights (program.py)
    autocast_precisions = ("bfloat16",)

    def __init__(self) -> None:
        # one backend object serves every model: each thread seeds and draws its own generators,
        # so models trained from several threads at once get the dropout masks of their own seed
        self._local = threading.local()
        self._deterministic = False
        self._saved_flags: tuple | None = None

    # -- namespaces ---------------------------------------------------------------------------
    @property
    def torch(self):
        return require_torch()

    @property
    def xp(self):
        return require_xp()

    # -- programs -----------------------------------------------------------------------------
    def compile(self, graph, kernels, *, device, dtype):
        from .program import TorchProgram
        device = self.check_device(device)
        if device == "cpu":
            from .allocator import tune_malloc_for_training
            tune_malloc_for_training()
        if dtype not in DTYPES:
            raise DLBackendError(f"the torch backend computes in {', '.join(DTYPES)}, not {dtype!r}")
        return TorchProgram(graph, kernels, device=device, dtype=dtype, backend=self)

    # -- arrays -------------------------------------------------------------------------------
    def asarray(self, array, *, device="cpu", dtype=None):
        torch = self.torch
        tdtype = getattr(torch, dtype) if dtype is not None else None
        if isinstance(array, torch.Tensor):
            t = array.detach().to(device=device, dtype=tdtype or array.dtype, copy=True)
            return t.contiguous(memory_format=torch.channels_last) if _channels_last(t) else t
        arr = np.asarray(array)
        if dtype is not None and dtype != "bfloat16" and arr.dtype != dtype:
            arr = arr.astype(dtype)
        if not arr.dtype.isnative:
            arr = arr.astype(arr.dtype.newbyteorder("="))
        if device != "cpu":
            # the transfer is the copy; a host copy is only needed for a read-only array
            host = np.ascontiguousarray(arr).reshape(arr.shape)  # ascontiguousarray makes 0-d 1-d
            if not host.flags.writeable:
                host = host.copy()
            return torch.from_numpy(host).to(device=device, dtype=tdtype)
        # on the CPU always a copy: the model must not alias the caller's numpy arrays
        if arr.ndim == 4 and arr.dtype.kind == "f" and arr.size and dtype != "bfloat16":
            # 4-D floats (images, convolution weights) in channels_last memory in one copy
            t = torch.empty(arr.shape, dtype=torch.from_numpy(np.empty(0, arr.dtype)).dtype,
                            memory_format=torch.channels_last)
            if arr.flags.writeable:  # torch's copy is faster; from_numpy refuses read-only arrays
                t.copy_(torch.from_numpy(arr))
            else:
                t.numpy()[...] = arr
            return t
        t = torch.from_numpy(np.array(arr, copy=True, order="C"))
        if tdtype is not None and t.dtype != tdtype:
            t = t.to(tdtype)
        return t

    def to_numpy(self, array) -> np.ndarray:
        """A C-ordered numpy copy (whatever the tensor's memory layout)."""
        torch = self.torch
        if not isinstance(array, torch.Tensor):
            return np.array(array, copy=True)
        t = array.detach()
        if t.dtype == torch.bfloat16:
            t = t.float()
        if t.device.type == "cpu":
            return t.numpy().copy()
        return t.cpu().numpy()

    def all_finite(self, arrays) -> bool:
        """One combined check per device and type, one host read each: the 2-norm of every
        floating tensor (torch._foreach_norm, one call for the list) is finite exactly when the
        tensor is, unless the sum of squares overflows; only then (or when a NaN/inf is really
        there) are the tensors checked element-wise."""
        torch = self.torch
        groups: dict[Any, list] = {}
        for a in arrays:
            if isinstance(a, torch.Tensor):
                if a.is_floating_point() and a.numel():
                    groups.setdefault((a.device, a.dtype), []).append(a)
            elif not np.isfinite(np.asarray(a, dtype=np.float64)).all():
                return False
        with torch.no_grad():
            for tensors in groups.values():
                norms = torch.stack(torch._foreach_norm(tensors, 2.0))
                if bool(torch.isfinite(norms.sum())):
                    continue
                flags = torch.stack([torch.isfinite(t).all() for t in tensors])
                if not bool(flags.all()):
                    return False
        return True

    # -- devices ------------------------------------------------------------------------------
    def check_device(self, device: str) -> str:
        torch = self.torch
        text = str(device).strip().lower()
        if text == "cpu":
            return "cpu"
        m = re.fullmatch(r"cuda(?::(\d+))?", text)
        if not m:
            raise DLBackendError(f"unknown device {device!r} for the torch backend; use 'cpu', 'cuda' "
                                 "or 'cuda:N'")
        index = int(m.group(1) or 0)
        if not torch.cuda.is_available():
            if torch.version.cuda is None:
                why = f"this torch build ({torch.__version__}) has no CUDA support"
            else:
                why = (f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device "
                       "(no NVIDIA driver, or CUDA_VISIBLE_DEVICES hides the GPUs)")
            raise DLBackendError(f"device {device!r} was asked for, but {why}. Available devices: cpu. "
                                 "Use device='cpu', or install a CUDA build of torch on a machine "
                                 "with an NVIDIA GPU")
        count = torch.cuda.device_count()
        if index >= count:
            have = ", ".join(["cpu"] + [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(count)])
            raise DLBackendError(f"device {device!r} does not exist; available devices: {have}")
        return f"cuda:{index}"

    # -- randomness and determinism -----------------------------------------------------------
    def seed(self, seed: int) -> None:
        """Seeds the calling thread's generators (and those it creates later)."""
        self._local.seed = int(seed)
        for gen in getattr(self._local, "generators", {}).values():
            gen.manual_seed(self._local.seed)

    def generator(self, device: str):
        """The calling thread's own generator for `device` (dropout masks); the global torch RNG
        is left alone."""
        generators = self._local.__dict__.setdefault("generators", {})
        gen = generators.get(device)
        if gen is None:
            gen = self.torch.Generator(device=device)
            gen.manual_seed(getattr(self._local, "seed", 0))
            generators[device] = gen
        return gen

    def set_deterministic(self, flag: bool) -> None:
        flag = bool(flag)
        if flag == self._deterministic:
            return  # called every step: touch torch's global switches only on a change
        torch = self.torch
        if flag:
            # cuBLAS needs a fixed workspace for reproducible GEMMs (read when cuBLAS starts)
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            self._saved_flags = (torch.are_deterministic_algorithms_enabled(),
                                 torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
        else:
            algos, cudnn_det, bench = self._saved_flags or (False, False, False)
            torch.use_deterministic_algorithms(algos)
            torch.backends.cudnn.deterministic = cudnn_det
            torch.backends.cudnn.benchmark = bench
        self._deterministic = flag

    # -- solver -------------------------------------------------------------------------------
    def add_weight_prior(self, params, grads, names, weight_prior):
        """Two multi-tensor calls (solver.add_weight_prior), else the generic code."""
        from .solver import add_weight_prior
        reg = add_weight_prior(params, grads, names, weight_prior)
        return super().add_weight_prior(params, grads, names, weight_prior) if reg is None else reg

    def solver_step(self, solver, params: dict, grads: dict, state: dict, hp: Mapping[str, Any]):
        from .solver import fused_step
        result = fused_step(solver, params, grads, state, hp)
        if result is None:  # a solver this backend has no fused form of
            return solver.step(self.xp, params, grads, state, hp)
        return result
