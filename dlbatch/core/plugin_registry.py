"""The registry of what plugins registered, and the rule that fills it: each hook
implementation gets a `register` bound to its plugin, registrations are staged, and a name
belongs to the first plugin that registers it (nothing is ever silently replaced).

The plugin manager (`dlbatch.core.plugins`) loads the plugins and calls `call_hooks`.

Examples:
    Two plugins that both register a loss named "twin"; the first keeps it:

    >>> import pluggy
    >>> from dlbatch.core import hookspecs
    >>> from dlbatch.core.hookspecs import hookimpl
    >>> class Twin:
    ...     name = "twin"
    >>> class First:
    ...     @hookimpl
    ...     def dlbatch_register_losses(self, register):
    ...         register(Twin())
    >>> class Second(First):
    ...     pass
    >>> pm = pluggy.PluginManager("dlbatch")
    >>> pm.add_hookspecs(hookspecs)
    >>> pm.register(First(), name="first")
    'first'
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pluggy

from .errors import DLPluginError

__all__ = ["PluginInfo", "FailedPlugin", "Registry", "call_hooks", "failure_reason"]


@dataclass
class PluginInfo:
    """What `dlbatch plugins list` shows for one plugin (`dlbatch.plugins()` returns these).

    Attributes:
        name: the plugin's name (a module name, an entry point's name, or the runtime name).
        source: "builtin", "entry point", "plugins.toml (PATH)", "runtime" or "registered";
            "" for a disabled name that nothing installed carries.
        distribution: the installed distribution that provides it, if known.
        version: that distribution's version.
        registered: what it registered: "backend numpy", "loss focal", "op numpy:Conv", ...

    Examples:
        >>> info = PluginInfo("my_plugin", "runtime")
        >>> info.registered
        []
    """

    name: str
    source: str
    distribution: str = ""
    version: str = ""
    registered: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FailedPlugin:
    """A third-party plugin that was skipped (`PluginManager.failed_plugins()`).

    Unpacks as `(name, reason)`.

    Attributes:
        name: the plugin's name.
        reason: why it was skipped (the exception, or the name conflict).
        source: where it came from ("entry point").
        distribution: the installed distribution that provides it, if known.
        version: that distribution's version.

    Examples:
        >>> name, reason = FailedPlugin("broken", "ImportError: no module named x")
        >>> name
        'broken'
    """

    name: str
    reason: str
    source: str = "entry point"
    distribution: str = ""
    version: str = ""

    def __iter__(self):
        return iter((self.name, self.reason))


@dataclass
class Registry:
    """Everything the plugins registered (`PluginManager.registry`), looked up by name.

    Attributes:
        backends: name -> Backend.
        losses: name -> Loss.
        model_types: name -> ModelType.
        ops: backend name -> ONNX op type -> kernel.
        plugins: name -> PluginInfo of every loaded plugin.
        failed: name -> FailedPlugin of every skipped third-party plugin.
        disabled: name -> PluginInfo of every disabled plugin.
        owners: registration label ("loss focal", "op numpy:Conv") -> the plugin that holds it.
        default_backend: the backend a new model uses unless told otherwise.

    Examples:
        >>> reg = Registry()
        >>> call_hooks(pm, reg)
        {}
        >>> list(reg.losses), reg.owners
        (['twin'], {'loss twin': 'first'})
    """

    backends: dict[str, Any] = field(default_factory=dict)
    losses: dict[str, Any] = field(default_factory=dict)
    model_types: dict[str, Any] = field(default_factory=dict)
    ops: dict[str, dict[str, Any]] = field(default_factory=dict)
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    failed: dict[str, FailedPlugin] = field(default_factory=dict)
    disabled: dict[str, PluginInfo] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)
    default_backend: str = "numpy"

    def holds(self, label: str) -> bool:
        """Whether a registration is in the tables.

        Args:
            label: "backend NAME", "loss NAME", "model type NAME" or "op BACKEND:OP_TYPE".

        Returns:
            True when the tables hold that name.

        Examples:
            >>> reg.holds("loss twin"), reg.holds("op numpy:Conv")
            (True, False)
        """
        if label.startswith("op "):
            backend, op_type = label[3:].split(":", 1)
            return op_type in self.ops.get(backend, {})
        for prefix, table in (("backend ", self.backends), ("loss ", self.losses), ("model type ", self.model_types)):
            if label.startswith(prefix):
                return label[len(prefix):] in table
        return False


def failure_reason(exc: BaseException) -> str:
    """An exception as the reason a plugin failed, for `dlbatch plugins list`.

    Args:
        exc: the exception.

    Returns:
        "ExceptionType: message".

    Examples:
        >>> failure_reason(ImportError("no module named x"))
        'ImportError: no module named x'
    """
    return f"{type(exc).__name__}: {exc}"


def call_hooks(pm: pluggy.PluginManager, reg: Registry, soft: set[str] = frozenset(),
               order: list[str] = (), taken: Registry | None = None) -> dict[str, str]:
    """Call each hook implementation with a `register` bound to its plugin, and fill `reg`.

    Binding `register` to the plugin lets `dlbatch plugins` say who registered what.
    Registrations are staged and applied only at the end, so a plugin in `soft` whose hook
    raises, or that registers a name another plugin (earlier in `order`, or already in
    `taken`) holds, contributes nothing; its name and reason are returned. Others raise.

    Args:
        pm: a pluggy manager of the project "dlbatch" with the plugins registered.
        reg: the registry to fill (its `plugins` gain each plugin's `registered` list).
        soft: names of plugins that are skipped on failure (third-party entry points).
        order: plugin names, first-come first: who keeps a name both register.
        taken: a registry whose names count as held (the loaded one, for a runtime
            registration); default `reg`.

    Returns:
        The skipped soft plugins: name -> reason.

    Raises:
        DLPluginError: a plugin outside `soft` registered a held name or a nameless object.
        Exception: whatever a hook outside `soft` raised.

    Examples:
        A second plugin taking "twin" is refused, or skipped when it is soft:

        >>> pm.register(Second(), name="second")
        'second'
        >>> call_hooks(pm, Registry(), order=["first", "second"])     # doctest: +ELLIPSIS
        Traceback (most recent call last):
        dlbatch.core.errors.DLPluginError: plugin conflict: loss 'twin' is registered by both 'second' and 'first'...
        >>> call_hooks(pm, Registry(), soft={"second"}, order=["first", "second"])   # doctest: +ELLIPSIS
        {'second': "conflict: loss 'twin' is registered by both 'second' and 'first'..."}
    """
    staged: list[tuple[str, str, Any]] = []  # (plugin name, label, apply function) in call order
    failures: dict[str, str] = {}

    def run(hook_name: str, make_register) -> None:
        # get_hookimpls() lists in call order reversed (last registered first)
        for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):
            name = impl.plugin_name
            if name in failures:
                continue
            info = reg.plugins.setdefault(name, PluginInfo(name, "registered"))
            mine: list = []
            try:
                impl.function(register=make_register(info, mine))
            except Exception as exc:
                if name not in soft:
                    raise
                failures[name] = f"{hook_name} raised {failure_reason(exc)}"
                continue
            staged.extend((name, label, apply) for label, apply in mine)

    def named(table: dict, kind: str):
        def make(info: PluginInfo, out: list):
            def register(obj) -> None:
                name = getattr(obj, "name", "")
                if not name:
                    raise DLPluginError(f"plugin {info.name} registered a {kind} without a name")

                def apply() -> None:
                    table[name] = obj
                    info.registered.append(f"{kind} {name}")
                out.append((f"{kind} {name}", apply))
            return register
        return make

    def ops(info: PluginInfo, out: list):
        def register(backend_name: str, op_type: str, kernel) -> None:
            def apply() -> None:
                reg.ops.setdefault(backend_name, {})[op_type] = kernel
                info.registered.append(f"op {backend_name}:{op_type}")
            out.append((f"op {backend_name}:{op_type}", apply))
        return register

    run("dlbatch_register_backends", named(reg.backends, "backend"))
    run("dlbatch_register_losses", named(reg.losses, "loss"))
    run("dlbatch_register_model_types", named(reg.model_types, "model type"))
    run("dlbatch_register_ops", ops)
    _apply_without_conflicts(staged, reg, soft, order, taken or reg, failures)
    return failures

def _apply_without_conflicts(staged, reg: Registry, soft, order, taken: Registry, failures: dict) -> None:
    """Apply each plugin's registrations, plugin by plugin in `order`, unless one of its
    names is held by another plugin: then a soft plugin is skipped, any other raises."""
    owners = {label: owner for label, owner in taken.owners.items() if taken.holds(label)}
    rank = {name: i for i, name in enumerate(order)}
    plugins = sorted(dict.fromkeys(name for name, _, _ in staged), key=lambda n: rank.get(n, len(rank)))
    for plugin in plugins:
        if plugin in failures:
            continue
        mine = [(label, apply) for name, label, apply in staged if name == plugin]
        clash = next(((label, owners[label]) for label, _ in mine if owners.get(label, plugin) != plugin), None)
        if clash is not None:
            label, owner = clash
            kind, name = label.rsplit(" ", 1)
            source = getattr(reg.plugins.get(owner) or taken.plugins.get(owner), "source", "")
            text = (f"{kind} {name!r} is registered by both {plugin!r} and {owner!r}"
                    f"{f' ({source})' if source else ''}; a plugin cannot replace another's {kind}: rename "
                    f"one, or disable {owner!r} (`dlbatch plugins disable {owner}`) to use {plugin!r}")
            if plugin in soft:
                failures[plugin] = f"conflict: {text}"
                continue
            raise DLPluginError(f"plugin conflict: {text}")
        for label, apply in mine:
            owners[label] = plugin
            reg.owners[label] = plugin
            apply()
