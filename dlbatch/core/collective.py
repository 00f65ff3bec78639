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

Examples:
    A stand-in for two ranks that hold the same numbers (a real one, such as
    `dlbatch.distributed`'s, talks to the other processes):

    >>> import numpy as np
    >>> class Doubling:
    ...     rank, world_size = 0, 2
    ...     def all_reduce_sum(self, arrays):
    ...         return [2 * a for a in arrays]
    ...     def all_reduce_floats(self, values):
    ...         return [2.0 * float(v) for v in values]
    ...     def barrier(self):
    ...         pass
    >>> isinstance(Doubling(), Collective)
    True
"""
from __future__ import annotations

import sys
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator, Protocol, Sequence, runtime_checkable

__all__ = ["Collective", "current_collective", "use_collective", "sync_batchnorm", "batchnorm_collective"]


@runtime_checkable
class Collective(Protocol):
    """The reductions a data-parallel train step needs, over `world_size` ranks.

    Every rank must call the same methods in the same order with arrays of the same shapes
    and dtypes. Results are identical on every rank. A failure (a rank that died, a timeout)
    raises DLError saying so; it never waits forever. Any object with these members is one
    (a structural Protocol: no subclassing needed).

    Attributes:
        rank: this process's index, 0 .. world_size - 1.
        world_size: the number of ranks.

    Examples:
        >>> coll = Doubling()
        >>> coll.all_reduce_floats([1.5]), coll.all_reduce_sum([np.ones(2)])[0].tolist()
        ([3.0], [2.0, 2.0])
    """

    rank: int
    world_size: int

    def all_reduce_sum(self, arrays: Sequence[Any]) -> list:
        """Element-wise sums over the ranks of a list of arrays.

        The train step sums gradients and batch-norm moments with it.

        Args:
            arrays: numpy or backend arrays (not changed).

        Returns:
            New arrays of the same types, shapes, dtypes and devices.

        Raises:
            DLError: a rank died or did not answer in time.
        """

    def all_reduce_floats(self, values: Sequence[float]) -> list[float]:
        """Sums over the ranks of Python numbers, in float64.

        The train step sums the loss terms' normalisers with it before dividing.

        Args:
            values: numbers.

        Returns:
            Their sums over the ranks, as floats.

        Raises:
            DLError: a rank died or did not answer in time.
        """

    def barrier(self) -> None:
        """Wait until every rank reaches this call.

        Raises:
            DLError: a rank died or did not answer in time.

        Examples:
            >>> coll.barrier()          # the stand-in has no other rank to wait for
        """


_override: ContextVar = ContextVar("dlbatch_collective", default=None)
_batchnorm: ContextVar = ContextVar("dlbatch_batchnorm_collective", default=None)


def current_collective() -> Collective | None:
    """The collective the train step uses, looked up at the start of every step.

    Returns:
        The override of `use_collective`, else the initialised default torch.distributed
        group when it has 2 or more ranks, else None (single-process training, bit-identical
        to a build without this module). A collective of one rank counts as None.

    Examples:
        >>> current_collective() is None           # no process group in this process
        True
    """
    chosen = _override.get()
    if chosen is not None:
        return chosen if chosen.world_size > 1 else None
    if sys.modules.get("torch") is None:  # without torch imported there is no process group
        return None
    from ..distributed.torch_collective import default_collective  # imports only torch
    return default_collective()


@contextmanager
def use_collective(collective: Collective | None) -> Iterator[None]:
    """Within the block, train steps in this thread/context use `collective`.

    For another communication library than torch.distributed, or a sub-group of ranks.

    Args:
        collective: the collective to use; None falls back to the default lookup.

    Yields:
        Nothing; the previous choice returns when the block ends.

    Examples:
        >>> with use_collective(Doubling()):
        ...     current_collective().world_size
        2
    """
    token = _override.set(collective)
    try:
        yield
    finally:
        _override.reset(token)


@contextmanager
def sync_batchnorm(collective: Collective | None) -> Iterator[None]:
    """Within the block, batch-norm kernels compute their training statistics over every rank
    of `collective` (None: over their own batch).

    The train step enters it around each training forward when `batchnorm_sync` is true; a
    backend's program then fills `OpContext.collective` from `batchnorm_collective()`.

    Args:
        collective: the collective to synchronise over, or None.

    Yields:
        Nothing; the previous choice returns when the block ends.

    Examples:
        >>> with sync_batchnorm(Doubling()):
        ...     batchnorm_collective().world_size
        2
    """
    token = _batchnorm.set(collective)
    try:
        yield
    finally:
        _batchnorm.reset(token)


def batchnorm_collective() -> Collective | None:
    """The collective batch norm synchronises over now; `OpContext.collective`'s default.

    Returns:
        The collective of the enclosing `sync_batchnorm`, or None (statistics per rank).

    Examples:
        >>> batchnorm_collective() is None
        True
    """
    return _batchnorm.get()
