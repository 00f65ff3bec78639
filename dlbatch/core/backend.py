"""The compute-backend interface. A backend turns a Graph into a Program that runs forward
(with a tape) and backward, and moves arrays between numpy and its own array type.

Core code never imports a backend; it talks to these classes only. A backend plugin
subclasses `Backend` and `Program`; its op kernels receive an `OpContext` per call.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .collective import batchnorm_collective
from .graph import Graph
from .kernel_errors import missing_kernel_error
from .regularization import add_weight_prior

__all__ = ["Backend", "Program", "ForwardResult", "OpContext", "missing_kernel_error"]


@dataclass
class OpContext:
    """What a kernel may know about its call besides inputs and attributes.

    A backend's program makes one per node and call, and passes it as `ctx` to the kernel's
    forward and backward (`NumpyKernel`, `TorchKernel`). A kernel reads it and never keeps it.

    Attributes:
        training: whether this is a training forward (batch norm uses the batch's statistics
            and reports new running ones, dropout drops).
        bn_momentum: the weight of the old running statistics in a batch-norm update.
        needs_input_grad: `needs_input_grad[i]` tells backward whether input i needs a
            gradient (the image input and constants do not, so kernels can skip that work).
        statistic_updates: input index -> new value, filled by `update_statistic`.
        rng: a numpy Generator for dropout masks on the numpy backend (None elsewhere).
        opset: the graph's ai.onnx opset: some attributes moved to inputs over time.
        num_outputs: the outputs the node declares (Split without sizes, optional outputs).
        collective: not None while a data-parallel step with `batchnorm_sync` runs: a
            training batch-norm kernel then computes its statistics over every rank
            (`dlbatch.core.collective`).

    Examples:
        A kernel's forward reads the context like this (here outside any program):

        >>> ctx = OpContext(training=True, needs_input_grad=(True, False))
        >>> ctx.training, ctx.needs_input_grad[1], ctx.collective is None
        (True, False, True)
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
        """Report the new value of a running statistic that the node reads as an input.

        A training forward of a batch-norm kernel calls this for its running mean and
        variance; the program returns them in `ForwardResult.statistics` under the
        initializer's name, and the train step stores them after a successful step only.

        Args:
            input_index: the node input that holds the statistic (3: mean, 4: variance for
                BatchNormalization).
            value: its new value, a backend array of the input's shape and dtype.

        Examples:
            >>> ctx.update_statistic(3, np.zeros(4))
            >>> sorted(ctx.statistic_updates)
            [3]
        """
        self.statistic_updates[input_index] = value


@dataclass
class ForwardResult:
    """What `Program.forward` returns.

    Attributes:
        outputs: graph output name -> backend array (the `wanted` outputs).
        statistics: initializer name -> new batch-norm running statistic (training only).
        tape: whatever `Program.backward` needs (None for inference).

    Examples:
        >>> result = ForwardResult({"y": np.ones(2)}, {})
        >>> result.tape is None
        True
    """

    outputs: dict
    statistics: dict
    tape: Any = None


class Program(ABC):
    """A graph compiled for one backend, device and precision (what `Backend.compile` returns).

    The model compiles its graph once per backend, device, precision and graph, and keeps the
    program. The train step calls `forward(..., training=True)` once per micro-batch, then
    `backward` with the loss gradients; inference calls `forward(..., training=False)`. A
    program must not change `values` or `inputs`: the model commits new values only after a
    whole step succeeded.

    Examples:
        How the train step uses a program, on a one-node graph y = x @ w with the numpy backend:

        >>> from dlbatch.core.graph import Node, ValueInfo
        >>> from dlbatch.core.plugins import manager
        >>> numpy_backend = manager.backend("numpy")
        >>> graph = Graph([Node("MatMul", ["x", "w"], ["y"], name="mm")], [ValueInfo("x", (None, 2))],
        ...               [ValueInfo("y", (None, 3))], trainable=["w"])
        >>> program = numpy_backend.compile(graph, manager.kernels("numpy"), device="cpu", dtype="float64")
        >>> x, w = np.array([[1.0, 2.0]]), np.ones((2, 3))
        >>> result = program.forward({"w": w}, {"x": x}, training=True)
        >>> result.outputs["y"].tolist()
        [[3.0, 3.0, 3.0]]
        >>> program.backward(result.tape, {"y": np.ones((1, 3))})["w"].tolist()
        [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]
    """

    @abstractmethod
    def forward(self, values: Mapping[str, Any], inputs: Mapping[str, Any], *, training: bool,
                bn_momentum: float = 0.9, wanted: tuple[str, ...] | None = None) -> ForwardResult:
        """Run the graph.

        Args:
            values: every initializer name -> backend array (trainable parameters, batch-norm
                statistics, constants).
            inputs: graph input name -> backend array.
            training: a training forward: batch norm on the batch's statistics (reporting new
                running ones), dropout active, and a tape recorded for `backward`.
            bn_momentum: the weight of the old running statistics (`OpContext.bn_momentum`).
            wanted: the outputs to return (default: the graph outputs); nodes that none of
                them needs may be skipped.

        Returns:
            The outputs, the new statistics and (training) the tape.

        Raises:
            DLBackendError: a kernel failed on these inputs (a shape or dtype the network
                does not take); the message names the node and op
                (`dlbatch.core.kernel_errors.node_error` makes it). A DLError a kernel raises
                keeps its class and gains the node's name.
        """

    @abstractmethod
    def backward(self, tape: Any, output_grads: Mapping[str, Any]) -> dict:
        """Gradients of the trainable parameters given d(loss)/d(output) for some outputs.

        Args:
            tape: `ForwardResult.tape` of a training forward of this program.
            output_grads: output name -> d(loss)/d(output), a backend array of the output's
                shape (outputs no loss reads are absent).

        Returns:
            Trainable parameter name -> its gradient (the parameter's shape and dtype);
            parameters no gradient reaches may be absent.

        Raises:
            DLBackendError: a kernel's backward failed, naming the node (as `forward`).
        """


