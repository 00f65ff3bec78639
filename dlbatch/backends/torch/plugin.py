"""Registers the torch backend and its kernels through the same hooks a third party uses.

Nothing here imports torch: the backend object imports it on first use, and every kernel is a
lazy handle (`LazyTorchKernel`) whose torch module is imported when a program is compiled.
"""
from __future__ import annotations

from ...core.hookspecs import hookimpl


@hookimpl
def dlbatch_register_backends(register):
    from .backend import TorchBackend
    register(TorchBackend())


@hookimpl
def dlbatch_register_ops(register):
    from .ops import lazy_kernels
    for kernel in lazy_kernels():
        register("torch", kernel.op_type, kernel)
