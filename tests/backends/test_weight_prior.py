"""The backends' weight prior (Backend.add_weight_prior: grads += weight_prior * w, R =
weight_prior/2 * sum w^2) against the generic array code of dlbatch.core.regularization: the
numpy backend's blocked pass gives the same gradient bits, the same R at 1, 2 and 3 threads,
and R within rounding of the float64 sum; the torch backend's multi-tensor calls agree in
float64; inputs are never changed, a weight prior of 0 changes nothing, and the numpy backend
reuses the last step's gradient memory from its buffer pool."""
from __future__ import annotations

import numpy as np
import pytest

from dlbatch.backends.numpy_cpu.backend import NumpyBackend
from dlbatch.backends.numpy_cpu.solver import BLOCK
from dlbatch.core.regularization import add_weight_prior as generic

from .numpy_perf._ref import assert_same_bits_at_1_2_3_threads

SHAPES = {"conv.weight": (64, 32, 3, 3), "big.weight": (3 * BLOCK + 17,), "fc.weight": (10, 64), "bias": (10,)}
NAMES = ["conv.weight", "big.weight", "fc.weight"]  # rank >= 2 in a model; "bias" is left alone


def _arrays(dtype, seed=0):
    r = np.random.default_rng(seed)
    params = {n: r.standard_normal(s).astype(dtype) for n, s in SHAPES.items()}
    grads = {n: r.standard_normal(s).astype(dtype) for n, s in SHAPES.items()}
    return params, grads


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_weight_prior_matches_the_generic_code(dtype):
    params, grads = _arrays(dtype)
    copies = {k: (params[k].copy(), grads[k].copy()) for k in params}
    mine, ref = dict(grads), dict(grads)
    reg = NumpyBackend().add_weight_prior(params, mine, NAMES, 3e-4)
    reg_ref = generic(np, params, ref, NAMES, 3e-4)
    for n in SHAPES:
        assert np.array_equal(mine[n], ref[n]) and mine[n].dtype == ref[n].dtype, n
        assert np.array_equal(params[n], copies[n][0]) and np.array_equal(grads[n], copies[n][1]), n
    assert mine["bias"] is grads["bias"]
    exact = 0.5 * 3e-4 * sum(np.sum(params[n].astype(np.float64) ** 2) for n in NAMES)
    assert reg == pytest.approx(exact, rel=1e-6 if dtype == np.float32 else 1e-13)
    assert float(reg_ref) == pytest.approx(exact, rel=1e-5 if dtype == np.float32 else 1e-13)


def test_numpy_weight_prior_same_bits_at_1_2_3_threads():
    params, grads = _arrays(np.float32, seed=1)

    def run():
        g = dict(grads)
        reg = NumpyBackend().add_weight_prior(params, g, NAMES, 1e-3)
        return [g[n] for n in NAMES] + [np.array([reg])]

    assert_same_bits_at_1_2_3_threads(run)


def test_zero_weight_prior_and_unusual_arrays():
    params, grads = _arrays(np.float32)
    g = dict(grads)
    assert NumpyBackend().add_weight_prior(params, g, NAMES, 0.0) == 0.0 and g == grads
    # a non-contiguous weight takes the generic code, with the same result
    params["fc.weight"] = np.asfortranarray(params["fc.weight"])
    mine, ref = dict(grads), dict(grads)
    NumpyBackend().add_weight_prior(params, mine, NAMES, 0.5)
    generic(np, params, ref, NAMES, 0.5)
    assert all(np.array_equal(mine[n], ref[n]) for n in NAMES)


def test_torch_weight_prior_matches_float64():
    torch = pytest.importorskip("torch")
    from dlbatch.backends.torch.backend import TorchBackend
    backend = TorchBackend()
    params, grads = _arrays(np.float64, seed=2)
    tp = {n: backend.asarray(a) for n, a in params.items()}
    tg = {n: backend.asarray(a) for n, a in grads.items()}
    before = {n: t.clone() for n, t in tg.items()}
    reg = backend.add_weight_prior(tp, tg, NAMES, 2e-3)
    ref = dict(grads)
    reg_ref = generic(np, params, ref, NAMES, 2e-3)
    for n in SHAPES:
        np.testing.assert_allclose(backend.to_numpy(tg[n]), ref[n], rtol=1e-13, atol=1e-15)
    assert float(reg) == pytest.approx(float(reg_ref), rel=1e-12)
    assert all(torch.equal(before[n], backend.asarray(grads[n])) for n in SHAPES)  # inputs untouched
    # weights of two types take the generic code
    tp["fc.weight"] = tp["fc.weight"].float()
    tg2 = {n: backend.asarray(a) for n, a in grads.items()}
    tg2["fc.weight"] = tg2["fc.weight"].float()
    reg2 = backend.add_weight_prior(tp, tg2, NAMES, 2e-3)
    assert float(reg2) == pytest.approx(float(reg_ref), rel=1e-6)


def test_numpy_weight_prior_reuses_the_last_step_s_gradient_memory():
    """The new gradients come from the backend's pool: while a step's gradients are referenced
    the next step gets other memory (never an alias), once they are dropped it gets theirs back
    (no fresh pages per step), with the same bits as the generic code every time."""
    params, grads = _arrays(np.float32, seed=3)
    backend = NumpyBackend()
    ref = dict(grads)
    generic(np, params, ref, NAMES, 1e-3)

    def step():
        g = dict(grads)
        backend.add_weight_prior(params, g, NAMES, 1e-3)
        assert all(np.array_equal(g[n], ref[n]) for n in SHAPES)
        return g

    first = step()
    kept = step()  # `first` still referenced: new memory
    assert not any(np.shares_memory(first[n], kept[n]) for n in NAMES)
    addresses = {n: first[n].__array_interface__["data"][0] for n in NAMES}
    del first
    hogs = [np.empty_like(grads[n]) for n in NAMES]  # would take the freed memory, were it freed
    again = step()
    assert not any(np.shares_memory(h, again[n]) for h, n in zip(hogs, NAMES))
    big = [n for n in NAMES if again[n].nbytes >= 1 << 16]  # smaller arrays come from numpy's allocator
    assert big and all(again[n].__array_interface__["data"][0] == addresses[n] for n in big)
    assert not any(np.shares_memory(again[n], kept[n]) for n in NAMES)
