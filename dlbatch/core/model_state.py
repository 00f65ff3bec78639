"""The PyTorch-style state API of DLModel: `state_dict`/`load_state_dict` for parameters and
batch-norm statistics, `solver_state_dict`/`load_solver_state_dict` for the solver, all as numpy
arrays. Written against the model's public state API (`values`, `solver_state`, `asarray`,
`commit`), so it changes the model only through `commit`, after every check has passed."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from . import solvers
from .errors import DLParamError


class StateDictAPI:
    """state_dict, load_state_dict, solver_state_dict and load_solver_state_dict for DLModel
    (a mixin: it uses only the model's public state API)."""

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every trainable parameter and batch-norm statistic; never solver state.

        Returns:
            {initializer name: numpy array}, as `load_state_dict` takes it.
        """
        names = [*self.graph.trainable, *self.graph.statistics]
        return {n: np.array(self.backend.to_numpy(self.values[n]), copy=True) for n in names}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Set parameters and statistics (copies); the solver state is left as it is, as
        loading a PyTorch module's state leaves its optimizer.

        Args:
            state: exactly the names of `state_dict()`, same shapes, finite floating values.

        Raises:
            DLParamError: a missing or unknown name, a wrong shape or a non-finite value;
                checked before anything changes.
        """
        names = [*self.graph.trainable, *self.graph.statistics]
        missing = [n for n in names if n not in state]
        unknown = [n for n in state if n not in names]
        if missing or unknown:
            raise DLParamError(f"load_state_dict: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                               f"unknown {unknown[:5]}{'...' if len(unknown) > 5 else ''}; the names must "
                               "be exactly those of model.state_dict()")
        for n in names:
            arr = np.asarray(state[n])
            if arr.shape != tuple(self.values[n].shape):
                raise DLParamError(f"load_state_dict: {n!r} has shape {arr.shape}, the model needs "
                                   f"{tuple(self.values[n].shape)}")
            if arr.dtype.kind != "f" or not np.isfinite(arr).all():
                raise DLParamError(f"load_state_dict: {n!r} must be finite floating-point values")
        # copies, as torch's load_state_dict copies: later changes to the caller's arrays must
        # not reach the model (kernels cache values derived from weights while they live)
        self.commit({n: self.asarray(np.array(state[n], copy=True)) for n in names})

    def solver_state_dict(self) -> dict[str, np.ndarray]:
        """The solver state as flat numpy arrays (copies).

        Returns:
            {"step", "adam_step", "<slot>/<param>": numpy array}, as
            `load_solver_state_dict` takes it.
        """
        s = self.solver_state
        out = {c: np.array(s[c], dtype=np.int64) for c in solvers.COUNTERS}
        for slot in solvers.SLOTS:
            for n, a in s[slot].items():
                out[f"{slot}/{n}"] = np.array(self.backend.to_numpy(a), copy=True)
        return out

    def load_solver_state_dict(self, flat: Mapping[str, np.ndarray]) -> None:
        """Set the whole solver state (step counters and momentum/Adam slots).

        Args:
            flat: the form of `solver_state_dict()` (or the nested in-memory form).

        Raises:
            DLParamError: an unknown entry, or a slot that matches no trainable parameter's
                name and shape; checked before anything changes.
        """
        state = numpy_solver_state(flat)
        for slot in solvers.SLOTS:
            for n, a in state[slot].items():
                if n not in self.graph.trainable or tuple(a.shape) != tuple(self.values[n].shape):
                    raise DLParamError(f"solver state {slot}/{n} does not match a trainable parameter "
                                       "of this model (name or shape)")
        self.commit({}, solver_state=map_solver_state(state, self.asarray))


def map_solver_state(state: Mapping, fn) -> dict:
    out = {c: int(state.get(c, 0)) for c in solvers.COUNTERS}
    for slot in solvers.SLOTS:
        out[slot] = {n: fn(a) for n, a in state.get(slot, {}).items()}
    return out


def numpy_solver_state(flat_or_nested: Mapping) -> dict:
    """Accept the flat form of solver_state_dict() or the nested in-memory form."""
    if any(slot in flat_or_nested and isinstance(flat_or_nested[slot], dict) for slot in solvers.SLOTS):
        return map_solver_state(flat_or_nested, np.asarray)
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
