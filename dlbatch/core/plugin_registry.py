"""The registry of what plugins registered, and the rule that fills it: each hook
implementation gets a `register` bound to its plugin, registrations are staged, and a name
belongs to the first plugin that registers it (nothing is ever silently replaced).

The plugin manager (`dlbatch.core.plugins`) loads the plugins and calls `call_hooks`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pluggy

from .errors import DLPluginError


@dataclass
class PluginInfo:
    """What `dlbatch plugins` shows for one plugin."""

    name: str
    source: str  # "builtin", "entry point", "plugins.toml", "runtime"
    distribution: str = ""
    version: str = ""
    registered: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FailedPlugin:
    """A third-party plugin that was skipped; unpacks as `(name, reason)`."""

    name: str
    reason: str
    source: str = "entry point"
    distribution: str = ""
    version: str = ""

    def __iter__(self):
        return iter((self.name, self.reason))


@dataclass
class Registry:
    backends: dict[str, Any] = field(default_factory=dict)
    losses: dict[str, Any] = field(default_factory=dict)
    model_types: dict[str, Any] = field(default_factory=dict)
    ops: dict[str, dict[str, Any]] = field(default_factory=dict)  # backend -> op_type -> kernel
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    failed: dict[str, FailedPlugin] = field(default_factory=dict)
    disabled: dict[str, PluginInfo] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)  # "loss focal" / "op numpy:Conv" -> plugin
    default_backend: str = "numpy"

    def holds(self, label: str) -> bool:
        """Whether the registration `label` ("loss focal", "op numpy:Conv") is in the tables."""
        if label.startswith("op "):
            backend, op_type = label[3:].split(":", 1)
            return op_type in self.ops.get(backend, {})
        for prefix, table in (("backend ", self.backends), ("loss ", self.losses), ("model type ", self.model_types)):
            if label.startswith(prefix):
                return label[len(prefix):] in table
        return False


def failure_reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def call_hooks(pm: pluggy.PluginManager, reg: Registry, soft: set[str] = frozenset(),
               order: list[str] = (), taken: Registry | None = None) -> dict[str, str]:
    """Call each hook implementation with a `register` bound to its plugin, so that
    `dlbatch plugins` can say who registered what.

    Registrations are staged and applied only at the end, so a plugin in `soft` whose hook
    raises, or that registers a name another plugin (earlier in `order`, or already in
    `taken`) holds, contributes nothing; its name and reason are returned. Others raise."""
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
