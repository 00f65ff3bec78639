"""The compute-backend interface. A backend turns a Graph into a Program that runs forward
(with a tape) and backward, and moves arrays between numpy and its own array type.

Core code never imports a backend; it talks to these classes only.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .collective import batchnorm_collective
from .errors import DLPluginError
from .graph import Graph


def missing_kernel_error(graph: Graph, kernels: Mapping[str, Any], backend: str) -> DLPluginError | None:
    """The error for the first node whose op has no kernel on `backend` (None if all have one):
    it names the node, the op, what is supported and how a plugin adds the op."""
    for node in graph.nodes:
        if node.op_type not in kernels:
            return DLPluginError(
                f"node {node.name or node.outputs[0]!r}: op {node.op_type!r} is not supported by the "
                f"{backend} backend; supported ops: {', '.join(sorted(kernels))}. A plugin can add it "
                f"with the dlbatch_register_ops hook (register({backend!r}, {node.op_type!r}, kernel))")
    return None


@dataclass
class OpContext:
    """What a kernel may know about its call besides inputs and attributes.

    `needs_input_grad[i]` tells backward whether input i needs a gradient (the image input
    and constants do not, so kernels can skip that work). A training forward of a batch-norm
    kernel reports its new running statistics with `update_statistic(input_index, value)`.
    `collective` is not None while a data-parallel step with `batchnorm_sync` runs: a training
    batch-norm kernel then computes its statistics over every rank (core/collective.py).
    """

    training: bool = False
    bn_momentum: float = 0.9
    needs_input_grad: tuple = ()
    statistic_updates: dict = field(default_factory=dict)
    rng: Any = None  # numpy Generator for dropout masks on the numpy backend
    opset: int = 17  # the graph's ai.onnx opset: some attributes moved to inputs over time
    num_outputs: int = 1  # outputs the node declares (Split without sizes, optional outputs)
    collective: Any = field(default_factory=batchnorm_collective)

    def update_statistic(self, input_index: int, value) -> None:
        self.statistic_updates[input_index] = value


@dataclass
class ForwardResult:
    """Outputs of a forward pass, new batch-norm statistics (name -> array), and the tape
    that `Program.backward` needs (None for inference)."""

    outputs: dict
    statistics: dict
    tape: Any = None


class Program(ABC):
    """A graph compiled for one backend, device and precision."""

    @abstractmethod
    def forward(self, values: Mapping[str, Any], inputs: Mapping[str, Any], *, training: bool,
                bn_momentum: float = 0.9, wanted: tuple[str, ...] | None = None) -> ForwardResult:
        """Run the graph. `values` maps every initializer name to a backend array, `inputs`
        maps graph input names to backend arrays. `wanted` limits which outputs are returned
        (default: the graph outputs)."""

    @abstractmethod
    def backward(self, tape: Any, output_grads: Mapping[str, Any]) -> dict:
        """Gradients of the trainable parameters given d(loss)/d(output) for some outputs."""


class Backend(ABC):
    """A compute backend plugin. `xp` is its array namespace (array-API style), used by
    losses and solvers so that they are written once for every backend.

    `trains` says whether the backend's programs run training forwards and backward. An
    inference-only backend (onnxruntime) sets it False: the train step then refuses before it
    touches anything, naming the backends that train, and the user switches backend to train
    and back to infer (weights and solver state travel with the model)."""

    name: str = ""
    description: str = ""
    trains: bool = True

    @property
    @abstractmethod
    def xp(self):
        """The array namespace of this backend's arrays."""

    @abstractmethod
    def compile(self, graph: Graph, kernels: Mapping[str, Any], *, device: str, dtype: str) -> Program:
        """Build a Program for `graph`. `kernels` maps op type to this backend's kernel.
        Raise DLPluginError naming the node and op when an op has no kernel."""

    @abstractmethod
    def asarray(self, array: np.ndarray, *, device: str, dtype: str | None = None):
        """numpy -> backend array on `device` (dtype None keeps the array's own dtype)."""

    @abstractmethod
    def to_numpy(self, array) -> np.ndarray:
        """backend array -> numpy array (a copy where the backend shares memory)."""

    def check_device(self, device: str) -> str:
        """Return the canonical device name or raise DLBackendError saying what exists."""
        return device

    def all_finite(self, arrays) -> bool:
        """True when every array holds only finite numbers."""
        return all(bool(np.isfinite(self.to_numpy(a)).all()) for a in arrays)

    def solver_step(self, solver, params: dict, grads: dict, state: dict, hp: Mapping[str, Any]):
        """Hook for a backend to run the solver fused on its device; default is generic."""
        return solver.step(self.xp, params, grads, state, hp)

    def seed(self, seed: int) -> None:
        """Seed the backend's own random generators (dropout)."""

    def set_deterministic(self, flag: bool) -> None:
        """Make the backend use deterministic algorithms (SPEC section 8)."""


def training_backend_names(backends: Mapping[str, Backend]) -> list[str]:
    """The names of the registered backends that train (sorted), for error messages."""
    return sorted(name for name, b in backends.items() if getattr(b, "trains", True))
