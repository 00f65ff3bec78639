"""The finiteness check inside the solver's blocked pass (Backend.solver_step_checked).

The numpy backend checks each block of the built-in solvers' update while it is in cache; the
train step then checks only the batch-norm statistics. These tests hold it to the generic path
(Backend's default: no check in the solver, the train step checks every array): the same new
parameter and state bits as dlbatch.core.solvers at 1, 2 and 3 threads, a finite flag equal to
the exact element-wise answer for NaN, infinite and overflowing gradients, moments and weights
(and for finite values whose sum overflows, the dot product shortcut's blind spot), and, in a
train step, the same DLNumericError message with the model left bit-identical, on the numpy
backend, on the numpy backend with the generic path, and on the torch backend."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import dlbatch
from dlbatch import DLNumericError
from dlbatch.backends.numpy_cpu import solver as solver_mod
from dlbatch.backends.numpy_cpu.backend import NumpyBackend
from dlbatch.backends.numpy_cpu.solver import BLOCK
from dlbatch.core import solvers
from dlbatch.core.backend import Backend

from ..fuzz.models import assert_unchanged, make_model, snapshot, valid_batch
from .numpy_perf._ref import at_threads

# more than PARALLEL_MIN_ELEMENTS in all, so that the blocks run on the kernel threads
SHAPES = {"conv.weight": (64, 32, 3, 3), "big": (5 * BLOCK + 17,), "fc.weight": (300, 700), "bias": (10,)}
HP = {"learning_rate": 0.01, "momentum": 0.9, "adam_beta1": 0.9, "adam_beta2": 0.999, "adam_epsilon": 1e-8}
SOLVERS = {"sgd": solvers.SGD(), "adam": solvers.Adam()}
BAD_GRADIENT = "a gradient or batch-norm statistic became non-finite"
BAD_WEIGHTS = "the weight update produced non-finite weights"
BAD_STATE = "the solver state (momentum / Adam moments) became non-finite"


def _arrays(dtype, seed=0):
    r = np.random.default_rng(seed)
    params = {n: r.standard_normal(s).astype(dtype) for n, s in SHAPES.items()}
    grads = {n: r.standard_normal(s).astype(dtype) for n, s in SHAPES.items()}
    return params, grads


def _second_step(name, dtype):
    """Parameters, gradients and a solver state after one generic step (so that the next step
    reads velocities / moments)."""
    params, grads = _arrays(dtype)
    params, state = SOLVERS[name].step(np, params, _arrays(dtype, seed=1)[1], solvers.empty_state(), HP)
    return params, grads, state


def _bits(a) -> bytes:
    return np.ascontiguousarray(a).view(np.uint8).tobytes()


def _exactly_finite(grads, new_params, new_state) -> bool:
    moments = [a for slot in solvers.SLOTS for a in new_state.get(slot, {}).values()]
    return all(bool(np.isfinite(a).all()) for a in [*grads.values(), *new_params.values(), *moments])


@pytest.mark.parametrize("name", ["sgd", "adam"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_bits_as_the_generic_step_at_1_2_3_threads(name, dtype):
    for params, grads, state in (_arrays(dtype) + (solvers.empty_state(),), _second_step(name, dtype)):
        copies = {n: (_bits(params[n]), _bits(grads[n])) for n in SHAPES}
        ref_params, ref_state = SOLVERS[name].step(np, params, grads, state, HP)
        for threads in (1, 2, 3):
            new_params, new_state, finite = at_threads(
                threads, lambda: NumpyBackend().solver_step_checked(SOLVERS[name], params, grads, state, HP))
            assert finite is True
            for n in SHAPES:
                assert new_params[n].dtype == dtype and _bits(new_params[n]) == _bits(ref_params[n]), (n, threads)
                for slot in solvers.SLOTS:
                    if n in ref_state[slot]:
                        assert _bits(new_state[slot][n]) == _bits(ref_state[slot][n]), (slot, n, threads)
            assert (new_state["step"], new_state["adam_step"]) == (ref_state["step"], ref_state["adam_step"])
        assert all(copies[n] == (_bits(params[n]), _bits(grads[n])) for n in SHAPES)  # inputs untouched


def _fault(case, name, dtype, params, grads, state, hp):
    """Put one fault into the arrays (in place); the element sits in a later block of "big"."""
    big = np.finfo(dtype).max
    k = 2 * BLOCK + 5
    if case in ("nan_g", "inf_g", "-inf_g"):
        grads["big"][k] = {"nan_g": np.nan, "inf_g": np.inf, "-inf_g": -np.inf}[case]
    elif case == "nan_g_last":
        grads["fc.weight"][-1, -1] = np.nan
    elif case == "velocity_overflow":  # lr * g overflows, g finite
        grads["big"][k] = big / 2
        hp["learning_rate"] = 10.0
    elif case == "weights_overflow":  # g and the new velocity / moments finite, w + update not
        params["big"][k] = big
        if name == "sgd":
            grads["big"][k] = -big / 4
        else:
            grads["big"][k] = -1.0
            hp["learning_rate"] = float(big) / 1e3
    elif case == "moment_overflow":  # Adam: g*g overflows (s infinite) while m and w stay finite
        grads["big"][k] = np.sqrt(big) * 4
    elif case == "near_max":  # every value finite, but whole blocks sum (and dot) past the maximum
        params["big"][:2 * BLOCK] = big / 2
        grads["big"][:2 * BLOCK] = 0
        if name == "sgd":
            state["velocity"]["big"] = np.full(SHAPES["big"], big / 2, dtype)
        else:
            state["adam_v"]["big"] = np.full(SHAPES["big"], big / 2, dtype)


FAULTS = ["nan_g", "inf_g", "-inf_g", "nan_g_last", "velocity_overflow", "weights_overflow", "moment_overflow"]


@pytest.mark.parametrize("case", FAULTS + ["near_max"])
@pytest.mark.parametrize("name", ["sgd", "adam"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_finite_flag_is_the_exact_answer(case, name, dtype):
    if case == "moment_overflow" and name == "sgd":
        pytest.skip("Adam's second moment only")
    params, grads, state = _second_step(name, dtype)
    hp = dict(HP)
    _fault(case, name, dtype, params, grads, state, hp)
    with np.errstate(over="ignore", invalid="ignore"):
        ref_params, ref_state = SOLVERS[name].step(np, params, grads, state, hp)
        exact = _exactly_finite(grads, ref_params, ref_state)
        # the case is what it says it is
        assert exact == (case == "near_max")
        if case in ("velocity_overflow", "weights_overflow", "moment_overflow"):
            assert all(np.isfinite(g).all() for g in grads.values())
        if case in ("weights_overflow", "moment_overflow"):
            assert np.isfinite(ref_params["big"]).all() == (case == "moment_overflow")
        if case == "near_max":
            block = ref_params["big"][:BLOCK]
            assert not np.isfinite(np.dot(block, np.ones_like(block)))  # the shortcut alone would refuse
        for threads in (1, 3):
            new_params, new_state, finite = at_threads(
                threads, lambda: NumpyBackend().solver_step_checked(SOLVERS[name], params, grads, state, hp))
            assert finite is exact, threads
            if exact:
                assert all(_bits(new_params[n]) == _bits(ref_params[n]) for n in SHAPES)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_finite_sums_by_dot_products_and_stays_quiet(dtype):
    """all_finite (what the train step still runs on the batch-norm statistics, and on every
    array after a solver without a fused check) against np.isfinite, in later blocks of large
    arrays and among small ones, for values whose sums overflow, without numpy warnings."""
    big = np.finfo(dtype).max
    r = np.random.default_rng(4)
    arrays = [r.standard_normal(n).astype(dtype) for n in (9 * BLOCK + 3, 7, 300)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert solver_mod.all_finite(arrays)
        for i, k in ((0, 8 * BLOCK + 1), (1, 6), (2, 0)):
            for bad in (np.nan, np.inf, -np.inf):
                broken = [a.copy() for a in arrays]
                broken[i][k] = bad
                assert not solver_mod.all_finite(broken), (i, bad)
        near_max = [np.full(9 * BLOCK + 3, big / 2, dtype), np.full(40, big / 2, dtype), np.full(50, big, dtype)]
        assert solver_mod.all_finite(near_max)
        params, grads = _arrays(dtype)
        grads["big"][-1] = np.nan
        assert NumpyBackend().solver_step_checked(SOLVERS["adam"], params, grads, solvers.empty_state(), HP)[2] is False


def test_solvers_and_backends_without_a_fused_check_leave_it_to_the_caller():
    params, grads = _arrays(np.float32)
    grads["big"][3] = np.nan

    class Halve(solvers.Solver):
        name = "halve"

        def step(self, xp, params, grads, state, hp):
            return {n: params[n] / 2 for n in grads}, solvers.copy_state(state)

    new_params, _, finite = NumpyBackend().solver_step_checked(Halve(), params, grads, solvers.empty_state(), HP)
    assert finite is None and np.array_equal(new_params["big"], params["big"] / 2)
    calls = []

    class OwnStep(NumpyBackend):  # a subclass with its own solver_step gets that step, unchecked
        def solver_step(self, solver, params, grads, state, hp):
            calls.append(solver.name)
            return super().solver_step(solver, params, grads, state, hp)

    *_, finite = OwnStep().solver_step_checked(SOLVERS["sgd"], params, grads, solvers.empty_state(), HP)
    assert finite is None and calls == ["sgd"]
    *_, finite = NumpyBackend().solver_step_checked(SOLVERS["sgd"], params, grads, solvers.empty_state(), HP)
    assert finite is False


# ------------------------------------------------------------------------------ train steps

NEEDS_TORCH = pytest.mark.skipif(not dlbatch.core.plugins.manager.registry.backends.get("torch"),
                                 reason="torch backend not installed")
PATHS = ["numpy", "numpy-generic", pytest.param("torch", marks=NEEDS_TORCH)]


def _poison(model, array, value):
    """A backend array of `array`'s values with its last element set to `value`."""
    host = np.array(model.backend.to_numpy(array), copy=True)
    host.reshape(-1)[-1] = value
    return model.asarray(host)


