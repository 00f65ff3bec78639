"""Hook specifications of dlbatch (pluggy project name "dlbatch").

Every hook receives a `register` callable and calls it once per thing it contributes.
Built-ins use exactly these hooks, so a third-party plugin can do anything a built-in does.
Hooks are called once, when the plugin manager is first used.
"""
from __future__ import annotations

from typing import Any, Callable

import pluggy

hookspec = pluggy.HookspecMarker("dlbatch")
hookimpl = pluggy.HookimplMarker("dlbatch")


@hookspec
def dlbatch_register_backends(register: Callable[[Any], None]) -> None:
    """Register compute backends.

    Args:
        register: call `register(backend)` with a `dlbatch.core.backend.Backend` instance
            whose `name` is unique (e.g. "numpy", "torch").

    Examples:
        >>> @hookimpl
        ... def dlbatch_register_backends(register):
        ...     register(MyBackend())          # doctest: +SKIP
    """


@hookspec
def dlbatch_register_losses(register: Callable[[Any], None]) -> None:
    """Register losses.

    Args:
        register: call `register(loss)` with a `dlbatch.core.loss.Loss` instance whose `name`
            is what the model parameter `losses` refers to (e.g. "multinomial_logistic").
    """


@hookspec
def dlbatch_register_model_types(register: Callable[[Any], None]) -> None:
    """Register model types.

    Args:
        register: call `register(model_type)` with a `dlbatch.core.model_type.ModelType`
            instance whose `name` is what `create_dl_model` takes (e.g. "classification").
    """


@hookspec
def dlbatch_register_ops(register: Callable[[str, str, Any], None]) -> None:
    """Register op kernels.

    The kernel's shape is defined by the backend (numpy: `NumpyKernel`; torch: `TorchKernel`).
    A (backend, op) belongs to the first plugin that registers it: a third-party plugin taking
    a held one is skipped with a warning, so to replace a built-in kernel disable its plugin.

    Args:
        register: call `register(backend_name, onnx_op_type, kernel)` once per kernel.
    """
