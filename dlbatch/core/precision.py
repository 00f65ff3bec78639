"""Model precisions: the type a model's arrays are stored in, and which backends can compute
the forward under an autocast precision (bfloat16 with float32 master weights)."""
from __future__ import annotations

import numpy as np

from .backend import Backend
from .errors import DLParamError
from .plugins import manager


# Autocast precisions: the forward computes in the key's type, every array the model keeps
# (weights, batch-norm statistics, solver state) and every input and output is of the value's
# type (master weights), so updates too small for bfloat16 are not lost.
AUTOCAST_PRECISIONS = {"bfloat16": "float32"}


def storage_precision(precision: str) -> str:
    """The numpy type of a model's arrays for a model precision (float32 for bfloat16)."""
    return AUTOCAST_PRECISIONS.get(precision, precision)


def cast_to_storage(array: np.ndarray, precision: str) -> np.ndarray:
    """Floating arrays take the model's storage precision; integer constants keep their type."""
    return array.astype(storage_precision(precision), copy=False) if array.dtype.kind == "f" else array


def check_precision(backend: Backend, backend_name: str, precision: str) -> None:
    """An autocast precision needs a backend that declares it (`autocast_precisions`)."""
    if precision in AUTOCAST_PRECISIONS and precision not in getattr(backend, "autocast_precisions", ()):
        able = sorted(n for n, b in manager.registry.backends.items()
                      if precision in getattr(b, "autocast_precisions", ()))
        raise DLParamError(f"precision {precision!r} needs a backend that computes the forward under "
                           f"{precision} autocast ({', '.join(able) or 'none registered'}); the "
                           f"{backend_name} backend has none. Use backend "
                           f"{(able or ['torch'])[0]!r}, or precision 'float32'. Nothing was changed")
