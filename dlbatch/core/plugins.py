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
built-in, disable it (`dlbatch plugins disable NAME`).
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources
import os
import threading
import tomllib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from . import hookspecs
from .errors import DLPluginError, did_you_mean

PROJECT = "dlbatch"
ENTRY_POINT_GROUP = "dlbatch"


class DLPluginWarning(UserWarning):
    """Some third-party plugins failed to load and were skipped."""


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


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise DLPluginError(f"{path} is not valid TOML ({exc}); fix or remove it") from exc


def builtin_config_path() -> Path:
    """The source-tree plugins.toml (a wheel ships it inside the package instead)."""
    return Path(__file__).resolve().parents[2] / "plugins.toml"


def builtin_config() -> dict:
    """The plugins.toml shipped with dlbatch (inside the wheel, or at the source-tree root)."""
    shipped = importlib.resources.files("dlbatch") / "plugins.toml"
    if shipped.is_file():
        return tomllib.loads(shipped.read_text())
    return _read_toml(builtin_config_path())


def user_config_path() -> Path | None:
    env = os.environ.get("DLBATCH_PLUGINS")
    if env:
        path = Path(env)
        if not path.is_file():
            raise DLPluginError(f"DLBATCH_PLUGINS points to {path}, which is not a file; "
                                "point it at a plugins.toml or unset it")
        return path
    local = Path.cwd() / "plugins.toml"
    if local.is_file() and local.resolve() != builtin_config_path():
        return local
    return None


def entry_points() -> list[importlib.metadata.EntryPoint]:
    """Every installed entry point of the group "dlbatch" (not loaded)."""
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def _distribution_of(module_name: str) -> tuple[str, str]:
    top = module_name.split(".")[0]
    for dist_name in importlib.metadata.packages_distributions().get(top, []):
        try:
            return dist_name, importlib.metadata.version(dist_name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return "", ""


def _ep_dist(ep) -> tuple[str, str]:
    return (ep.dist.name, ep.dist.version) if ep.dist else ("", "")


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class PluginManager:
    """Loads plugins once and answers look-ups by name."""

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
        user = _read_toml(user_path) if user_path else {}
        reg.default_backend = user.get("default_backend", builtin.get("default_backend", "numpy"))
        disabled = set(builtin.get("plugins", {}).get("disable", [])) | set(
            user.get("plugins", {}).get("disable", []))
        for name in disabled:
            pm.set_blocked(name)
            reg.disabled[name] = PluginInfo(name, "")

        def add_module(module_name: str, source: str) -> None:
            if pm.is_blocked(module_name):
                dist = ("dlbatch", _own_version()) if source == "builtin" else ("", "")
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
            dist, version = ("dlbatch", _own_version()) if source == "builtin" else _distribution_of(module_name)
            reg.plugins[module_name] = PluginInfo(module_name, source, dist, version)

        for module_name in builtin.get("plugins", {}).get("modules", []):
            add_module(module_name, "builtin")
        pm.check_pending()
        for ep in entry_points():
            dist, version = _ep_dist(ep)
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
                reg.failed[ep.name] = FailedPlugin(ep.name, f"{ep.value}: {_reason(exc)}",
                                                   "entry point", dist, version)
                continue
            reg.plugins[ep.name] = PluginInfo(ep.name, "entry point", dist, version)
        for module_name in user.get("plugins", {}).get("modules", []):
            add_module(module_name, f"plugins.toml ({user_path})")
        pm.check_pending()
        soft = {n for n, p in reg.plugins.items() if p.source == "entry point"}
        for name, reason in self._call_hooks(pm, reg, soft, order=[n for n, _ in pm.list_name_plugin()]).items():
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

    def _call_hooks(self, pm: pluggy.PluginManager, reg: Registry, soft: set[str] = frozenset(),
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
                    failures[name] = f"{hook_name} raised {_reason(exc)}"
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
        self._apply_without_conflicts(staged, reg, soft, order, taken or reg, failures)
        return failures

    @staticmethod
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

    @property
    def registry(self) -> Registry:
        with self._lock:
            if self._registry is None:
                self._registry = self._load()
            return self._registry

    def reload(self) -> Registry:
        """Forget everything loaded and read plugins again (tests, changed plugins.toml)."""
        with self._lock:
            self._registry = None
            self._pm = None
            return self.registry

    def register_plugin(self, plugin: Any, name: str | None = None) -> None:
        """Register a plugin object at run time (an in-process plugin, e.g. in a notebook)."""
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
            self._call_hooks(tmp, sub, taken=reg)  # a name another plugin holds: DLPluginError, nothing changed
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
        return self._lookup(self.registry.backends, name, "backend")

    def loss(self, name: str):
        return self._lookup(self.registry.losses, name, "loss")

    def model_type(self, name: str):
        return self._lookup(self.registry.model_types, name, "model type")

    def kernels(self, backend_name: str) -> dict[str, Any]:
        return self.registry.ops.get(backend_name, {})

    def default_backend(self) -> str:
        return self.registry.default_backend

    def plugins(self) -> list[PluginInfo]:
        return list(self.registry.plugins.values())

    def failed_plugins(self) -> list[FailedPlugin]:
        """Third-party plugins skipped because they failed to load, with the reason."""
        return list(self.registry.failed.values())

    def disabled_plugins(self) -> list[PluginInfo]:
        """Plugins named in a `disable` list (source "" when nothing by that name is installed)."""
        return list(self.registry.disabled.values())


def _own_version() -> str:
    try:
        return importlib.metadata.version("dlbatch")
    except importlib.metadata.PackageNotFoundError:
        return ""


manager = PluginManager()
