"""The built-in solvers (sgd, adam) as blocked, threaded numpy updates.

Same contract, state layout and arithmetic as `dlbatch.core.solvers` (functional: new parameter
and state arrays are returned, inputs are never modified; every element goes through the same
float operations in the same order, so the results are bit-identical to the generic step), but
each block of every parameter makes one trip through the cache instead of one full-size
temporary per operation, and the blocks run on the kernel threads. Solvers other than the
built-in two (or subclasses that override `step`) return None and the generic step runs.

`fused_step_checked` also says whether the gradients, new weights and new solver state are all
finite, checked on each block while it is still in cache (`_block_finite`) instead of in one
more pass over every array after the update.
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any, Mapping

import numpy as np

from ...core import solvers as core
from . import buffers, parallel
from .ops._util import scratch

BLOCK = 1 << 16  # elements per task


def _tasks(names, arrays):
    """(name, start, stop) ranges over the flattened arrays, about BLOCK elements each."""
    out = []
    for n in names:
        size = arrays[n].size
        for a in range(0, size, BLOCK):
            out.append((n, a, min(size, a + BLOCK)))
    return out


def _flat(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1)


def _usable(params, grads, names) -> bool:
    for n in names:
        p, g = params[n], grads[n]
        if not (isinstance(p, np.ndarray) and isinstance(g, np.ndarray)) or p.dtype != g.dtype \
                or p.dtype not in (np.float32, np.float64) or p.shape != g.shape \
                or not (p.flags.c_contiguous and g.flags.c_contiguous):
            return False
    return True


def fused_step(solver, params: Mapping[str, Any], grads: Mapping[str, Any], state: Mapping,
               hp: Mapping[str, Any], pool: buffers.BufferPool | None = None):
    """New parameters and state, or None for a solver without a fused form. With a pool, the
    new arrays come from it: the arrays of two steps ago are free again by then (nothing
    references them after the commit), so a step costs no fresh memory (page faults)."""
    result = _fused(solver, params, grads, state, hp, pool, check=False)
    return None if result is None else result[:2]


def fused_step_checked(solver, params: Mapping[str, Any], grads: Mapping[str, Any], state: Mapping,
                       hp: Mapping[str, Any], pool: buffers.BufferPool | None = None):
    """fused_step and whether every gradient, new weight and new solver-state element is
    finite: (new_params, new_state, finite), or None for a solver without a fused form."""
    return _fused(solver, params, grads, state, hp, pool, check=True)


def _fused(solver, params, grads, state, hp, pool, check: bool):
    names = list(grads)
    if type(solver) not in (core.SGD, core.Adam) or not _usable(params, grads, names):
        return None
    quiet = np.errstate(over="ignore", invalid="ignore") if check else nullcontext()  # reported as finite=False
    with _pooled(pool), quiet:
        return (_sgd if type(solver) is core.SGD else _adam)(names, params, grads, state, hp, check)


def _pooled(pool: buffers.BufferPool | None):
    """The context in which buffers.empty takes from `pool` (one new generation per call)."""
    if pool is None:
        return nullcontext()
    pool.new_generation()
    return pool


CHECK = 4 * BLOCK  # elements per all_finite task
_ONES: dict[str, np.ndarray] = {}


def _sum_finite(part: np.ndarray) -> bool:
    """Whether the sum of `part` is finite: then so is every element; a NaN or infinity makes
    it non-finite, and so may the overflow of finite values near the dtype's maximum. For a
    1-D float32/float64 part the sum is a dot product with ones, which reads a block in cache
    about 3x faster than .sum() (and memory about 1.5x faster). The caller ignores numpy's
    overflow and invalid-value warnings (np.errstate, which the kernel threads inherit)."""
    if part.ndim == 1 and part.dtype.char in "fd" and part.size <= CHECK:
        ones = _ONES.get(part.dtype.char)
        if ones is None:
            ones = _ONES[part.dtype.char] = np.ones(CHECK, part.dtype)
        return math.isfinite(float(np.dot(part, ones[:part.size])))
    return bool(np.isfinite(part.sum()))


def _block_finite(*blocks: np.ndarray) -> bool:
    """Whether every element of these blocks is finite: element by element only for a block
    whose sum is not (`_sum_finite`)."""
    for b in blocks:
        if not _sum_finite(b) and not np.isfinite(b).all():
            return False
    return True


def _finished(results: list, check: bool):
    return all(results) if check else None


def _prev(slot: Mapping, n: str, like: np.ndarray):
    v = slot.get(n)
    if v is None:
        return None
    v = np.asarray(v)
    if v.dtype != like.dtype or v.shape != like.shape or not v.flags.c_contiguous:
        v = np.ascontiguousarray(v, dtype=like.dtype).reshape(like.shape)
    return v


def _sgd(names, params, grads, state, hp, check):
    """v = mu * v - lr * g (v = -lr * g at first) ; w = w + v. Checked: a finite new w means
    a finite v (w + v is NaN or infinite wherever v is), and a finite v a finite g (lr * g is
    NaN or infinite wherever g is, whatever lr, 0 included), so each block checks w only."""
    lr, mu = hp["learning_rate"], hp["momentum"]
    new_state = core.copy_state(state)
    new_params = {}
    prev = {n: _prev(state["velocity"], n, grads[n]) for n in names}
    for n in names:
        new_state["velocity"][n] = buffers.empty(grads[n].shape, grads[n].dtype)
        new_params[n] = buffers.empty(params[n].shape, params[n].dtype)

    def block(t):
        n, a, z = t
        g = _flat(grads[n])[a:z]
        v = _flat(new_state["velocity"][n])[a:z]
        vp = prev[n]
        if vp is None:
            np.multiply(-lr, g, out=v)
        else:
            np.multiply(mu, _flat(vp)[a:z], out=v)
            tmp = np.multiply(lr, g, out=scratch("sgd", g.shape, g.dtype))
            np.subtract(v, tmp, out=v)
        w = np.add(_flat(params[n])[a:z], v, out=_flat(new_params[n])[a:z])
        return check and _block_finite(w)

    done = parallel.run_sized(block, _tasks(names, grads), sum(grads[n].size for n in names))
    new_state["step"] = state["step"] + 1
    return new_params, new_state, _finished(done, check)


def _adam(names, params, grads, state, hp, check):
    """m = b1 m + (1-b1) g ; s = b2 s + (1-b2) g^2 ; w = w - (lr/c1) m / (sqrt(s/c2) + eps).
    Checked: a finite new w means a finite m (a NaN or infinite m makes (lr/c1) m / d NaN or
    infinite for any d, 0 and infinite d included), and a finite m a finite g; s is checked too,
    since an infinite s (g*g overflowing) leaves w finite (m / inf = 0)."""
    lr, b1, b2, eps = hp["learning_rate"], hp["adam_beta1"], hp["adam_beta2"], hp["adam_epsilon"]
    t = state["adam_step"] + 1
    c1, c2 = 1.0 - b1 ** t, 1.0 - b2 ** t
    new_state = core.copy_state(state)
    new_params = {}
    prev_m = {n: _prev(state["adam_m"], n, grads[n]) for n in names}
    prev_s = {n: _prev(state["adam_v"], n, grads[n]) for n in names}
    for n in names:
        new_state["adam_m"][n] = buffers.empty(grads[n].shape, grads[n].dtype)
        new_state["adam_v"][n] = buffers.empty(grads[n].shape, grads[n].dtype)
        new_params[n] = buffers.empty(params[n].shape, params[n].dtype)
    k1, k2, step = 1 - b1, 1 - b2, lr / c1

    def block(tk):
        n, a, z = tk
        g = _flat(grads[n])[a:z]
        m = _flat(new_state["adam_m"][n])[a:z]
        s = _flat(new_state["adam_v"][n])[a:z]
        tmp = scratch("adam", g.shape, g.dtype)
        if prev_m[n] is None:
            np.multiply(k1, g, out=m)
        else:
            np.multiply(b1, _flat(prev_m[n])[a:z], out=m)
            np.add(m, np.multiply(k1, g, out=tmp), out=m)
        gg = np.multiply(g, g, out=tmp)
        if prev_s[n] is None:
            np.multiply(k2, gg, out=s)
        else:
            np.multiply(k2, gg, out=gg)
            np.add(np.multiply(b2, _flat(prev_s[n])[a:z], out=s), gg, out=s)
        w = _flat(new_params[n])[a:z]
        np.divide(s, c2, out=tmp)
        np.sqrt(tmp, out=tmp)
        np.add(tmp, eps, out=tmp)
        np.multiply(step, m, out=w)
        np.divide(w, tmp, out=w)
        np.subtract(_flat(params[n])[a:z], w, out=w)
        return check and _block_finite(w, s)

    done = parallel.run_sized(block, _tasks(names, grads), sum(grads[n].size for n in names))
    new_state["adam_step"] = t
    new_state["step"] = state["step"] + 1
    return new_params, new_state, _finished(done, check)


def add_weight_prior(params, grads, names, weight_prior: float, pool: buffers.BufferPool | None = None):
    """grads[n] = g + weight_prior * w for the regularized names and R = weight_prior/2 * sum
    w^2, in one blocked, threaded pass (the generic step's operations on each element, so the
    same gradient bits; R from per-block sums added in block order, so the same at any thread
    count), instead of four full-size passes and temporaries per weight. None where the arrays
    do not fit (the generic code runs). With a pool, the new gradients come from it (the last
    step's are free again), so the step costs no fresh memory (page faults)."""
    names = list(names)
    if weight_prior == 0.0 or not names or not _usable(params, grads, names):
        return None
    with _pooled(pool):
        new = {n: buffers.empty(grads[n].shape, grads[n].dtype) for n in names}

    def block(t):
        n, a, z = t
        w = _flat(params[n])[a:z]
        out = _flat(new[n])[a:z]
        np.multiply(weight_prior, w, out=out)
        np.add(_flat(grads[n])[a:z], out, out=out)
        return float(np.multiply(w, w, out=scratch("prior", w.shape, w.dtype)).sum())

    partials = parallel.run_sized(block, _tasks(names, grads), sum(grads[n].size for n in names))
    grads.update(new)
    total = grads[names[0]].dtype.type(sum(partials))  # in the model's precision, as the generic R
    return 0.5 * weight_prior * total


SMALL = 1 << 14  # arrays below this many elements are checked together, as one concatenation


def all_finite(arrays) -> bool:
    """The sum of a float array is finite exactly when every element is, unless the sum
    overflows; only blocks whose sums (`_sum_finite`) are not finite are checked element-wise.
    Small arrays (biases, batch-norm parameters, a compact model's weights) are concatenated
    first: one sum instead of a Python call each (a compact model's step checks about 160)."""
    floats = [np.asarray(a) for a in arrays]
    floats = [a for a in floats if a.dtype.kind in "fc" and a.size]
    small = [a.reshape(-1) for a in floats if a.size < SMALL]
    floats = [a for a in floats if a.size >= SMALL]
    if len(small) > 1:
        floats.append(np.concatenate(small))
    else:
        floats.extend(small)
    flat = [a.reshape(-1) if a.flags.c_contiguous else a for a in floats]
    tasks = []
    for i, a in enumerate(flat):
        if a.ndim == 1:
            tasks.extend((i, s, min(a.size, s + CHECK)) for s in range(0, a.size, CHECK))
        else:
            tasks.append((i, None, None))

    def check(t):
        i, a, z = t
        return _block_finite(flat[i] if a is None else flat[i][a:z])

    with np.errstate(over="ignore", invalid="ignore"):
        return all(parallel.run_sized(check, tasks, sum(a.size for a in flat)))
