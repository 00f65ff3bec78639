"""Imports onnxruntime on first use, with one clear error when it is missing: the plugin is
always registered, so `backend="onnxruntime"` names the fix instead of "unknown backend"."""
from __future__ import annotations

from ...core.errors import DLBackendError

INSTALL_HINT = "pip install 'dlbatch[onnxruntime]'"


def require_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise DLBackendError(f"the onnxruntime backend needs onnxruntime, which is not installed here "
                             f"({exc}); install it with: {INSTALL_HINT}, or use backend 'numpy'") from exc
    return onnxruntime