def _train_refused(model, samples) -> str:
    before = snapshot(model)
    with pytest.raises(DLNumericError) as err:
        model.train_batch(samples)
    assert_unchanged(before, model, "the refused step")
    return str(err.value)


SCENARIOS = ["nan_gradient", "inf_gradient", "nan_statistic", "sgd_velocity_overflow",
             "adam_weights_overflow", "adam_moment_overflow", "sgd_rate_beyond_float32", "adam_rate_beyond_float32"]
EXPECTED = {"nan_gradient": BAD_GRADIENT, "inf_gradient": BAD_GRADIENT, "nan_statistic": BAD_GRADIENT,
            "sgd_velocity_overflow": BAD_WEIGHTS, "adam_weights_overflow": BAD_WEIGHTS,
            "adam_moment_overflow": BAD_STATE, "sgd_rate_beyond_float32": BAD_WEIGHTS,
            "adam_rate_beyond_float32": BAD_WEIGHTS}


def _refusal(scenario: str, backend: str, monkeypatch) -> str:
    solver_type = "adam" if scenario.startswith("adam") else "sgd"
    model = make_model("classification", backend=backend, solver_type=solver_type)
    model.train_batch(valid_batch(model, seed=1))  # a solver state to keep
    program = model.program()
    if scenario in ("nan_gradient", "inf_gradient"):
        backward = program.backward

        def poisoned_backward(tape, output_grads):
            grads = backward(tape, output_grads)
            name = sorted(grads)[0]
            grads[name] = _poison(model, grads[name], np.nan if scenario == "nan_gradient" else np.inf)
            return grads

        monkeypatch.setattr(program, "backward", poisoned_backward)
    elif scenario == "nan_statistic":  # gradients, weights and solver state stay finite
        forward = program.forward

        def poisoned_forward(*args, **kwargs):
            result = forward(*args, **kwargs)
            name = sorted(result.statistics)[0]
            result.statistics[name] = _poison(model, result.statistics[name], np.nan)
            return result

        monkeypatch.setattr(program, "forward", poisoned_forward)
    elif scenario == "sgd_velocity_overflow":  # g = g + 1e3 w is finite, 1e37 g is not
        model.set_param("weight_prior", 1e3)
        model.set_param("learning_rate", 1e37)
    elif scenario == "adam_weights_overflow":  # m, s finite; (lr / c1) m overflows
        model.set_param("weight_prior", 1e3)
        model.set_param("learning_rate", 1e37)
    elif scenario.endswith("rate_beyond_float32"):  # torch refuses such a scalar for float32 tensors
        model.set_param("learning_rate", 1e300)
    else:  # g*g overflows float32 in s while m / sqrt(s) -> 0 keeps the weights finite
        model.set_param("learning_rate", 1e-30)
        model.set_param("weight_prior", 1e24)
    return _train_refused(model, valid_batch(model, seed=2))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_refused_step_says_what_went_wrong_and_changes_nothing(scenario, path, monkeypatch):
    if path == "numpy-generic":  # Backend's default: the train step checks every array itself
        monkeypatch.setattr(NumpyBackend, "solver_step_checked", Backend.solver_step_checked)
    message = _refusal(scenario, "torch" if path == "torch" else "numpy", monkeypatch)
    assert message.startswith(EXPECTED[scenario] + "; the step was not applied"), message


def test_the_checked_path_gives_the_generic_path_s_message(monkeypatch):
    """The numpy backend's checked update and Backend's default give the very same messages."""
    fused = [_refusal(s, "numpy", monkeypatch) for s in SCENARIOS]
    monkeypatch.undo()
    monkeypatch.setattr(NumpyBackend, "solver_step_checked", Backend.solver_step_checked)
    assert fused == [_refusal(s, "numpy", monkeypatch) for s in SCENARIOS]


def test_a_finite_step_trains_as_the_generic_path(monkeypatch):
    """Three steps with the checked update equal three with the generic check, bit for bit."""
    def train(solver_type):
        model = make_model("classification", solver_type=solver_type)
        for seed in range(3):
            model.train_batch(valid_batch(model, seed=seed))
        return model.state_dict(), model.solver_state_dict()

    for solver_type in ("sgd", "adam"):
        fused = train(solver_type)
        with monkeypatch.context() as m:
            m.setattr(NumpyBackend, "solver_step_checked", Backend.solver_step_checked)
            generic = train(solver_type)
        for got, ref in zip(fused, generic):
            assert got.keys() == ref.keys()
            assert all(_bits(np.asarray(got[k])) == _bits(np.asarray(ref[k])) for k in ref), solver_type
