"""Shared checks for the torch backend's fast paths: the same results at 1, 2 and 3 torch
threads."""
from __future__ import annotations

import torch


def at_threads(n: int, fn):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn()
    finally:
        torch.set_num_threads(before)


def assert_same_bits_at_1_2_3_threads(fn):
    """fn() -> list of tensors; bit-identical at every thread count."""
    ref = at_threads(1, fn)
    for n in (2, 3):
        got = at_threads(n, fn)
        assert len(got) == len(ref)
        for a, b in zip(ref, got):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert torch.equal(a, b) or (a.isnan() == b.isnan()).all() and torch.equal(a.nan_to_num(), b.nan_to_num())
