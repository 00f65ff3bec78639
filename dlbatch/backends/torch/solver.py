"""The solvers of SPEC section 2 as fused multi-tensor (`torch._foreach_*`) updates.

Same contract and state layout as `dlbatch.core.solvers` (functional: new parameter and state
tensors are returned, inputs are never modified), a handful of kernel launches per step
instead of several per parameter. Solvers other than the built-in sgd/adam (or subclasses that
override `step`) return None here and the generic per-tensor step runs instead.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from ...core import solvers as core
from ._lazy import require_torch


def fused_step(solver, params: Mapping[str, Any], grads: Mapping[str, Any], state: Mapping,
               hp: Mapping[str, Any]):
    if type(solver) is core.SGD:
        return sgd_step(params, grads, state, hp)
    if type(solver) is core.Adam:
        return adam_step(params, grads, state, hp)
    return None


def add_weight_prior(params, grads, names, weight_prior: float):
    """grads[n] = g + weight_prior * w and R = weight_prior/2 * sum w^2 in two multi-tensor
    calls (torch._foreach_add, torch._foreach_norm) instead of four launches per weight; None
    where the weights are not all of one device and type (the generic code runs)."""
    torch = require_torch()
    names = list(names)
    ws = [params[n] for n in names]
    if weight_prior == 0.0 or not names or len({(w.device, w.dtype) for w in ws}) != 1 \
            or any(grads[n].dtype != ws[0].dtype for n in names):
        return None
    with torch.no_grad():
        new = torch._foreach_add([grads[n] for n in names], ws, alpha=_scalar(weight_prior, ws[0]))
        total = torch.stack(torch._foreach_norm(ws, 2.0)).square().sum()
    grads.update(zip(names, new))
    return 0.5 * weight_prior * total


def _scalar(value: float, like) -> float:
    """`value` as a multiplier of tensors like `like`: beyond their type's range it is the
    infinity the type's own arithmetic would give (torch refuses such an alpha or value with a
    RuntimeError; as inf the step is refused with the usual non-finite message)."""
    torch = require_torch()
    if abs(value) > torch.finfo(like.dtype).max:
        return math.copysign(math.inf, value)
    return value


def _split(names, slot: Mapping):
    """(names with a previous slot value, names without one: zeros, SPEC v_0 = 0)."""
    have = [n for n in names if slot.get(n) is not None]
    fresh = [n for n in names if slot.get(n) is None]
    return have, fresh


def sgd_step(params, grads, state, hp):
    """v = mu * v - lr * g ; w = w + v  (HALCON form, lr inside the velocity)."""
    torch = require_torch()
    lr, mu = float(hp["learning_rate"]), float(hp["momentum"])
    new_state = core.copy_state(state)
    new_params: dict[str, Any] = {}
    with torch.no_grad():
        have, fresh = _split(list(grads), state["velocity"])
        for names, prev in ((have, True), (fresh, False)):
            if not names:
                continue
            g = [grads[n] for n in names]
            if prev:
                v = torch._foreach_mul([state["velocity"][n] for n in names], mu)
                torch._foreach_add_(v, g, alpha=_scalar(-lr, g[0]))
            else:
                v = torch._foreach_mul(g, -lr)
            w = torch._foreach_add([params[n] for n in names], v)
            for n, vn, wn in zip(names, v, w):
                new_state["velocity"][n] = vn
                new_params[n] = wn
    new_state["step"] = int(state["step"]) + 1
    return new_params, new_state


def adam_step(params, grads, state, hp):
    """m = b1 m + (1-b1) g ; s = b2 s + (1-b2) g^2 ; w = w - lr (m/c1) / (sqrt(s/c2) + eps)."""
    torch = require_torch()
    lr = float(hp["learning_rate"])
    b1, b2, eps = float(hp["adam_beta1"]), float(hp["adam_beta2"]), float(hp["adam_epsilon"])
    t = int(state["adam_step"]) + 1
    c1, c2 = core.bias_corrections(b1, b2, t)
    new_state = core.copy_state(state)
    new_params: dict[str, Any] = {}
    names = list(grads)
    with torch.no_grad():
        g_all = {n: grads[n] for n in names}
        m_new: dict[str, Any] = {}
        s_new: dict[str, Any] = {}
        have, fresh = _split(names, state["adam_m"])
        if have:
            m = torch._foreach_mul([state["adam_m"][n] for n in have], b1)
            torch._foreach_add_(m, [g_all[n] for n in have], alpha=1.0 - b1)
            m_new.update(zip(have, m))
        if fresh:
            m_new.update(zip(fresh, torch._foreach_mul([g_all[n] for n in fresh], 1.0 - b1)))
        have, fresh = _split(names, state["adam_v"])
        if have:
            s = torch._foreach_mul([state["adam_v"][n] for n in have], b2)
            g = [g_all[n] for n in have]
            torch._foreach_addcmul_(s, g, g, value=1.0 - b2)
            s_new.update(zip(have, s))
        if fresh:
            g = [g_all[n] for n in fresh]
            sq = torch._foreach_mul(g, g)
            torch._foreach_mul_(sq, 1.0 - b2)
            s_new.update(zip(fresh, sq))
        m_list = [m_new[n] for n in names]
        s_list = [s_new[n] for n in names]
        denom = torch._foreach_div(s_list, c2)
        torch._foreach_sqrt_(denom)
        torch._foreach_add_(denom, eps)
        w = torch._foreach_addcdiv([params[n] for n in names], m_list, denom, value=_scalar(-(lr / c1), denom[0]))
        for n, mn, sn, wn in zip(names, m_list, s_list, w):
            new_state["adam_m"][n] = mn
            new_state["adam_v"][n] = sn
            new_params[n] = wn
    new_state["adam_step"] = t
    new_state["step"] = int(state["step"]) + 1
    return new_params, new_state
