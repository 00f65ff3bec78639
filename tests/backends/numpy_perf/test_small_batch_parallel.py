"""The kernel threads' regions (dlbatch/backends/numpy_cpu/parallel.py): the caller waits only
for items a helper has claimed, so many small regions in a row must still run every item exactly
once, in item order of the results, wait for a slow helper item, and re-raise its error."""
from __future__ import annotations

import threading
import time

import pytest

from dlbatch.backends.numpy_cpu import parallel

from ._ref import at_threads


@pytest.mark.parametrize("threads", [2, 3])
def test_many_small_regions_run_each_item_once(threads):
    def regions():
        for r in range(400):
            seen = []
            lock = threading.Lock()

            def fn(i, seen=seen, lock=lock):
                with lock:
                    seen.append(i)
                return (r, i)

            n = 1 + r % 4
            assert parallel.run(fn, range(n)) == [(r, i) for i in range(n)]
            time.sleep(0)  # let late helpers wake into the next region
            assert sorted(seen) == list(range(n))  # no item twice, none lost

    at_threads(threads, regions)


def test_caller_waits_for_an_item_a_helper_claimed():
    main = threading.get_ident()
    finished, by_helper = [], []

    def fn(i):
        if threading.get_ident() != main:
            by_helper.append(i)
            time.sleep(0.05)  # the caller has long run out of items by now
        else:
            time.sleep(0.005)  # time for a helper to wake and claim an item
        finished.append(i)
        return i

    def region():
        for _ in range(5):
            finished.clear()
            assert parallel.run(fn, range(6)) == list(range(6))
            assert sorted(finished) == list(range(6))  # nothing still running after the return

    at_threads(2, region)
    assert by_helper  # the helper did take items (else nothing here was waited for)


def test_helper_error_is_reraised_and_later_regions_work():
    main = threading.get_ident()

    def fn(i):
        if threading.get_ident() != main:
            raise ValueError(f"item {i}")
        time.sleep(0.01)  # leave the other items to the helper
        return i

    def region():
        with pytest.raises(ValueError, match="item"):
            for _ in range(200):  # until a helper takes an item
                parallel.run(fn, range(4))
        assert parallel.run(lambda i: i + 1, range(5)) == [1, 2, 3, 4, 5]

    at_threads(2, region)
