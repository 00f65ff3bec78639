"""Data-parallel training on torch.distributed (torchrun; NCCL on GPUs, gloo on CPUs).

Once a process group with 2 or more ranks is initialised, `train_dl_model_batch` trains
data-parallel by itself: each rank passes its own shard of batch_size * batch_size_multiplier
samples and all ranks end every step with identical weights and solver state (see
dlbatch.core.train for the exact semantics). This package only implements the core
`Collective` on torch (torch_collective) and offers `init_process_group`, which sets a finite
timeout so that a rank that dies makes the others fail with a DLError instead of hanging.

Importing this package imports no torch; torch_collective does.
"""
from __future__ import annotations

import os
from datetime import timedelta

DEFAULT_TIMEOUT_S = 300.0


def timeout_seconds(timeout_s: float | None = None) -> float:
    """The collective timeout: the argument, else $DLBATCH_DISTRIBUTED_TIMEOUT_S, else 300 s."""
    if timeout_s is None:
        timeout_s = float(os.environ.get("DLBATCH_DISTRIBUTED_TIMEOUT_S", DEFAULT_TIMEOUT_S))
    if not timeout_s > 0:
        from ..core.errors import DLParamError
        raise DLParamError(f"the distributed timeout must be > 0 seconds, got {timeout_s!r}")
    return float(timeout_s)


def init_process_group(backend: str | None = None, *, timeout_s: float | None = None, **kwargs) -> None:
    """torch.distributed.init_process_group with a finite timeout (timeout_seconds) and the
    backend chosen for the machine (nccl with CUDA, gloo otherwise) unless given; rank,
    world size and rendezvous come from torchrun's environment unless passed in kwargs."""
    import torch
    import torch.distributed as dist

    if backend is None:
        backend = "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_seconds(timeout_s)), **kwargs)
