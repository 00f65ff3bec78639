"""Thread parallelism for the numpy kernels.

numpy releases the GIL inside ufunc loops, reductions and BLAS calls, so Python threads that
each work on their own chunk of an array run on separate cores. The kernels split work into
chunks that depend only on array shapes (never on the thread count), and combine partial
results in chunk order, so results are bit-identical for any number of threads.

While a program runs, BLAS is limited to one thread (`blas_single_threaded`): the parallelism
comes from the chunks instead, and idle BLAS worker threads do not spin against them. OpenBLAS
rounds some products differently with another thread count, so this is also what makes results
independent of which Python thread runs a model and of what runs beside it: the setting is
process-wide, held at one thread while any run in any thread is active, restored after the last.
Without threadpoolctl or a recognised OpenBLAS, BLAS keeps its own threads.

Helper threads run their chunks in a copy of the caller's context (contextvars), so numpy's
error state (np.errstate) is the caller's wherever a chunk runs.

The thread count is `DLBATCH_NUM_THREADS` if set, else the number of CPUs this process may run
on (at most MAX_DEFAULT_THREADS). `set_num_threads(n)` changes it at run time.
"""
from __future__ import annotations

import contextvars
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


class _Region:
    """One parallel region: [fn(item) for item in items], items claimed one at a time by
    whichever thread asks next. The caller waits only for items that helpers have claimed, not
    for helpers to wake up: a helper that wakes after every item is taken has nothing to do, so
    small regions (and helpers kept off the CPU by other processes) no longer hold the caller up."""

    __slots__ = ("fn", "items", "n", "next", "pending", "results", "errors", "lock", "done", "waiting", "context")

    def __init__(self, fn: Callable, items: Sequence):
        self.fn, self.items, self.n = fn, items, len(items)
        self.next = 0  # the next unclaimed item
        self.pending = 0  # items claimed by helpers and not finished yet
        self.results: list = [None] * self.n
        self.errors: list[BaseException] = []
        self.lock = threading.Lock()
        self.done = threading.Lock()  # released by the helper finishing the last claimed item
        self.done.acquire()
        self.waiting = False
        self.context = contextvars.copy_context()  # the caller's np.errstate, for the helpers too

    def work(self, helper: bool) -> None:
        while True:
            with self.lock:
                if self.errors or self.next >= self.n:
                    return
                i = self.next
                self.next = i + 1
                self.pending += helper
            try:
                self.results[i] = self.fn(self.items[i])
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller
                with self.lock:
                    self.errors.append(e)
            finally:
                if helper:
                    with self.lock:
                        self.pending -= 1
                        if self.waiting and self.pending == 0:
                            self.done.release()

    def wait_for_helpers(self) -> None:
        """After the caller's own work loop (every item claimed): wait for the helpers' items."""
        with self.lock:
            self.waiting = self.pending > 0
        if self.waiting:
            self.done.acquire()


class _Helpers:
    """Persistent helper threads, each woken through its own lock (a binary semaphore) to join
    the current region: about 40 us per region against about 95 us for a ThreadPoolExecutor's
    submit/result round trip, which a train step pays a few dozen times."""

    def __init__(self, count: int):
        self.count = count
        self.busy = threading.Lock()  # one parallel region at a time
        self.region: _Region | None = None
        self.retired = False
        self._go = [threading.Lock() for _ in range(count)]
        for lk in self._go:
            lk.acquire()
        for i in range(count):
            threading.Thread(target=self._loop, args=(i,), name=f"dlbatch-numpy-{i}", daemon=True).start()

    def _loop(self, i: int) -> None:
        _local.busy = True  # nested run() calls inside a helper stay sequential
        _blas_ctl().pin_this_thread()
        while True:
            self._go[i].acquire()
            if self.retired:
                return
            region = self.region  # a late wake-up finds the region over (nothing left) or the next one
            if region is not None:
                region.context.copy().run(region.work, True)
            del region  # no reference: the region's arrays must not outlive it

    def _wake(self) -> None:
        for lk in self._go:
            try:
                lk.release()
            except RuntimeError:  # that helper's previous wake-up is still pending
                pass

    def run_region(self, region: _Region) -> None:
        """region's items on the helpers and the caller; returns when all are done."""
        self.region = region
        self._wake()
        try:
            region.work(False)
        finally:
            region.wait_for_helpers()
            self.region = None  # the closure holds the region's arrays: let the buffer pool reuse them

    def retire(self) -> None:
        """Let the helper threads end once the running region (if any) is over; `busy` is kept,
        so a caller still holding this object runs sequentially."""
        self.busy.acquire()
        self.retired = True
        self._wake()


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
    if in_worker():
        return [fn(item) for item in items]
    with blas_single_threaded():  # on every path: a chunk's BLAS calls round the same anywhere
        return _run(fn, items)


def _run(fn: Callable, items: Sequence) -> list:
    n = len(items)
    if min(_num_threads, n) <= 1:
        return [fn(item) for item in items]
    helpers = _helpers_for(_num_threads - 1)
    if not helpers.busy.acquire(blocking=False):
        return [fn(item) for item in items]
    region = _Region(fn, items)
    try:
        _local.busy = True  # the caller works too: its nested run() calls stay sequential
        try:
            helpers.run_region(region)
        finally:
            _local.busy = False
    finally:
        helpers.busy.release()
    if region.errors:
        raise region.errors[0]
    return region.results


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

