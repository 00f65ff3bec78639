"""The `Collective` of dlbatch.core.collective on a torch.distributed process group.

Arrays are reduced in one buffer per (kind, dtype, device), in the order given, so every rank
runs the same sequence of all-reduces and gets the same bits (gloo and NCCL return one result
to every rank). numpy arrays are concatenated once and handed to torch without a copy
(torch.from_numpy); with NCCL they travel through the current CUDA device.

A failed collective (a peer that died closes its connections; a peer that never arrives runs
into the group's timeout) becomes a DLError that says what to do.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist

from ..core.errors import DLError


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


class TorchCollective:
    """Sum reductions over `group` (None: the default group)."""

    def __init__(self, group: Any = None) -> None:
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        self.backend_name = str(dist.get_backend(group)).lower()

    def __repr__(self) -> str:
        return f"TorchCollective(rank={self.rank}, world_size={self.world_size}, backend={self.backend_name})"

    # -- failures ------------------------------------------------------------------------------
    def _failed(self, what: str, exc: BaseException) -> DLError:
        return DLError(f"rank {self.rank} of {self.world_size}: the {what} across ranks failed ({_short(exc)}). "
                       "Another rank stopped (crashed, was killed, ran out of memory) or did not reach the same "
                       "training step within the process group's timeout. The step was not applied; stop every "
                       "rank and restart them together (train_dl_model resumes from the last checkpoint)")

    def _all_reduce(self, tensor, what: str):
        try:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=self.group)
        except Exception as exc:  # gloo/NCCL raise RuntimeError subclasses (DistBackendError, ...)
            raise self._failed(what, exc) from exc
        return tensor

    # -- the Collective interface ------------------------------------------------------------
    def _transit_device(self):
        """Where a host buffer is reduced: NCCL reduces on the GPU only."""
        return torch.device("cuda", torch.cuda.current_device()) if self.backend_name == "nccl" else None

    def all_reduce_sum(self, arrays: Sequence[Any]) -> list:
        out: list = [None] * len(arrays)
        groups: dict[tuple, list[int]] = {}
        for i, a in enumerate(arrays):
            key = ("np", a.dtype.str, None) if isinstance(a, np.ndarray) else ("t", a.dtype, a.device)
            groups.setdefault(key, []).append(i)
        for key, idx in groups.items():  # dict order: first appearance, the same on every rank
            if key[0] == "np":
                flat = np.concatenate([np.ascontiguousarray(arrays[i]).reshape(-1) for i in idx])
                buf = torch.from_numpy(flat)
                transit = self._transit_device()
                if transit is not None:
                    flat = self._all_reduce(buf.to(transit), "sum of arrays").cpu().numpy()
                else:
                    self._all_reduce(buf, "sum of arrays")
                pieces = [(flat, arrays[i].shape) for i in idx]
            else:
                buf = torch.cat([arrays[i].reshape(-1) for i in idx])
                self._all_reduce(buf, "sum of arrays")
                pieces = [(buf, arrays[i].shape) for i in idx]
            offset = 0
            for i, (whole, shape) in zip(idx, pieces):
                n = int(np.prod(shape, dtype=np.int64))
                piece = whole[offset:offset + n]
                out[i] = piece.reshape(shape)
                offset += n
        return out

    def all_reduce_floats(self, values: Sequence[float]) -> list[float]:
        if not len(values):
            return []
        t = torch.tensor([float(v) for v in values], dtype=torch.float64)
        transit = self._transit_device()
        t = self._all_reduce(t if transit is None else t.to(transit),
                             "sum of numbers (sample checks, normalisers, loss values)")
        return [float(v) for v in t.cpu().tolist()]

    def barrier(self) -> None:
        try:
            dist.barrier(group=self.group)
        except Exception as exc:
            raise self._failed("barrier", exc) from exc


def default_collective() -> TorchCollective | None:
    """The collective of the default process group, or None when there is none or it has
    a single rank."""
    if not dist.is_available() or not dist.is_initialized():
        return None
    if dist.get_world_size() < 2:
        return None
    return TorchCollective(None)  # a few attribute reads: not worth a cache a new group would outlive
