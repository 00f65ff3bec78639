"""Where this process stands in a torch.distributed job: its rank, the world size, and the few
collectives the training procedure needs (a barrier, an object broadcast from rank 0).

Everything is a no-op (rank 0 of a world of 1) when torch is not installed or no process group
is initialised, and torch is never imported here for that answer: a group can only exist once
something imported torch.distributed, so a plain numpy run pays nothing.
"""
from __future__ import annotations

import os
import sys
from datetime import timedelta

from ..core.errors import DLParamError

#: how long a collective waits for the other ranks (rank 0 evaluating the validation set while
#: the others wait is the longest); DLBATCH_DIST_TIMEOUT_S overrides it
DEFAULT_TIMEOUT_S = 3600.0
#: the environment torchrun gives each worker
TORCHRUN_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def _group():
    """torch.distributed when a default process group is initialised, else None."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    return dist


def rank() -> int:
    dist = _group()
    return 0 if dist is None else int(dist.get_rank())


def world_size() -> int:
    dist = _group()
    return 1 if dist is None else int(dist.get_world_size())


def is_main() -> bool:
    """Rank 0: the one process that prints and writes a run's files."""
    return rank() == 0


def barrier() -> None:
    dist = _group()
    if dist is not None:
        dist.barrier()


def broadcast_object(value=None):
    """Rank 0's `value` on every rank (pickled; for small records and one-off weight copies)."""
    dist = _group()
    if dist is None:
        return value
    box = [value if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def launched_by_torchrun() -> bool:
    """Whether this process is a worker that torchrun (torch.distributed.run) started."""
    return all(k in os.environ for k in TORCHRUN_KEYS)


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def worker_device(device: str) -> str:
    """The device of this worker: plain `cuda` becomes cuda:LOCAL_RANK (one GPU per process on
    a machine); anything else stays as given."""
    return f"cuda:{local_rank()}" if device == "cuda" else device


def timeout_s() -> float:
    text = os.environ.get("DLBATCH_DIST_TIMEOUT_S")
    try:
        value = DEFAULT_TIMEOUT_S if text is None else float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise DLParamError(f"DLBATCH_DIST_TIMEOUT_S must be a number of seconds > 0, got {text!r}")
    return value


def require_torch_distributed():
    """torch.distributed, or a DLParamError saying what to install."""
    try:
        import torch.distributed as dist
    except ImportError:
        raise DLParamError("distributed training (--nproc, torchrun) runs on PyTorch's torch.distributed, and "
                           "torch is not installed; pip install 'dlbatch[torch]', or train without --nproc") from None
    if not dist.is_available():
        raise DLParamError("this torch build has no torch.distributed; install a torch build with distributed "
                           "support (the default pip wheels have it), or train without --nproc")
    return dist


def init_from_environment(device: str) -> str:
    """Join the job torchrun described in the environment (gloo for CPU devices, nccl for CUDA)
    unless a group is already initialised; returns this worker's device (see worker_device)."""
    device = worker_device(device)
    dist = require_torch_distributed()
    if dist.is_initialized():
        return device
    kwargs = {}
    cuda = device.startswith("cuda")
    if cuda:
        import torch
        if not torch.cuda.is_available():
            raise DLParamError(f"--device {device}: this torch sees no CUDA device; train with --device cpu")
        torch.cuda.set_device(torch.device(device))
        kwargs["device_id"] = torch.device(device)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s()), **kwargs)
    return device


def shutdown() -> None:
    """Leave the job's process group (after the last collective)."""
    dist = _group()
    if dist is not None:
        dist.destroy_process_group()
