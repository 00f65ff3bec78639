"""Registers the onnxruntime backend (inference only) and its op markers through the same
hooks a third party uses.

Nothing here imports onnxruntime, so the plugin loads where it is not installed: the backend
is then still registered, and choosing it raises a DLBackendError that says
`pip install 'dlbatch[onnxruntime]'` (from `check_device`, before the model changes).
"""
from __future__ import annotations

from ...core.hookspecs import hookimpl


@hookimpl
def dlbatch_register_backends(register):
    from .backend import OnnxRuntimeBackend
    register(OnnxRuntimeBackend())


@hookimpl
def dlbatch_register_ops(register):
    from .ops import BACKEND, session_ops
    for op in session_ops():
        register(BACKEND, op.op_type, op)
