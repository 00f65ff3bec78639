"""Reusable activation and gradient buffers for the numpy program.

A train step allocates the same large arrays every time. Fresh memory from the allocator costs
a page fault per 4 KiB page on first touch (glibc returns freed heap tops and large blocks to
the system), a few milliseconds per step. While a program runs, the kernels take their large
outputs and gradients from a pool instead: a pooled buffer is free again when nothing references
it any more (every numpy view keeps its base alive, so the reference count of the base tells),
and the pool hands it out again for the next request of the same size.

Outside a running program (kernels called directly) `empty` is plain np.empty. Which pool is
running is per thread (a context variable, which the numpy backend's helper threads inherit from
the thread whose chunks they run): a thread never takes buffers from a program that another
thread runs, and a program leaving in one thread cannot pull the pool from under another.
"""
from __future__ import annotations

import contextvars
import os
import sys
import threading

import numpy as np

MIN_BYTES = 1 << 16  # smaller arrays come from numpy's allocator as usual
KEEP_GENERATIONS = 2  # free buffers unused for this many program runs are released

_lock = threading.RLock()
_active: contextvars.ContextVar[tuple] = contextvars.ContextVar("dlbatch_buffer_pools", default=())


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.RLock()  # a thread that held it in the parent does not exist in a fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _refs(lst: list, i: int) -> int:
    return sys.getrefcount(lst[i])


_probe = [np.empty(1)]
_UNUSED = _refs(_probe, 0)  # the count of a base that only the pool's list holds
del _probe


class BufferPool:
    def __init__(self) -> None:
        self._bases: dict[tuple, list] = {}
        self._used: dict[int, int] = {}
        self._gen = 0

    def new_generation(self) -> None:
        """Called once per program run: releases buffers left unused for a while."""
        with _lock:
            self._gen += 1
            for key, lst in list(self._bases.items()):
                keep = []
                for i in range(len(lst)):
                    if _refs(lst, i) > _UNUSED or self._used.get(id(lst[i]), 0) >= self._gen - KEEP_GENERATIONS:
                        keep.append(lst[i])
                    else:
                        self._used.pop(id(lst[i]), None)
                if keep:
                    self._bases[key] = keep
                else:
                    del self._bases[key]

    def take(self, n: int, dtype: np.dtype) -> np.ndarray:
        """A 1-D buffer of n elements that nobody else references."""
        key = (n, dtype.char)
        with _lock:
            lst = self._bases.setdefault(key, [])
            for i in range(len(lst)):
                if _refs(lst, i) == _UNUSED:
                    self._used[id(lst[i])] = self._gen
                    return lst[i][:]
            base = np.empty(n, dtype=dtype)
            lst.append(base)
            self._used[id(base)] = self._gen
            return base[:]

    def __enter__(self):
        _active.set(_active.get() + (self,))
        return self

    def __exit__(self, *exc):
        pools = _active.get()
        i = len(pools) - 1 - pools[::-1].index(self)
        _active.set(pools[:i] + pools[i + 1:])


def empty(shape, dtype) -> np.ndarray:
    """np.empty(shape, dtype) (C order), from the running program's pool when there is one."""
    dtype = np.dtype(dtype)
    n = 1
    for v in shape:
        n *= int(v)
    pools = _active.get()
    if n * dtype.itemsize < MIN_BYTES or not pools:
        return np.empty(shape, dtype=dtype)
    return pools[-1].take(n, dtype).reshape(shape)


def empty_like(a: np.ndarray, dtype=None) -> np.ndarray:
    """np.empty_like(a) with a's memory layout (channel-major stays channel-major)."""
    dtype = np.dtype(dtype or a.dtype)
    if a.size * dtype.itemsize < MIN_BYTES or not _active.get() or a.ndim == 0:
        return np.empty_like(a, dtype=dtype)
    order = sorted(range(a.ndim), key=lambda i: -a.strides[i])
    buf = empty(tuple(a.shape[i] for i in order), dtype)
    return buf.transpose(np.argsort(order))


def zeros(shape, dtype) -> np.ndarray:
    out = empty(shape, dtype)
    out.fill(0)
    return out
