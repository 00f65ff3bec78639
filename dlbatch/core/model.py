"""DLModel: graph + parameters + hyperparameters + solver state, on one backend and device.

Values (trainable parameters, batch-norm statistics, constants) are kept as the backend's own
arrays so a GPU backend never round-trips to the host between steps; `state_dict()` and
`solver_state_dict()` are the numpy views of them.

The public state API (read-only views `hyperparameters`, `values`, `solver_state`; `asarray`;
`commit`; `replace_params`) is what the train step, inference, ONNX export, model types and
third-party plugins use. No other module touches the underscore attributes: the model stays
the one owner of its state, so a failed step or a refused parameter can leave it unchanged.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from . import solvers
from .backend import Backend, Program
from .errors import DLBackendError, DLParamError
from .graph import Graph
from .hyperparameters import check_consistency
from .infer import apply_model, evaluate_model
from .model_type import LossTerm, ModelType
from .onnx_export import write_model_file
from .params import ParamTable, coerce
from .plugins import manager
from .train import train_step


# Autocast precisions: the forward computes in the key's type, every array the model keeps
# (weights, batch-norm statistics, solver state) and every input and output is of the value's
# type (master weights), so updates too small for bfloat16 are not lost.
AUTOCAST_PRECISIONS = {"bfloat16": "float32"}


def storage_precision(precision: str) -> str:
    """The numpy type of a model's arrays for a model precision (float32 for bfloat16)."""
    return AUTOCAST_PRECISIONS.get(precision, precision)


def _cast(array: np.ndarray, precision: str) -> np.ndarray:
    """Floating arrays take the model's storage precision; integer constants keep their type."""
    return array.astype(storage_precision(precision), copy=False) if array.dtype.kind == "f" else array


def _check_precision(backend: Backend, backend_name: str, precision: str) -> None:
    """An autocast precision needs a backend that declares it (`autocast_precisions`)."""
    if precision in AUTOCAST_PRECISIONS and precision not in getattr(backend, "autocast_precisions", ()):
        able = sorted(n for n, b in manager.registry.backends.items()
                      if precision in getattr(b, "autocast_precisions", ()))
        raise DLParamError(f"precision {precision!r} needs a backend that computes the forward under "
                           f"{precision} autocast ({', '.join(able) or 'none registered'}); the "
                           f"{backend_name} backend has none. Use backend "
                           f"{(able or ['torch'])[0]!r}, or precision 'float32'. Nothing was changed")


