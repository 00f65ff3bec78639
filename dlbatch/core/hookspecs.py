"""Hook specifications of dlbatch (pluggy project name "dlbatch").

Every hook receives a `register` callable and calls it once per thing it contributes.
Built-ins use exactly these hooks, so a third-party plugin can do anything a built-in does.
Hooks are called once, when the plugin manager is first used (or when a plugin is registered
at run time with `dlbatch.plugin_manager.register_plugin`).

A plugin is a module or object whose functions carry the `hookimpl` marker and are named like
the specifications below; it implements only the hooks it needs. The examples here register
their plugins with a private `PluginManager` (what `dlbatch.plugin_manager` is an instance of),
so that they leave dlbatch's own manager as it was.

Examples:
    >>> from dlbatch.core.plugins import PluginManager
    >>> from dlbatch.core.hookspecs import hookimpl
    >>> from dlbatch.core.loss import Loss
    >>> class Absolute(Loss):
    ...     name = "absolute_docs"
    ...     def value_and_grad(self, xp, prediction, target, weights, options=None):
    ...         d = prediction - xp.astype(target, prediction.dtype)
    ...         return xp.sum(xp.abs(d)), xp.sign(d)
    >>> class AbsolutePlugin:
    ...     @hookimpl
    ...     def dlbatch_register_losses(self, register):
    ...         register(Absolute())
    >>> pm = PluginManager()            # in a notebook: dlbatch.plugin_manager
    >>> pm.register_plugin(AbsolutePlugin(), "absolute-docs")
    >>> pm.loss("absolute_docs").name
    'absolute_docs'
"""
from __future__ import annotations

from typing import Any, Callable

import pluggy

__all__ = ["hookimpl", "dlbatch_register_backends", "dlbatch_register_losses",
           "dlbatch_register_model_types", "dlbatch_register_ops"]

hookspec = pluggy.HookspecMarker("dlbatch")
"""Marks the specifications below (dlbatch's own use; plugins use `hookimpl`)."""

hookimpl = pluggy.HookimplMarker("dlbatch")
"""Marks a plugin's hook implementations: decorate each `dlbatch_register_*` function with
`@hookimpl`, whose name and `register` argument must match the specification."""


@hookspec
def dlbatch_register_backends(register: Callable[[Any], None]) -> None:
    """Register compute backends.

    Called once per plugin when the plugin manager loads, before the model types and op
    kernels are registered. A backend's name belongs to the first plugin that registers it.

    Args:
        register: call `register(backend)` with a `dlbatch.core.backend.Backend` instance
            whose `name` is unique (e.g. "numpy", "torch").

    Raises:
        DLPluginError: (raised by `register`) a backend without a name, or a name another
            plugin holds, when the plugin is a plugins.toml module or registered at run time
            (a third-party entry point is skipped with a warning instead).

    Examples:
        A backend that is the numpy backend under another name (the example plugin's
        `numpy64` goes further and computes in float64):

        >>> from dlbatch.backends.numpy_cpu.backend import NumpyBackend
        >>> class Numpy2(NumpyBackend):
        ...     name = "numpy2_docs"
        >>> class Numpy2Plugin:
        ...     @hookimpl
        ...     def dlbatch_register_backends(self, register):
        ...         register(Numpy2())
        >>> pm.register_plugin(Numpy2Plugin(), "numpy2-docs")
        >>> pm.backend("numpy2_docs").trains
        True
    """


@hookspec
def dlbatch_register_losses(register: Callable[[Any], None]) -> None:
    """Register losses.

    Called once per plugin when the plugin manager loads. A loss's name belongs to the first
    plugin that registers it.

    Args:
        register: call `register(loss)` with a `dlbatch.core.loss.Loss` instance whose `name`
            is what the model parameter `losses` refers to (e.g. "multinomial_logistic").

    Raises:
        DLPluginError: (raised by `register`) a loss without a name, or a name another plugin
            holds (see `dlbatch_register_backends`).

    Examples:
        The module docstring above registers the loss `absolute_docs` with the private
        manager `pm`, beside the built-in losses (dlbatch's own manager does not have it):

        >>> import dlbatch
        >>> "absolute_docs" in pm.registry.losses, "multinomial_logistic" in pm.registry.losses
        (True, True)
        >>> "absolute_docs" in dlbatch.plugin_manager.registry.losses
        False
    """


@hookspec
def dlbatch_register_model_types(register: Callable[[Any], None]) -> None:
    """Register model types.

    Called once per plugin when the plugin manager loads. A model type's name belongs to the
    first plugin that registers it.

    Args:
        register: call `register(model_type)` with a `dlbatch.core.model_type.ModelType`
            instance whose `name` is what `create_dl_model` takes (e.g. "classification").

    Raises:
        DLPluginError: (raised by `register`) a model type without a name, or a name another
            plugin holds (see `dlbatch_register_backends`).

    Examples:
        The built-in model types are registered through this hook, like any other:

        >>> {"classification", "detection", "segmentation"} <= set(pm.registry.model_types)
        True
    """


@hookspec
def dlbatch_register_ops(register: Callable[[str, str, Any], None]) -> None:
    """Register op kernels.

    Called once per plugin when the plugin manager loads, after the backends. The kernel's
    shape is defined by the backend (numpy: `NumpyKernel`; torch: `TorchKernel`); a backend
    has no kernels of its own, so a plugin that adds a backend registers its kernels here too.
    A (backend, op) belongs to the first plugin that registers it: a third-party plugin taking
    a held one is skipped with a warning, so to replace a built-in kernel disable its plugin.

    Args:
        register: call `register(backend_name, onnx_op_type, kernel)` once per kernel.

    Raises:
        DLPluginError: (raised by `register`) an op another plugin already registered for that
            backend (see `dlbatch_register_backends`).

    Examples:
        Give the backend `numpy2_docs` (registered above) every numpy kernel, as the example
        plugin does for `numpy64`:

        >>> from dlbatch.backends.numpy_cpu.ops import KERNELS
        >>> class Numpy2Kernels:
        ...     @hookimpl
        ...     def dlbatch_register_ops(self, register):
        ...         for kernel in KERNELS:
        ...             register("numpy2_docs", kernel.op_type, kernel)
        >>> pm.register_plugin(Numpy2Kernels(), "numpy2-kernels-docs")
        >>> "Conv" in pm.kernels("numpy2_docs")
        True
    """