def _openblas_functions(path: str):
    """(get, set) of the thread count of the OpenBLAS library at `path`, or None."""
    import ctypes
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    for pre, suf in (("scipy_", "64_"), ("scipy_", ""), ("", "64_"), ("", "")):
        try:
            s = getattr(lib, f"{pre}openblas_set_num_threads{suf}")
            g = getattr(lib, f"{pre}openblas_get_num_threads{suf}")
        except AttributeError:
            continue
        s.argtypes, s.restype, g.restype = [ctypes.c_int], None, ctypes.c_int
        return g, s
    return None


class _Blas:
    """get/set of the BLAS thread counts. `shared` settings are process-wide (OpenBLAS with its
    own threads, MKL, BLIS); `per_thread` ones belong to the calling thread (OpenMP-threaded
    OpenBLAS, set through omp_set_num_threads).

    OpenBLAS's own threads are set through its C functions, not threadpoolctl's set_num_threads:
    since threadpoolctl 3.8 that ignores, for OpenBLAS, every Python thread but the first one
    that set a limit (while it lives). A program run in any other thread then kept BLAS at its
    full thread count, and OpenBLAS rounds some products differently with another thread count:
    apply_dl_model from a second thread was 1-3 float32 ulps off the main thread's results."""

    def __init__(self):
        self.shared: list[tuple[Callable, Callable]] = []
        self.per_thread: list[tuple[Callable, Callable]] = []
        try:
            from threadpoolctl import ThreadpoolController
            libs = list(ThreadpoolController().select(user_api="blas").lib_controllers)
        except Exception:  # noqa: BLE001 - threadpoolctl is optional
            libs = []
        for lib in libs:
            via_ctl = (lambda lib=lib: lib.num_threads, lambda n, lib=lib: lib.set_num_threads(n))
            openblas = lib.internal_api == "openblas"
            if openblas and getattr(lib, "threading_layer", None) == "openmp":
                self.per_thread.append(via_ctl)
            else:
                self.shared.append((openblas and _openblas_functions(lib.filepath)) or via_ctl)
        if not libs:
            self._find_openblas()

    def _find_openblas(self):
        import numpy as np
        base = os.path.dirname(os.path.dirname(np.__file__))
        paths = glob.glob(os.path.join(base, "numpy.libs", "*openblas*")) + \
            glob.glob(os.path.join(os.path.dirname(np.__file__), ".dylibs", "*openblas*"))
        for path in paths:
            fns = _openblas_functions(path)
            if fns:
                self.shared.append(fns)
                return

    @property
    def available(self) -> bool:
        return bool(self.shared or self.per_thread)

    def get(self) -> int:
        """The thread count the calling thread's BLAS calls use (the first library's)."""
        for g, _ in self.shared + self.per_thread:
            return int(g())
        return 0

    def set(self, n: int) -> None:
        self.set_shared([n] * len(self.shared))
        self.set_per_thread([n] * len(self.per_thread))

    def get_shared(self) -> list[int]:
        return [int(g()) for g, _ in self.shared]

    def set_shared(self, counts: Sequence[int]) -> None:
        for (g, s), n in zip(self.shared, counts):
            if int(g()) != n:
                s(int(n))

    def get_per_thread(self) -> list[int]:
        return [int(g()) for g, _ in self.per_thread]

    def set_per_thread(self, counts: Sequence[int]) -> None:
        for (g, s), n in zip(self.per_thread, counts):
            if int(g()) != n:
                s(int(n))

    def pin_this_thread(self) -> None:
        """One BLAS thread for the calling thread from now on (the helpers: they only run chunks)."""
        self.set_per_thread([1] * len(self.per_thread))


_blas: _Blas | None = None
_blas_users = 0  # threads inside blas_single_threaded (their outermost entry)
_blas_saved: list[int] = []  # the shared settings from before the first of them entered


def _blas_ctl() -> _Blas:
    global _blas
    if _blas is None:
        with _lock:
            if _blas is None:
                _blas = _Blas()
    return _blas


def _blas_after_fork_in_child() -> None:
    """Only the forking thread is left: the others' runs will never end and restore BLAS."""
    global _blas_users
    inside = 1 if getattr(_local, "blas_depth", 0) else 0
    if _blas is not None and _blas_users > inside and not inside:
        _blas.set_shared(_blas_saved)
    _blas_users = inside


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_blas_after_fork_in_child)


@contextmanager
def blas_single_threaded():
    """BLAS uses one thread inside. Re-entrant and thread-safe: a process-wide setting is
    switched when the first thread enters and restored when the last one leaves, so it never
    changes while a program runs in any thread (every run computes with the same BLAS thread
    count, alone or beside others); a per-thread setting is switched for the calling thread."""
    global _blas_users, _blas_saved
    ctl = _blas_ctl()
    if not ctl.available or in_worker() or getattr(_local, "blas_depth", 0):
        yield  # nothing to switch, a helper (its caller holds the setting), or nested
        return
    with _lock:
        _blas_users += 1
        if _blas_users == 1:
            _blas_saved = ctl.get_shared()
            ctl.set_shared([1] * len(_blas_saved))
    mine = ctl.get_per_thread()
    ctl.set_per_thread([1] * len(mine))
    _local.blas_depth = 1
    try:
        yield
    finally:
        _local.blas_depth = 0
        ctl.set_per_thread(mine)
        with _lock:
            _blas_users -= 1
            if _blas_users == 0:
                ctl.set_shared(_blas_saved)
