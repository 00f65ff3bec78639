"""Imports torch (and the array-API namespace) on first use, with one clear error when missing."""
from __future__ import annotations

from ...core.errors import DLBackendError

INSTALL_HINT = "pip install 'dlbatch[torch]'"


def require_torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DLBackendError(f"the torch backend needs PyTorch, which is not installed here ({exc}); "
                             f"install it with: {INSTALL_HINT}") from exc
    return torch


def require_xp():
    require_torch()
    try:
        import array_api_compat.torch as xp
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DLBackendError(f"the torch backend needs array-api-compat, which is not installed here "
                             f"({exc}); install it with: {INSTALL_HINT}") from exc
    return xp
