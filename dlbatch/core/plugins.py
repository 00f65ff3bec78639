"""The plugin manager: built-ins from the shipped plugins.toml, third-party plugins from the
entry-point group "dlbatch", and a user's plugins.toml ($DLBATCH_PLUGINS, else ./plugins.toml)
that can add plugin modules and disable plugins by name.

Everything concrete (backends, losses, model types, op kernels) is looked up here, by name.

A third-party entry point that fails (import error, invalid hook implementation, a hook that
raises) is skipped and recorded in `failed_plugins()`, with one warning, so one broken package
cannot make dlbatch unusable. Modules named in a plugins.toml (dlbatch's own or the user's)
are still a hard error: they were listed on purpose and there is nothing sensible to skip to.

A name (backend, loss, model type, or a backend's op kernel) belongs to the first plugin that
registers it; nothing is ever silently replaced. A third-party plugin registering a taken name
is skipped like a failed one, its reason naming both plugins; a conflict involving a
plugins.toml module or a runtime registration is a DLPluginError naming both. To replace a
built-in, disable it (`dlbatch plugins disable NAME`). That rule and the registry it fills live
in `dlbatch.core.plugin_registry`, where the plugins come from (the plugins.toml files, entry
points) in `dlbatch.core.plugin_sources`; this module loads the plugins and answers look-ups.

`manager` is the one instance dlbatch uses (`dlbatch.plugin_manager`). The examples here use a
private `PluginManager`, which loads the same plugins, so that they leave `manager` as it was.

Examples:
    >>> pm = PluginManager()
"""
from __future__ import annotations

import importlib
import threading
import warnings
from typing import Any

import pluggy

from . import hookspecs
from .errors import DLPluginError, did_you_mean
from .plugin_registry import FailedPlugin, PluginInfo, Registry, call_hooks, failure_reason
from .plugin_sources import (ENTRY_POINT_GROUP, builtin_config, builtin_config_path, distribution_of,
                             entry_point_distribution, entry_points, own_version, read_toml, user_config_path)

__all__ = ["manager", "PluginManager", "PluginInfo", "FailedPlugin", "Registry", "DLPluginWarning",
           "ENTRY_POINT_GROUP", "builtin_config", "builtin_config_path", "user_config_path", "entry_points"]

PROJECT = "dlbatch"


class DLPluginWarning(UserWarning):
    """Some third-party plugins failed to load and were skipped.

    Warned once per load for failures not reported before in this process; the message names
    each plugin, its distribution and the reason, and says how to disable it.

    Examples:
        >>> issubclass(DLPluginWarning, UserWarning)
        True
    """