class Backend(ABC):
    """A compute backend plugin: compiles graphs into programs and holds arrays on a device.

    Register an instance with the `dlbatch_register_backends` hook and its kernels with
    `dlbatch_register_ops`; a model moves to it with `model.set_param("backend", name)`. One
    instance serves every model, so it keeps no per-model state. `examples/plugin/` derives
    `numpy64` from the numpy backend, the simplest way to a new backend.

    Attributes:
        name: the registered name (the `backend` parameter's value).
        description: one line for `dlbatch plugins list`.
        trains: whether the backend's programs run training forwards and backward. An
            inference-only backend (onnxruntime) sets it False: the train step then refuses
            before it touches anything, naming the backends that train, and the user switches
            backend to train and back to infer (weights and solver state travel with the model).

    Examples:
        >>> numpy_backend.name, numpy_backend.trains, numpy_backend.xp is np
        ('numpy', True, True)
    """

    name: str = ""
    description: str = ""
    trains: bool = True

    @property
    @abstractmethod
    def xp(self):
        """The array namespace of this backend's arrays (array-API style: numpy, or
        array_api_compat.torch), used by losses and solvers so that they are written once
        for every backend.

        Returns:
            The namespace module.
        """

    @abstractmethod
    def compile(self, graph: Graph, kernels: Mapping[str, Any], *, device: str, dtype: str) -> Program:
        """Build a Program for `graph`.

        Called when a model first runs on this backend, device and precision, and again after
        its graph changes.

        Args:
            graph: the graph (structure only; values come with each forward).
            kernels: op type -> this backend's kernel (what plugins registered for it).
            device: a device name `check_device` accepted.
            dtype: the model's precision ("float32", "float64", ...).

        Returns:
            The program.

        Raises:
            DLPluginError: an op without a kernel (`missing_kernel_error` gives the message).

        Examples:
            >>> kernels = manager.kernels("numpy")
            >>> numpy_backend.compile(graph, kernels, device="cpu", dtype="float32") is not None
            True
        """

    @abstractmethod
    def asarray(self, array: np.ndarray, *, device: str, dtype: str | None = None):
        """A numpy array as a backend array on `device`.

        Args:
            array: the numpy array (not changed).
            device: a device name `check_device` accepted.
            dtype: the wanted dtype name; None keeps the array's own dtype.

        Returns:
            The backend array.

        Examples:
            >>> numpy_backend.asarray(np.arange(3), device="cpu", dtype="float32").dtype
            dtype('float32')
        """

    @abstractmethod
    def to_numpy(self, array) -> np.ndarray:
        """A backend array as a numpy array.

        Args:
            array: the backend array.

        Returns:
            The numpy array (a copy where the backend would share memory with it).

        Examples:
            >>> numpy_backend.to_numpy(np.ones(2)).tolist()
            [1.0, 1.0]
        """

    def check_device(self, device: str) -> str:
        """The canonical name of a device, checked before a model moves to it.

        Args:
            device: the `device` parameter's value ("cpu", "cuda:0", ...).

        Returns:
            The canonical name (the default accepts anything as it is).

        Raises:
            DLBackendError: a device the backend does not have, saying which exist.

        Examples:
            >>> numpy_backend.check_device("cpu")
            'cpu'
        """
        return device

    def all_finite(self, arrays) -> bool:
        """Whether every array holds only finite numbers.

        The train step checks gradients, statistics and new weights with it before it commits
        a step; a backend may override it with a check that stays on the device.

        Args:
            arrays: backend arrays.

        Returns:
            True when no array holds NaN or an infinity.

        Examples:
            >>> numpy_backend.all_finite([np.ones(2), np.array([np.nan])])
            False
        """
        return all(bool(np.isfinite(self.to_numpy(a)).all()) for a in arrays)

    def add_weight_prior(self, params: Mapping[str, Any], grads: dict, names, weight_prior: float):
        """Add the weight prior's gradient weight_prior * w to `grads` and return its value R.

        R = weight_prior / 2 * sum w^2 over `names` (SPEC section 3). The default is the
        generic array-API code; a backend may override it with fewer passes over memory.

        Args:
            params: trainable parameter name -> backend array (not changed).
            grads: parameter name -> gradient; the entries of `names` are replaced by new arrays.
            names: the regularized parameters (rank >= 2).
            weight_prior: the factor; 0 leaves `grads` as they are.

        Returns:
            R, a 0-d backend array or a float (0.0 when weight_prior is 0).

        Examples:
            >>> grads = {"w": np.zeros(2)}
            >>> float(numpy_backend.add_weight_prior({"w": np.array([1.0, 2.0])}, grads, ["w"], 0.1))
            0.25
            >>> grads["w"]
            array([0.1, 0.2])
        """
        return add_weight_prior(self.xp, params, grads, names, weight_prior)

    def solver_step(self, solver, params: dict, grads: dict, state: dict, hp: Mapping[str, Any]):
        """One solver update, once per train step after the gradients are averaged.

        The default runs the solver's generic array-API code; a backend may override it to
        run the update fused on its device, with the same results.

        Args:
            solver: the model's solver (`dlbatch.core.solvers.Solver`: SGD or Adam).
            params: trainable parameter name -> backend array (not changed).
            grads: parameter name -> gradient, weight prior included.
            state: the solver state (velocities, moments, step counters; not changed).
            hp: the hyperparameters (learning_rate, momentum, ...).

        Returns:
            `(new_params, new_state)` for the parameters that have gradients.

        Examples:
            One SGD step, w - learning_rate * g, as the train step makes it:

            >>> from dlbatch.core.solvers import SGD
            >>> state = {"step": 0, "velocity": {}}
            >>> new, new_state = numpy_backend.solver_step(SGD(), {"w": np.ones(2)}, {"w": np.array([1.0, -1.0])},
            ...                                            state, {"learning_rate": 0.5, "momentum": 0.9})
            >>> new["w"].tolist(), new_state["step"]
            ([0.5, 1.5], 1)
        """
        return solver.step(self.xp, params, grads, state, hp)

    def solver_step_checked(self, solver, params: dict, grads: dict, state: dict, hp: Mapping[str, Any]):
        """`solver_step`, and whether its inputs and results are finite where that is cheap.

        The train step refuses a step with a non-finite gradient, new weight or solver state.
        A backend whose fused update holds each block of them in cache can check it there,
        saving the train step a separate pass over every array; the default does not check.

        Args:
            solver: the model's solver, as for `solver_step`.
            params: trainable parameter name -> backend array (not changed).
            grads: parameter name -> gradient, weight prior included (not changed).
            state: the solver state (not changed).
            hp: the hyperparameters.

        Returns:
            `(new_params, new_state, finite)`: finite is True when every array of `grads`, every
            new parameter and every new solver-state array is finite, False when one is not,
            None when not checked (the train step then checks them itself).

        Examples:
            >>> numpy_backend.solver_step_checked(SGD(), {"w": np.ones(2)}, {"w": np.array([1.0, np.inf])},
            ...                                   state, {"learning_rate": 0.5, "momentum": 0.9})[2]
            False
        """
        return (*self.solver_step(solver, params, grads, state, hp), None)

    def seed(self, seed: int) -> None:
        """Seed the backend's own random generators (dropout masks).

        Called by the train step before each step with a seed derived from the model's.

        Args:
            seed: a non-negative integer.

        Examples:
            >>> numpy_backend.seed(42)
        """

    def set_deterministic(self, flag: bool) -> None:
        """Make the backend use deterministic algorithms, or allow faster ones.

        Called by the train step before each step with `get_system("cudnn_deterministic")`.

        Args:
            flag: True: the same inputs give bit-identical results on every run.

        Examples:
            >>> numpy_backend.set_deterministic(True)      # numpy: always deterministic
        """