class DLModel:
    """A model handle; every HALCON operator of dlbatch is also a method here."""

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
                    _numpy_solver_state(solver_state) if solver_state else solvers.empty_state())

    # -- placement ----------------------------------------------------------------------------
    @property
    def backend(self) -> Backend:
        assert self._backend is not None
        return self._backend

    @property
    def model_type(self) -> ModelType:
        return self._type

    def _place(self, backend_name: str, device: str, precision: str,
               np_values: Mapping[str, np.ndarray], np_state: dict) -> None:
        """Move everything to (backend, device, precision). Validates before changing anything."""
        backend = manager.backend(backend_name)
        _check_precision(backend, backend_name, precision)
        device = backend.check_device(device)
        values = {n: backend.asarray(_cast(v, precision), device=device) for n, v in np_values.items()}
        state = _map_state(np_state, lambda a: backend.asarray(_cast(a, precision), device=device))
        self._backend, self._backend_name, self._device, self._precision = backend, backend_name, device, precision
        self._values, self._solver_state = values, state
        self._programs = {}

    def _move(self, backend_name=None, device=None, precision=None) -> None:
        self._place(backend_name or self._backend_name, device or self._device, precision or self._precision,
                    self.numpy_values(), _map_state(self._solver_state, self.backend.to_numpy))

    def program(self) -> Program:
        """The graph compiled for the current backend, device and precision (cached)."""
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
        return self._backend_name

    @property
    def device(self) -> str:
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
        """numpy -> the model's backend and device; floating arrays take the model's
        precision (`floating=False` keeps the dtype, e.g. integer class indices)."""
        array = np.asarray(array)
        dtype = self.precision if floating and array.dtype.kind == "f" else None
        return self.backend.asarray(array, device=self._device, dtype=dtype)

    def numpy_values(self) -> dict[str, np.ndarray]:
        """Every initializer as a numpy array."""
        return {n: self.backend.to_numpy(v) for n, v in self._values.items()}

    def commit(self, values: Mapping[str, Any], solver_state: Mapping[str, Any] | None = None) -> None:
        """Take new values (backend arrays of existing initializers, same shapes) and, when
        given, a whole new solver state, in one step: the train step's single write. The
        arrays are kept, not copied; callers hand over arrays they no longer change."""
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
        """Replace trainable tensors by new numpy arrays (their shape may change, e.g. a
        re-initialised head for a new class count) and drop their solver state, which
        belonged to the old tensors. The rest of the model, solver state included, is kept."""
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
        e.g. a head's output shape after a class-count change."""
        unknown = [n for n in arrays if n not in self.graph.constants]
        if unknown:
            raise DLParamError(f"replace_constants: {unknown[:5]} are not constants of this model")
        new = {n: self.backend.asarray(np.asarray(a), device=self._device) for n, a in arrays.items()}
        self._values = {**self._values, **new}

    # -- parameters ---------------------------------------------------------------------------
    def get_param(self, name: str) -> Any:
        spec = self._table.spec(name)
        if name == "type":
            return self._type.name
        if name == "num_classes":
            return len(self._hp["class_ids"])
        if name == "num_trainable_params":
            return int(sum(int(np.prod(self._shape(n))) for n in self.graph.trainable))
        if name == "image_dimensions":
            return [self._hp["image_width"], self._hp["image_height"], self._hp["image_num_channels"]]
        if name == "backend":
            return self._backend_name
        if name == "device":
            return self._device
        if name == "runtime":
            return "gpu" if self._device.startswith("cuda") else "cpu"
        if name == "precision":
            return self._precision
        if name == "losses":
            return self.loss_names()
        value = self._hp.get(spec.name)
        return list(value) if isinstance(value, list) else value

    def set_param(self, name: str, value: Any) -> None:
        """Validate, then change; a refused value leaves the model exactly as it was."""
        spec = self._table.spec(name)
        if spec.readonly:
            raise DLParamError(f"parameter {name!r} is read-only (derived from the model)")
        if spec.fixed:
            raise DLParamError(f"parameter {name!r} shapes the network and is fixed when the model is created; "
                               f"create a new model with create_dl_model(..., {name}=...)")
        value = coerce(spec, value)
        if name == "backend":
            self._move(backend_name=value)
        elif name == "device":
            self._move(device=value)
        elif name == "precision":
            self._move(precision=value)
        elif name == "runtime":
            self._set_runtime(value)
        elif name == "image_dimensions":
            new = dict(self._hp, image_width=value[0], image_height=value[1], image_num_channels=value[2])
            self._commit_hp(new, ["image_width", "image_height", "image_num_channels"])
        else:
            new = dict(self._hp)
            new[name] = value
            if name == "class_ids":
                if len(new.get("class_names") or []) != len(value):
                    new["class_names"] = [str(c) for c in value]
                if new.get("class_weights") is not None and len(new["class_weights"]) != len(value):
                    new["class_weights"] = None
            self._commit_hp(new, [name])

    def _commit_hp(self, new: dict, changed: list[str]) -> None:
        check_consistency(new, self._type, self.meta)
        for name in changed:
            if new.get(name) != self._hp.get(name):
                self._type.on_param_changed(self, name, self._hp.get(name), new[name])
        self._hp = new

    def _set_runtime(self, runtime: str) -> None:
        if runtime == "cpu":
            self._move(device="cpu")
            return
        device = self._device if self._device.startswith("cuda") else "cuda:0"
        backend_name = self._backend_name
        try:
            manager.backend(backend_name).check_device(device)
        except DLBackendError:
            if backend_name == "torch":
                raise
            backend_name = "torch"
        self._move(backend_name=backend_name, device=device)

    # -- values -------------------------------------------------------------------------------
    def _shape(self, name: str) -> tuple:
        return tuple(self._values[name].shape)

    def state_dict(self) -> dict[str, np.ndarray]:
        """{initializer name: numpy array} for every trainable parameter and batch-norm
        statistic; never solver state."""
        names = [*self.graph.trainable, *self.graph.statistics]
        return {n: np.array(self.backend.to_numpy(self._values[n]), copy=True) for n in names}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Set parameters and statistics (every name and shape checked first); the solver
        state is left as it is, as loading a PyTorch module's state leaves its optimizer."""
        names = [*self.graph.trainable, *self.graph.statistics]
        missing = [n for n in names if n not in state]
        unknown = [n for n in state if n not in names]
        if missing or unknown:
            raise DLParamError(f"load_state_dict: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                               f"unknown {unknown[:5]}{'...' if len(unknown) > 5 else ''}; the names must "
                               "be exactly those of model.state_dict()")
        for n in names:
            arr = np.asarray(state[n])
            if arr.shape != self._shape(n):
                raise DLParamError(f"load_state_dict: {n!r} has shape {arr.shape}, the model needs "
                                   f"{self._shape(n)}")
            if arr.dtype.kind != "f" or not np.isfinite(arr).all():
                raise DLParamError(f"load_state_dict: {n!r} must be finite floating-point values")
        # copies, as torch's load_state_dict copies: later changes to the caller's arrays must
        # not reach the model (kernels cache values derived from weights while they live)
        new = {n: self.backend.asarray(_cast(np.array(state[n], copy=True), self._precision), device=self._device)
               for n in names}
        self._values.update(new)

    def solver_state_dict(self) -> dict[str, np.ndarray]:
        """The solver state as flat numpy arrays: `step`, `adam_step`, `<slot>/<param>`."""
        s = self._solver_state
        out = {c: np.array(s[c], dtype=np.int64) for c in solvers.COUNTERS}
        for slot in solvers.SLOTS:
            for n, a in s[slot].items():
                out[f"{slot}/{n}"] = np.array(self.backend.to_numpy(a), copy=True)
        return out

    def load_solver_state_dict(self, flat: Mapping[str, np.ndarray]) -> None:
        state = _numpy_solver_state(flat)
        for slot in solvers.SLOTS:
            for n, a in state[slot].items():
                if n not in self.graph.trainable or tuple(a.shape) != self._shape(n):
                    raise DLParamError(f"solver state {slot}/{n} does not match a trainable parameter "
                                       "of this model (name or shape)")
        self._solver_state = _map_state(state, lambda a: self.backend.asarray(
            _cast(a, self._precision), device=self._device))

    # -- losses -------------------------------------------------------------------------------
    def loss_terms(self) -> list[LossTerm]:
        return self._type.loss_terms(self.meta)

    def loss_names(self) -> dict[str, str]:
        """Loss-term name -> registered loss name (defaults filled in)."""
        chosen = self._hp.get("losses") or {}
        return {t.name: chosen.get(t.name, t.default_loss) for t in self.loss_terms()}

    # -- operators ----------------------------------------------------------------------------
    def train_batch(self, samples) -> dict[str, float]:
        return train_step(self, samples)

    def apply(self, samples) -> list[dict]:
        return apply_model(self, samples)

    def evaluate(self, samples) -> dict:
        return evaluate_model(self, samples)

    def write(self, path) -> None:
        write_model_file(self, path)

    def __repr__(self) -> str:
        return (f"DLModel(type={self._type.name!r}, backend={self._backend_name!r}, device={self._device!r}, "
                f"classes={len(self._hp['class_ids'])}, params={self.get_param('num_trainable_params')})")


def _map_state(state: Mapping, fn) -> dict:
    out = {c: int(state.get(c, 0)) for c in solvers.COUNTERS}
    for slot in solvers.SLOTS:
        out[slot] = {n: fn(a) for n, a in state.get(slot, {}).items()}
    return out


def _numpy_solver_state(flat_or_nested: Mapping) -> dict:
    """Accept the flat form of solver_state_dict() or the nested in-memory form."""
    if any(slot in flat_or_nested and isinstance(flat_or_nested[slot], dict) for slot in solvers.SLOTS):
        return _map_state(flat_or_nested, np.asarray)
    state = solvers.empty_state()
    for key, value in flat_or_nested.items():
        if key in solvers.COUNTERS:
            state[key] = int(np.asarray(value))
            continue
        slot, _, param = key.partition("/")
        if slot not in solvers.SLOTS or not param:
            raise DLParamError(f"unknown solver state entry {key!r}; expected step, adam_step or "
                               f"<{'|'.join(solvers.SLOTS)}>/<parameter name>")
        state[slot][param] = np.asarray(value)
    return state
