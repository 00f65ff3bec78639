"""Thread parallelism for the numpy kernels.

numpy releases the GIL inside ufunc loops, reductions and BLAS calls, so Python threads that
each work on their own chunk of an array run on separate cores. The kernels split work into
chunks that depend only on array shapes (never on the thread count), and combine partial
results in chunk order, so results are bit-identical for any number of threads.

While a program runs, BLAS is limited to one thread (`blas_single_threaded`): the parallelism
comes from the chunks instead, and idle BLAS worker threads do not spin against them. Without
threadpoolctl or a recognised OpenBLAS, BLAS keeps its own threads.

The thread count is `DLBATCH_NUM_THREADS` if set, else the number of CPUs this process may run
on (at most MAX_DEFAULT_THREADS). `set_num_threads(n)` changes it at run time.
"""
from __future__ import annotations

import glob
import os
import threading
from contextlib import contextmanager
from typing import Callable, Sequence

ENV_THREADS = "DLBATCH_NUM_THREADS"
MAX_DEFAULT_THREADS = 8


def default_num_threads() -> int:
    env = os.environ.get(ENV_THREADS, "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(n, MAX_DEFAULT_THREADS))


_num_threads = default_num_threads()
_lock = threading.Lock()
_local = threading.local()


def num_threads() -> int:
    return _num_threads


def set_num_threads(n: int) -> None:
    """Threads the numpy kernels use from now on (1 = run everything in the calling thread)."""
    global _num_threads
    _num_threads = max(1, int(n))


class _Helpers:
    """Persistent helper threads, each woken by releasing its own lock and reporting back on
    another: about 40 us per parallel region against about 95 us for a ThreadPoolExecutor's
    submit/result round trip, which a train step pays a few dozen times."""

    def __init__(self, count: int):
        self.count = count
        self.busy = threading.Lock()  # one parallel region at a time
        self.job: Callable[[], None] | None = None
        self._go = [threading.Lock() for _ in range(count)]
        self._done = [threading.Lock() for _ in range(count)]
        for lk in self._go + self._done:
            lk.acquire()
        for i in range(count):
            threading.Thread(target=self._loop, args=(i,), name=f"dlbatch-numpy-{i}", daemon=True).start()

    def _loop(self, i: int) -> None:
        _local.busy = True  # nested run() calls inside a helper stay sequential
        while True:
            self._go[i].acquire()
            if self.job is None:  # retired
                return
            try:
                self.job()  # no local reference: the job's arrays must not outlive the region
            finally:
                self._done[i].release()

    def run_job(self, job: Callable[[], None]) -> None:
        """job() on every helper and on the caller; returns when all are done."""
        self.job = job
        for lk in self._go:
            lk.release()
        try:
            job()
        finally:
            for lk in self._done:
                lk.acquire()
            self.job = None  # the closure holds the region's arrays: let the buffer pool reuse them

    def retire(self) -> None:
        """Let the helper threads end once the running region (if any) is over; `busy` is kept,
        so a caller still holding this object runs sequentially."""
        self.busy.acquire()
        self.job = None
        for lk in self._go:
            lk.release()


_helpers: _Helpers | None = None


def _after_fork_in_child() -> None:
    """A forked child has only the forking thread: the helper threads and a lock one of them
    held are gone, so start from nothing (else its first parallel region waits forever)."""
    global _helpers, _lock
    _helpers, _lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _helpers_for(count: int) -> _Helpers:
    global _helpers
    with _lock:
        old = _helpers
        if old is None or old.count != count:
            _helpers = _Helpers(count)
        current = _helpers
    if old is not None and old is not current:  # not under _lock: its region may need _lock
        threading.Thread(target=old.retire, daemon=True).start()
    return current


def in_worker() -> bool:
    return getattr(_local, "busy", False)


def run(fn: Callable, items: Sequence) -> list:
    """[fn(item) for item in items], the items shared among the threads (each thread takes the
    next unstarted item). Results come back in item order; the first exception is re-raised.
    Nested calls (fn calling run), and calls while another thread's parallel region holds the
    helpers, run sequentially in the calling thread (same results: chunking never depends on
    the thread count)."""
    n = len(items)
    threads = min(_num_threads, n)
    if threads <= 1 or in_worker():
        return [fn(item) for item in items]
    helpers = _helpers_for(_num_threads - 1)
    if not helpers.busy.acquire(blocking=False):
        return [fn(item) for item in items]
    results = [None] * n
    errors: list[BaseException] = []
    nxt = [0]
    take = threading.Lock()

    def work():
        while not errors:
            with take:
                i = nxt[0]
                nxt[0] = i + 1
            if i >= n:
                return
            try:
                results[i] = fn(items[i])
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller
                errors.append(e)
                return

    try:
        with blas_single_threaded():
            _local.busy = True  # the caller works too: its nested run() calls stay sequential
            try:
                helpers.run_job(work)
            finally:
                _local.busy = False
    finally:
        helpers.busy.release()
    if errors:
        raise errors[0]
    return results


PARALLEL_MIN_ELEMENTS = 1 << 19  # below this much work a region's wake-ups cost more than they save


def run_sized(fn: Callable, items: Sequence, elements: int) -> list:
    """run(fn, items) for work over `elements` array elements in all; small work (a compact
    model's parameters: 0.33 ms on two threads, 0.08 ms in the caller) stays in the caller."""
    if elements < PARALLEL_MIN_ELEMENTS:
        return [fn(item) for item in items]
    return run(fn, items)


def chunks(total: int, parts: int) -> list[tuple[int, int]]:
    """`total` split into `parts` (at most `total`) nearly equal consecutive ranges."""
    parts = max(1, min(total, parts))
    base, extra = divmod(total, parts)
    out, a = [], 0
    for k in range(parts):
        z = a + base + (1 if k < extra else 0)
        out.append((a, z))
        a = z
    return out


# ------------------------------------------------------------------------------------ BLAS

class _Blas:
    """get/set of the BLAS thread count through threadpoolctl (or OpenBLAS's own symbols)."""

    def __init__(self):
        self._get = self._set = None
        try:
            from threadpoolctl import ThreadpoolController
            ctl = ThreadpoolController().select(user_api="blas")
            libs = list(ctl.lib_controllers)
            if libs:
                self._get = lambda: libs[0].num_threads
                def _set(n, libs=libs):
                    for lib in libs:
                        lib.set_num_threads(n)
                self._set = _set
                return
        except Exception:  # noqa: BLE001 - threadpoolctl is optional
            pass
        self._find_openblas()

    def _find_openblas(self):
        import ctypes
        import numpy as np
        base = os.path.dirname(os.path.dirname(np.__file__))
        paths = glob.glob(os.path.join(base, "numpy.libs", "*openblas*")) + \
            glob.glob(os.path.join(os.path.dirname(np.__file__), ".dylibs", "*openblas*"))
        for path in paths:
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for pre, suf in (("scipy_", "64_"), ("scipy_", ""), ("", "64_"), ("", "")):
                try:
                    s = getattr(lib, f"{pre}openblas_set_num_threads{suf}")
                    g = getattr(lib, f"{pre}openblas_get_num_threads{suf}")
                except AttributeError:
                    continue
                s.argtypes, s.restype, g.restype = [ctypes.c_int], None, ctypes.c_int
                self._get, self._set = g, s
                return

    @property
    def available(self) -> bool:
        return self._set is not None

    def get(self) -> int:
        return int(self._get()) if self._get else 0

    def set(self, n: int) -> None:
        if self._set:
            self._set(int(n))


_blas: _Blas | None = None
_blas_depth = 0
_blas_prev = 0


def _blas_ctl() -> _Blas:
    global _blas
    if _blas is None:
        with _lock:
            if _blas is None:
                _blas = _Blas()
    return _blas


@contextmanager
def blas_single_threaded():
    """BLAS uses one thread inside (re-entrant and thread-safe; the previous setting comes
    back when the last user leaves)."""
    global _blas_depth, _blas_prev
    ctl = _blas_ctl()
    if not ctl.available or in_worker():
        yield
        return
    with _lock:
        _blas_depth += 1
        if _blas_depth == 1:
            _blas_prev = ctl.get()
            if _blas_prev != 1:
                ctl.set(1)
    try:
        yield
    finally:
        with _lock:
            _blas_depth -= 1
            if _blas_depth == 0 and _blas_prev != 1:
                ctl.set(_blas_prev)
