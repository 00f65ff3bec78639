"""Registers the numpy backend and its kernels through the same hooks a third party uses."""
from __future__ import annotations

from ...core.hookspecs import hookimpl


@hookimpl
def dlbatch_register_backends(register):
    from .backend import NumpyBackend
    register(NumpyBackend())


@hookimpl
def dlbatch_register_ops(register):
    from .ops import KERNELS
    for kernel in KERNELS:
        register("numpy", kernel.op_type, kernel)
