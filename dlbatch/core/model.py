"""DLModel: graph + parameters + hyperparameters + solver state, on one backend and device.

Values (trainable parameters, batch-norm statistics, constants) are kept as the backend's own
arrays so a GPU backend never round-trips to the host between steps; `state_dict()` and
`solver_state_dict()` are the numpy views of them.

The public state API (read-only views `hyperparameters`, `values`, `solver_state`; `asarray`;
`commit`; `replace_params`) is what the train step, inference, ONNX export, model types and
third-party plugins use. No other module touches the underscore attributes: the model stays
the one owner of its state, so a failed step or a refused parameter can leave it unchanged.
get_param and set_param work out derived values and changes in `dlbatch.core.model_params`;
the model applies them.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from . import solvers
from .backend import Backend, Program
from .errors import DLParamError
from .graph import Graph
from .hyperparameters import check_consistency
from .model_operators import OperatorMethods
from .model_params import PLACEMENT, param_value, placement, settable_value, updated_hyperparameters
from .precision import cast_to_storage, check_precision, storage_precision
from .model_state import StateDictAPI, map_solver_state, numpy_solver_state
from .model_type import LossTerm, ModelType
from .params import ParamTable
from .plugins import manager


class DLModel(StateDictAPI, OperatorMethods):
    """A model: graph, weights, hyperparameters and solver state on one backend and device.

    Made by `create_dl_model` or `read_dl_model`, not by calling the class. Every HALCON
    operator of dlbatch is also a method here (`train_batch`, `apply`, `evaluate`,
    `get_param`, `set_param`, `write`). The state API after them (`values`, `commit`,
    `replace_params`, ...) is for model types, backends and the train step.

    Args:
        model_type: the registered ModelType.
        table: its parameter table.
        graph: the network.
        values: {initializer name: numpy array} for every initializer of the graph.
        hp: the hyperparameters (validated).
        meta: what the model type's build recorded (head names, levels, ...).
        backend: the compute backend's name.
        device: the backend's device, e.g. "cpu".
        precision: "float32", "float64" or "bfloat16".
        solver_state: a solver state to resume (flat as solver_state_dict() or nested).

    Raises:
        DLParamError: a graph initializer without a value, or a precision the backend lacks.
        DLPluginError: an unknown backend.
        DLBackendError: a device the backend cannot use.

    Examples:
        >>> import dlbatch
        >>> from dlbatch.data import classification_samples
        >>> model = dlbatch.create_dl_model("classification", class_ids=[0, 1, 2], backend="numpy",
        ...                                 image_dimensions=[16, 16, 3], batch_size=4)
        >>> model
        DLModel(type='classification', backend='numpy', device='cpu', classes=3, params=...)
        >>> model.model_type.name, model.backend_name, model.device, model.precision
        ('classification', 'numpy', 'cpu', 'float32')
        >>> model.set_param("learning_rate", 0.01)
        >>> model.get_param("learning_rate"), model.hyperparameters["batch_size"]
        (0.01, 4)
        >>> samples = dlbatch.preprocess_dl_samples(classification_samples(4, height=16, width=16), model)
        >>> before, solver = model.state_dict(), model.solver_state_dict()
        >>> sorted(model.train_batch(samples))
        ['loss_multinomial_logistic', 'loss_regularization', 'total_loss']
        >>> model.solver_state["step"]
        1
        >>> sorted(model.apply(samples[:1])[0]["classification_class_ids"])
        [0, 1, 2]
        >>> model.evaluate(samples)["num_samples"]
        4
        >>> model.load_state_dict(before)  # undo the step: weights ...
        >>> model.load_solver_state_dict(solver)  # ... and solver state
        >>> model.solver_state["step"]
        0
        >>> model.write("model.onnx")
        >>> dlbatch.read_dl_model("model.onnx").get_param("class_ids")
        [0, 1, 2]

        The state API, as model types, backends and the train step use it:

        >>> [term.name for term in model.loss_terms()], model.loss_names()
        (['classification'], {'classification': 'multinomial_logistic'})
        >>> name = model.graph.trainable[0]
        >>> weight = model.numpy_values()[name]
        >>> model.commit({name: model.asarray(weight * 2)})  # a train step's single write
        >>> bool((model.state_dict()[name] == weight * 2).all())
        True
        >>> model.replace_params({name: weight})  # may change the shape; drops its solver slots
        >>> type(model.backend).__name__, type(model.values[name]).__name__, model.compute_precision
        ('NumpyBackend', 'ndarray', 'float32')
        >>> model.program() is model.program()  # compiled once per backend, device, precision
        True
    """

    def __init__(self, model_type: ModelType, table: ParamTable, graph: Graph,
                 values: Mapping[str, np.ndarray], hp: dict[str, Any], meta: dict[str, Any], *,
                 backend: str, device: str, precision: str,
                 solver_state: Mapping[str, np.ndarray] | None = None):
        self._type = model_type
        self._table = table
        self.graph = graph
        self.meta = meta
        self._hp = hp
        self._backend_name = ""
        self._device = ""
        self._precision = precision
        self._backend: Backend | None = None
        self._values: dict[str, Any] = {}
        self._solver_state = solvers.empty_state()
        self._programs: dict[tuple, Program] = {}
        missing = [n for n in graph.initializer_names() if n not in values]
        if missing:
            raise DLParamError(f"initial values missing for {missing[:5]}")
        self._place(backend, device, precision, {n: np.asarray(values[n]) for n in graph.initializer_names()},
                    numpy_solver_state(solver_state) if solver_state else solvers.empty_state())

    # -- placement ----------------------------------------------------------------------------
    @property
    def backend(self) -> Backend:
        """The compute backend object the model runs on (see `backend_name`)."""
        assert self._backend is not None
        return self._backend

    @property
    def model_type(self) -> ModelType:
        """The registered ModelType: its losses, evaluation, encoding and decoding."""
        return self._type

    def _place(self, backend_name: str, device: str, precision: str,
               np_values: Mapping[str, np.ndarray], np_state: dict) -> None:
        """Move everything to (backend, device, precision). Validates before changing anything."""
        backend = manager.backend(backend_name)
        check_precision(backend, backend_name, precision)
        device = backend.check_device(device)
        values = {n: backend.asarray(cast_to_storage(v, precision), device=device) for n, v in np_values.items()}
        state = map_solver_state(np_state, lambda a: backend.asarray(cast_to_storage(a, precision), device=device))
        self._backend, self._backend_name, self._device, self._precision = backend, backend_name, device, precision
        self._values, self._solver_state = values, state
        self._programs = {}

    def _move(self, backend_name=None, device=None, precision=None) -> None:
        self._place(backend_name or self._backend_name, device or self._device, precision or self._precision,
                    self.numpy_values(), map_solver_state(self._solver_state, self.backend.to_numpy))

    def program(self) -> Program:
        """The graph compiled for the current backend, device and precision (cached).

        Returns:
            The backend's Program; the same object until backend, device or precision change.
        """
        key = (self._backend_name, self._device, self._precision, id(self.graph))
        prog = self._programs.get(key)
        if prog is None:
            prog = self.backend.compile(self.graph, manager.kernels(self._backend_name),
                                        device=self._device, dtype=self._precision)  # the compute precision
            self._programs = {key: prog}
        return prog

    # -- public state API -------------------------------------------------------------------
    @property
    def hyperparameters(self) -> Mapping[str, Any]:
        """Every stored hyperparameter (read-only view; change them with set_param)."""
        return MappingProxyType(self._hp)

    @property
    def values(self) -> Mapping[str, Any]:
        """Every initializer (trainable parameters, batch-norm statistics, constants) as the
        backend's arrays (read-only view; change them with commit or replace_params)."""
        return MappingProxyType(self._values)

    @property
    def solver_state(self) -> Mapping[str, Any]:
        """The solver state: step counters and per-parameter slots of backend arrays
        (read-only views)."""
        s = self._solver_state
        return MappingProxyType({**{c: s[c] for c in solvers.COUNTERS},
                                 **{slot: MappingProxyType(s[slot]) for slot in solvers.SLOTS}})

    @property
    def backend_name(self) -> str:
        """The name of the compute backend, e.g. "numpy" or "torch"."""
        return self._backend_name

    @property
    def device(self) -> str:
        """The backend's device, e.g. "cpu" or "cuda:0"."""
        return self._device

    @property
    def precision(self) -> str:
        """The numpy type of the model's arrays: values, solver state, inputs (encode samples
        in it) and outputs. float32 for a bfloat16 model (float32 master weights)."""
        return storage_precision(self._precision)

    @property
    def compute_precision(self) -> str:
        """The `precision` parameter: the type the forward computes in (bfloat16 under
        autocast; otherwise the same as `precision`)."""
        return self._precision

    def asarray(self, array, *, floating: bool = True):
        """An array on the model's backend and device.

        Args:
            array: array-like (numpy).
            floating: floating arrays take the model's precision; False keeps the dtype
                (e.g. integer class indices).

        Returns:
            The backend's array.
        """
        array = np.asarray(array)
        dtype = self.precision if floating and array.dtype.kind == "f" else None
        return self.backend.asarray(array, device=self._device, dtype=dtype)

    def numpy_values(self) -> dict[str, np.ndarray]:
        """Every initializer as a numpy array (constants included; see also `state_dict`).

        Returns:
            {initializer name: numpy array}.
        """
        return {n: self.backend.to_numpy(v) for n, v in self._values.items()}

    def commit(self, values: Mapping[str, Any], solver_state: Mapping[str, Any] | None = None) -> None:
        """Take new values and, when given, a whole new solver state in one step: the train
        step's single write. The arrays are kept, not copied; callers hand over arrays they
        no longer change.

        Args:
            values: {initializer name: backend array} of existing initializers, same shapes.
            solver_state: a whole new solver state (nested, backend arrays), or None.

        Raises:
            DLParamError: an unknown initializer or a changed shape (nothing is changed).
        """
        unknown = [n for n in values if n not in self._values]
        if unknown:
            raise DLParamError(f"commit: {unknown[:5]} are not initializers of this model")
        wrong = [n for n, v in values.items() if tuple(v.shape) != tuple(self._values[n].shape)]
        if wrong:
            raise DLParamError(f"commit: {wrong[:5]} change shape; use replace_params for that")
        new_values = {**self._values, **values}
        if solver_state is not None:
            self._solver_state = solvers.copy_state(solver_state)
        self._values = new_values

    def replace_params(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Replace trainable tensors and drop their solver state, which belonged to the old
        tensors; the rest of the model, solver state included, is kept.

        Args:
            arrays: {trainable parameter name: numpy array}; the shape may change, e.g. a
                re-initialised head for a new class count.

        Raises:
            DLParamError: a name that is no trainable parameter (nothing is changed).
        """
        unknown = [n for n in arrays if n not in self.graph.trainable]
        if unknown:
            raise DLParamError(f"replace_params: {unknown[:5]} are not trainable parameters of this model")
        new = {n: self.asarray(np.asarray(a)) for n, a in arrays.items()}
        state = solvers.copy_state(self._solver_state)
        for slot in solvers.SLOTS:
            for n in new:
                state[slot].pop(n, None)
        self._values = {**self._values, **new}
        self._solver_state = state

    def replace_constants(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Replace constant tensors (shapes, scales) that describe the network's structure,
        e.g. a detection head's output shape after a class-count change.

        Args:
            arrays: {constant name: numpy array}.

        Raises:
            DLParamError: a name that is no constant of the graph (nothing is changed).

        Examples:
            >>> import numpy as np
            >>> detector = dlbatch.create_dl_model("detection", class_ids=[1, 2], image_dimensions=[32, 32, 3])
            >>> detector.replace_constants({"class_head.flat.p3.shape": np.array([0, -1, 3])})
            >>> detector.values["class_head.flat.p3.shape"].tolist()
            [0, -1, 3]
            >>> detector.replace_constants({"no_such_constant": np.zeros(3)})
            Traceback (most recent call last):
            dlbatch.core.errors.DLParamError: replace_constants: ['no_such_constant'] are not constants of this model
        """
        unknown = [n for n in arrays if n not in self.graph.constants]
        if unknown:
            raise DLParamError(f"replace_constants: {unknown[:5]} are not constants of this model")
        new = {n: self.backend.asarray(np.asarray(a), device=self._device) for n, a in arrays.items()}
        self._values = {**self._values, **new}

    # -- parameters ---------------------------------------------------------------------------
    def get_param(self, name: str) -> Any:
        """The value of a model parameter (`dlbatch.get_dl_model_param`).

        Args:
            name: a parameter name (see the parameter reference).

        Returns:
            The value (lists are copies).

        Raises:
            DLParamError: an unknown name; the message lists the model's parameters.
        """
        return param_value(self, self._table.spec(name), name)

    def set_param(self, name: str, value: Any) -> None:
        """Set a model parameter (`dlbatch.set_dl_model_param`): validate, then change; a
        refused value leaves the model exactly as it was.

        Args:
            name: a settable parameter name.
            value: the new value, converted and checked against the parameter table.

        Raises:
            DLParamError: an unknown, read-only or fixed name, or a bad value.
            DLPluginError: an unknown backend.
            DLBackendError: a device or runtime the backend cannot use.
        """
        spec = self._table.spec(name)
        value = settable_value(spec, value)
        if name in PLACEMENT:
            self._move(**placement(name, value, self._backend_name, self._device))
        else:
            self._commit_hp(*updated_hyperparameters(self._hp, name, value))

    def _commit_hp(self, new: dict, changed: list[str]) -> None:
        check_consistency(new, self._type, self.meta)
        for name in changed:
            if new.get(name) != self._hp.get(name):
                self._type.on_param_changed(self, name, self._hp.get(name), new[name])
        self._hp = new

    # -- losses -------------------------------------------------------------------------------
    def loss_terms(self) -> list[LossTerm]:
        """The model type's loss terms for this model.

        Returns:
            One LossTerm per term (name, default loss, targets).
        """
        return self._type.loss_terms(self.meta)

    def loss_names(self) -> dict[str, str]:
        """The loss each term uses (the `losses` parameter, defaults filled in).

        Returns:
            {loss-term name: registered loss name}.
        """
        chosen = self._hp.get("losses") or {}
        return {t.name: chosen.get(t.name, t.default_loss) for t in self.loss_terms()}

    def __repr__(self) -> str:
        return (f"DLModel(type={self._type.name!r}, backend={self._backend_name!r}, device={self._device!r}, "
                f"classes={len(self._hp['class_ids'])}, params={self.get_param('num_trainable_params')})")
