"""Data-parallel communication as core sees it: a backend-free `Collective` interface and
the lookup of the one in effect.

Core never imports torch: `current_collective()` returns None unless torch is already
imported (no process group can exist otherwise) and a `torch.distributed` process group with
more than one rank is initialised; only then does it load `dlbatch.distributed`, which
implements the interface on that group. `use_collective` overrides the lookup (another
communication library, or a sub-group).

Batch-norm kernels learn whether to synchronise their statistics from
`OpContext.collective`, which is filled from `sync_batchnorm` while the train step runs a
forward with `batchnorm_sync` true (None otherwise: statistics per rank).
"""
from __future__ import annotations

import sys
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator, Protocol, Sequence, runtime_checkable


@runtime_checkable
class Collective(Protocol):
    """The reductions a data-parallel train step needs, over `world_size` ranks.

    Every rank must call the same methods in the same order with arrays of the same shapes
    and dtypes. Results are identical on every rank. A failure (a rank that died, a timeout)
    raises DLError saying so; it never waits forever."""

    rank: int
    world_size: int

    def all_reduce_sum(self, arrays: Sequence[Any]) -> list:
        """Element-wise sums over the ranks of a list of arrays (numpy or backend arrays);
        returns new arrays of the same types, shapes, dtypes and devices."""

    def all_reduce_floats(self, values: Sequence[float]) -> list[float]:
        """Sums over the ranks of Python numbers, in float64."""

    def barrier(self) -> None:
        """Wait until every rank reaches this call."""


_override: ContextVar = ContextVar("dlbatch_collective", default=None)
_batchnorm: ContextVar = ContextVar("dlbatch_batchnorm_collective", default=None)


def current_collective() -> Collective | None:
    """The collective the train step uses: the override of `use_collective`, else the
    initialised default torch.distributed group when it has 2 or more ranks, else None
    (single-process training, bit-identical to a build without this module)."""
    chosen = _override.get()
    if chosen is not None:
        return chosen if chosen.world_size > 1 else None
    if sys.modules.get("torch") is None:  # without torch imported there is no process group
        return None
    from ..distributed.torch_collective import default_collective  # imports only torch
    return default_collective()


@contextmanager
def use_collective(collective: Collective | None) -> Iterator[None]:
    """Within the block, train steps in this thread/context use `collective`."""
    token = _override.set(collective)
    try:
        yield
    finally:
        _override.reset(token)


@contextmanager
def sync_batchnorm(collective: Collective | None) -> Iterator[None]:
    """Within the block, batch-norm kernels compute their training statistics over every rank
    of `collective` (None: over their own batch)."""
    token = _batchnorm.set(collective)
    try:
        yield
    finally:
        _batchnorm.reset(token)


def batchnorm_collective() -> Collective | None:
    """The collective batch norm synchronises over now (None: per rank); OpContext's default."""
    return _batchnorm.get()
