"""Values derived from kernel inputs that do not change between calls (inference weights with
the batch norm folded in, GEMM weight matrices with the bias appended), cached by the identity
of the arrays they come from.

Model values are never modified in place: solvers and the model API give new arrays (see
dlbatch.core.train and the numpy solver), so an array object keeps its data for life and a
result derived from it stays valid as long as it lives. Each entry holds only weak references
to its sources and is dropped as soon as one of them is freed, so the cache keeps no old
weights alive; after a training step the next inference derives afresh.
"""
from __future__ import annotations

import weakref
from typing import Any, Callable, Sequence

_entries: dict[tuple, tuple[tuple, Any]] = {}


def _drop(key):
    return lambda _ref: _entries.pop(key, None)


def derived(tag: tuple, sources: Sequence[Any], compute: Callable[[], Any]) -> Any:
    """compute(), or the value it returned for the same `tag` and the same (still living)
    source objects. Sources that take no weak references (Python scalars, None) make the
    value uncached."""
    key = tag + tuple(id(s) for s in sources)
    hit = _entries.get(key)
    if hit is not None and all(r() is s for r, s in zip(hit[0], sources)):
        return hit[1]
    value = compute()
    try:
        refs = tuple(weakref.ref(s, _drop(key)) for s in sources)
    except TypeError:
        return value
    _entries[key] = (refs, value)
    return value


def cached_count() -> int:
    """How many derived values are held (for tests)."""
    return len(_entries)