class PluginManager:
    """Loads plugins once, on first use, and answers look-ups by name.

    Loading order: dlbatch's own plugins.toml modules, installed entry points, the user's
    plugins.toml modules; the `disable` lists of both files block plugins by name. Every
    look-up is thread-safe.

    Examples:
        >>> pm.backend("numpy").name, pm.default_backend() in pm.registry.backends
        ('numpy', True)
    """

    def __init__(self) -> None:
        self._pm: pluggy.PluginManager | None = None
        self._registry: Registry | None = None
        self._lock = threading.RLock()
        self._warned: set[tuple[str, str]] = set()

    # -- loading ---------------------------------------------------------------------------
    def _load(self) -> Registry:
        pm = pluggy.PluginManager(PROJECT)
        pm.add_hookspecs(hookspecs)
        reg = Registry()
        builtin = builtin_config()
        user_path = user_config_path()
        user = read_toml(user_path) if user_path else {}
        reg.default_backend = user.get("default_backend", builtin.get("default_backend", "numpy"))
        disabled = set(builtin.get("plugins", {}).get("disable", [])) | set(
            user.get("plugins", {}).get("disable", []))
        for name in disabled:
            pm.set_blocked(name)
            reg.disabled[name] = PluginInfo(name, "")

        def add_module(module_name: str, source: str) -> None:
            if pm.is_blocked(module_name):
                dist = ("dlbatch", own_version()) if source == "builtin" else ("", "")
                reg.disabled[module_name] = PluginInfo(module_name, source, *dist)
                return
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                raise DLPluginError(f"plugin module {module_name!r} (from {source}) cannot be "
                                    f"imported: {exc}. Install it or remove it from plugins.toml") from exc
            if pm.is_registered(module):
                return
            pm.register(module, name=module_name)
            dist, version = ("dlbatch", own_version()) if source == "builtin" else distribution_of(module_name)
            reg.plugins[module_name] = PluginInfo(module_name, source, dist, version)

        for module_name in builtin.get("plugins", {}).get("modules", []):
            add_module(module_name, "builtin")
        pm.check_pending()
        for ep in entry_points():
            dist, version = entry_point_distribution(ep)
            if pm.is_blocked(ep.name):
                reg.disabled[ep.name] = PluginInfo(ep.name, "entry point", dist, version)
                continue
            if pm.get_plugin(ep.name) is not None or ep.name in reg.failed:
                continue
            try:
                plugin = ep.load()
                pm.register(plugin, name=ep.name)
                pm.check_pending()
            except Exception as exc:  # a broken third-party plugin is skipped, not fatal
                if pm.has_plugin(ep.name):
                    pm.unregister(name=ep.name)
                reg.failed[ep.name] = FailedPlugin(ep.name, f"{ep.value}: {failure_reason(exc)}",
                                                   "entry point", dist, version)
                continue
            reg.plugins[ep.name] = PluginInfo(ep.name, "entry point", dist, version)
        for module_name in user.get("plugins", {}).get("modules", []):
            add_module(module_name, f"plugins.toml ({user_path})")
        pm.check_pending()
        soft = {n for n, p in reg.plugins.items() if p.source == "entry point"}
        for name, reason in call_hooks(pm, reg, soft, order=[n for n, _ in pm.list_name_plugin()]).items():
            info = reg.plugins.pop(name)
            pm.unregister(name=name)
            reg.failed[name] = FailedPlugin(name, reason, info.source, info.distribution, info.version)
        self._pm = pm
        self._warn_failures(reg.failed.values())
        return reg

    def _warn_failures(self, failed) -> None:
        """One warning per load for failures not reported before in this process."""
        new = [f for f in failed if (f.name, f.reason) not in self._warned]
        if not new:
            return
        self._warned.update((f.name, f.reason) for f in new)
        lines = "; ".join(f"{f.name} ({f.distribution or 'unknown distribution'}): {f.reason}" for f in new)
        warnings.warn(f"{len(new)} dlbatch plugin(s) failed to load and were skipped: {lines}. "
                      "Fix or uninstall the package, or run `dlbatch plugins disable NAME`",
                      DLPluginWarning, stacklevel=4)

    @property
    def registry(self) -> Registry:
        """Everything registered, loading the plugins on first use.

        Returns:
            The registry (the manager's own: do not change it).

        Raises:
            DLPluginError: a plugins.toml module that cannot be imported, an invalid
                plugins.toml, or a name conflict involving a built-in or plugins.toml module.

        Examples:
            >>> "multinomial_logistic" in pm.registry.losses
            True
        """
        with self._lock:
            if self._registry is None:
                self._registry = self._load()
            return self._registry

    def reload(self) -> Registry:
        """Forget everything loaded and read plugins again (tests, changed plugins.toml).

        Plugins registered at run time are forgotten too.

        Returns:
            The new registry.

        Raises:
            DLPluginError: as `registry`.

        Examples:
            >>> pm.reload() is pm.registry
            True
        """
        with self._lock:
            self._registry = None
            self._pm = None
            return self.registry

    def register_plugin(self, plugin: Any, name: str | None = None) -> None:
        """Register a plugin object at run time (an in-process plugin, e.g. in a notebook).

        Its hooks are called at once; what it registers is usable right away, until `reload`.

        Args:
            plugin: a module or object carrying `@hookimpl` functions.
            name: the plugin's name (default: the module's `__name__`, else its repr).

        Raises:
            DLPluginError: it registers a name another plugin holds (nothing changes then), or
                an object without a name.
            ValueError: a plugin of that name is already registered (pluggy).

        Examples:
            >>> from dlbatch.core.hookspecs import hookimpl
            >>> from dlbatch.losses.multinomial_logistic import MultinomialLogistic
            >>> class Renamed(MultinomialLogistic):
            ...     name = "logistic_again"
            >>> class RenamedPlugin:
            ...     @hookimpl
            ...     def dlbatch_register_losses(self, register):
            ...         register(Renamed())
            >>> pm.register_plugin(RenamedPlugin(), "renamed")
            >>> pm.loss("logistic_again").name, pm.registry.plugins["renamed"].registered
            ('logistic_again', ['loss logistic_again'])
        """
        with self._lock:
            reg = self.registry
            assert self._pm is not None
            name = name or getattr(plugin, "__name__", None) or repr(plugin)
            sub = Registry()
            tmp = pluggy.PluginManager(PROJECT)
            tmp.add_hookspecs(hookspecs)
            tmp.register(plugin, name=name)
            tmp.check_pending()
            sub.plugins[name] = PluginInfo(name, "runtime")
            sub.plugins.update({k: v for k, v in reg.plugins.items() if k != name})
            call_hooks(tmp, sub, taken=reg)  # a name another plugin holds: DLPluginError, nothing changed
            self._pm.register(plugin, name=name)
            reg.plugins[name] = sub.plugins[name]
            reg.owners.update(sub.owners)
            reg.backends.update(sub.backends)
            reg.losses.update(sub.losses)
            reg.model_types.update(sub.model_types)
            for backend_name, table in sub.ops.items():
                reg.ops.setdefault(backend_name, {}).update(table)

    # -- look-ups --------------------------------------------------------------------------
    def _lookup(self, table: dict, name: str, kind: str):
        try:
            return table[name]
        except KeyError:
            reg = self.registry
            loaded = ", ".join(sorted(reg.plugins)) or "(none)"
            extra = f" Disabled plugins: {', '.join(sorted(reg.disabled))}." if reg.disabled else ""
            if reg.failed:
                extra += f" Plugins that failed to load: {', '.join(sorted(reg.failed))}."
            raise DLPluginError(f"unknown {kind} {name!r}; {did_you_mean(name, table)}. "
                                f"Loaded plugins: {loaded}.{extra} Install or enable a plugin that "
                                f"registers it.") from None

    def backend(self, name: str):
        """The registered backend of that name.

        Args:
            name: the backend's name.

        Returns:
            The Backend.

        Raises:
            DLPluginError: no such backend; the message suggests close names and lists the
                loaded, disabled and failed plugins.

        Examples:
            >>> pm.backend("numpy").trains
            True
        """
        return self._lookup(self.registry.backends, name, "backend")

    def loss(self, name: str):
        """The registered loss of that name.

        Args:
            name: the loss's name.

        Returns:
            The Loss.

        Raises:
            DLPluginError: no such loss (as `backend`).

        Examples:
            >>> pm.loss("multinomal_logistic")      # doctest: +ELLIPSIS
            Traceback (most recent call last):
            dlbatch.core.errors.DLPluginError: unknown loss 'multinomal_logistic'; ...multinomial_logistic...
        """
        return self._lookup(self.registry.losses, name, "loss")

    def model_type(self, name: str):
        """The registered model type of that name.

        Args:
            name: the model type's name.

        Returns:
            The ModelType.

        Raises:
            DLPluginError: no such model type (as `backend`).

        Examples:
            >>> pm.model_type("classification").name
            'classification'
        """
        return self._lookup(self.registry.model_types, name, "model type")

    def kernels(self, backend_name: str) -> dict[str, Any]:
        """The op kernels registered for a backend (what `Backend.compile` gets).

        Args:
            backend_name: the backend's name.

        Returns:
            ONNX op type -> kernel; empty for a backend nobody registered kernels for.

        Examples:
            >>> "Conv" in pm.kernels("numpy"), pm.kernels("no_such_backend")
            (True, {})
        """
        return self.registry.ops.get(backend_name, {})

    def default_backend(self) -> str:
        """The backend a new model uses unless told otherwise.

        Returns:
            `default_backend` of the user's plugins.toml, else of dlbatch's own.

        Examples:
            >>> pm.default_backend() in pm.registry.backends
            True
        """
        return self.registry.default_backend

    def plugins(self) -> list[PluginInfo]:
        """Every loaded plugin with what it registered (`dlbatch plugins list`).

        Returns:
            The PluginInfos, built-ins first.

        Examples:
            >>> "dlbatch.losses.focal" in [p.name for p in pm.plugins()]
            True
        """
        return list(self.registry.plugins.values())

    def failed_plugins(self) -> list[FailedPlugin]:
        """Third-party plugins skipped because they failed to load, with the reason.

        Returns:
            The FailedPlugins (each unpacks as `(name, reason)`).

        Examples:
            >>> all(isinstance(f, FailedPlugin) for f in pm.failed_plugins())
            True
        """
        return list(self.registry.failed.values())

    def disabled_plugins(self) -> list[PluginInfo]:
        """Plugins named in a `disable` list.

        Returns:
            Their PluginInfos (source "" when nothing by that name is installed).

        Examples:
            >>> all(isinstance(d, PluginInfo) for d in pm.disabled_plugins())
            True
        """
        return list(self.registry.disabled.values())


manager = PluginManager()
