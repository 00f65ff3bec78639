"""Backends that run inference only (`Backend.trains` False, e.g. onnxruntime): the train step
refuses them before it reads or writes anything, naming the backends that train."""
from __future__ import annotations

from typing import Any, Mapping

from .errors import DLBackendError


def training_backend_names(backends: Mapping[str, Any]) -> list[str]:
    """The names of the registered backends that train, for error messages.

    Args:
        backends: name -> backend (the plugin manager's table).

    Returns:
        The sorted names of those whose `trains` is true.

    Examples:
        >>> from dlbatch.core.plugins import manager
        >>> training_backend_names({"numpy": manager.backend("numpy")})
        ['numpy']
    """
    return sorted(name for name, b in backends.items() if getattr(b, "trains", True))


def refuse_inference_only(model) -> None:
    """An inference-only backend (Backend.trains False) cannot run the step: say so before
    anything is read or written, with the backends that train and how to switch."""
    if getattr(model.backend, "trains", True):
        return
    from .plugins import manager  # the plugin manager imports the backends' interfaces
    trainers = training_backend_names(manager.registry.backends)
    names = ", ".join(trainers) or "(none registered)"
    first = trainers[0] if trainers else "numpy"
    raise DLBackendError(f"the {model.backend_name} backend runs inference only (apply_dl_model, "
                         f"evaluate_dl_model); train_dl_model_batch needs a backend that trains: {names}. "
                         f"Switch with set_dl_model_param(model, 'backend', {first!r}), train, then switch "
                         f"back; weights and solver state move with the model. Nothing was changed")
