"""The solvers of SPEC section 2, written once against an array namespace.

State layout (shared by every backend, written to model files):
    {"step": int,                     # updates made so far, any solver
     "adam_step": int,                # Adam's own t (bias correction)
     "velocity": {param: array},      # sgd
     "adam_m": {param: array}, "adam_v": {param: array}}
A slot missing for a parameter means zeros. Steps are functional: they return new params and
a new state and never modify their inputs, so the caller can still abort before committing.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, Mapping

from .errors import DLParamError, did_you_mean

SLOTS = ("velocity", "adam_m", "adam_v")
COUNTERS = ("step", "adam_step")


def empty_state() -> dict:
    return {"step": 0, "adam_step": 0, "velocity": {}, "adam_m": {}, "adam_v": {}}


def copy_state(state: Mapping) -> dict:
    """A shallow copy one level deep (arrays are shared; steps never mutate them)."""
    out = {k: state.get(k, 0) for k in COUNTERS}
    for slot in SLOTS:
        out[slot] = dict(state.get(slot, {}))
    return out


class Solver(ABC):
    name: str = ""

    @abstractmethod
    def step(self, xp, params: Mapping[str, Any], grads: Mapping[str, Any], state: Mapping,
             hp: Mapping[str, Any]) -> tuple[dict, dict]:
        """Return (new_params, new_state) for the parameters that have gradients."""


class SGD(Solver):
    """HALCON form: the learning rate sits inside the velocity, v = mu v - lr g; w = w + v."""

    name = "sgd"

    def step(self, xp, params, grads, state, hp):
        lr, mu = hp["learning_rate"], hp["momentum"]
        new_state = copy_state(state)
        new_params = {}
        for name, g in grads.items():
            v_prev = state["velocity"].get(name)
            v = -lr * g if v_prev is None else mu * v_prev - lr * g
            new_state["velocity"][name] = v
            new_params[name] = params[name] + v
        new_state["step"] = state["step"] + 1
        return new_params, new_state


class Adam(Solver):
    """Kingma & Ba with bias correction; its step counter is its own (adam_step)."""

    name = "adam"

    def step(self, xp, params, grads, state, hp):
        lr, b1, b2, eps = hp["learning_rate"], hp["adam_beta1"], hp["adam_beta2"], hp["adam_epsilon"]
        t = state["adam_step"] + 1
        c1, c2 = 1.0 - b1 ** t, 1.0 - b2 ** t
        new_state = copy_state(state)
        new_params = {}
        for name, g in grads.items():
            m_prev, v_prev = state["adam_m"].get(name), state["adam_v"].get(name)
            m = (1 - b1) * g if m_prev is None else b1 * m_prev + (1 - b1) * g
            s = (1 - b2) * (g * g) if v_prev is None else b2 * v_prev + (1 - b2) * (g * g)
            new_state["adam_m"][name] = m
            new_state["adam_v"][name] = s
            new_params[name] = params[name] - (lr / c1) * m / (xp.sqrt(s / c2) + eps)
        new_state["adam_step"] = t
        new_state["step"] = state["step"] + 1
        return new_params, new_state


SOLVERS: dict[str, Solver] = {s.name: s for s in (SGD(), Adam())}


def solver_for(name: str) -> Solver:
    try:
        return SOLVERS[name]
    except KeyError:
        raise DLParamError(f"unknown solver_type {name!r}; {did_you_mean(name, SOLVERS)}") from None


def bias_corrections(b1: float, b2: float, t: int) -> tuple[float, float]:
    """(1 - b1^t, 1 - b2^t), shared by fused backend implementations."""
    return 1.0 - math.pow(b1, t), 1.0 - math.pow(b2, t)
