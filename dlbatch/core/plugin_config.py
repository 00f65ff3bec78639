"""Enable and disable plugins by editing the user's plugins.toml (its `[plugins] disable` list).

Which file: `$DLBATCH_PLUGINS` when set, else `./plugins.toml` — the same rule the plugin manager
reads by. When that file does not exist yet, enable/disable create it (with its folder), so
setting `DLBATCH_PLUGINS=~/.config/dlbatch/plugins.toml` gives one file for every folder.
dlbatch's own plugins.toml (the source tree's, when run from the checkout) is never edited.

Only the `disable = [...]` value is replaced in the text, so comments, other keys and layout
are kept. Where that is not possible (the list written as a dotted key or an inline table), the
file is rewritten from its parsed content by a small TOML writer and its comments are lost.
"""
from __future__ import annotations

import math
import os
import re
import tomllib
from datetime import date, datetime, time
from pathlib import Path

from .atomic_file import atomic_write
from .errors import DLPluginError
from .plugins import builtin_config, builtin_config_path, entry_points, manager


def user_plugins_toml_path() -> Path:
    """The plugins.toml that enable/disable edit (it may not exist yet)."""
    env = os.environ.get("DLBATCH_PLUGINS")
    path = Path(env).expanduser() if env else Path.cwd() / "plugins.toml"
    if path.exists() and path.resolve() == builtin_config_path():
        raise DLPluginError(f"{path} is dlbatch's own list of built-in plugins, not a user's "
                            "plugins.toml; set DLBATCH_PLUGINS to a file of your own (e.g. "
                            "~/.config/dlbatch/plugins.toml) or run from another folder")
    return path


def known_plugin_names() -> set[str]:
    """Names enable/disable accept: loaded, failed and disabled plugins, installed entry
    points and the built-in modules."""
    reg = manager.registry
    names = set(reg.plugins) | set(reg.failed) | set(reg.disabled)
    names |= {ep.name for ep in entry_points()}
    names |= set(builtin_config().get("plugins", {}).get("modules", []))
    return {n for n in names if reg.plugins.get(n) is None or reg.plugins[n].source != "runtime"}


def disable_plugin(name: str) -> bool:
    """Add `name` to the user's disable list and reload plugins; False if already there."""
    if name not in known_plugin_names():
        raise _unknown(name)
    path = user_plugins_toml_path()
    text, data = _read(path)
    disabled = _disable_list(path, data)
    if name in disabled:
        return False
    _write(path, text, data, disabled + [name])
    manager.reload()
    return True


def enable_plugin(name: str) -> bool:
    """Remove `name` from the user's disable list and reload plugins; False if it was not
    disabled there (already enabled)."""
    path = user_plugins_toml_path()
    text, data = _read(path)
    disabled = _disable_list(path, data)
    if name in disabled:
        _write(path, text, data, [n for n in disabled if n != name])
        manager.reload()
        return True
    if name in builtin_config().get("plugins", {}).get("disable", []):
        raise DLPluginError(f"plugin {name!r} is disabled by dlbatch's own plugins.toml "
                            f"({builtin_config_path()}), which enable does not edit")
    if name not in known_plugin_names():
        raise _unknown(name)
    return False


def _unknown(name: str) -> DLPluginError:
    known = ", ".join(sorted(known_plugin_names())) or "(none)"
    return DLPluginError(f"no plugin named {name!r}; known plugins: {known}. "
                         "`dlbatch plugins list` shows them with what each registers")


def _read(path: Path) -> tuple[str, dict]:
    if not path.exists():
        return "", {}
    try:
        text = path.read_text(encoding="utf-8")
        return text, tomllib.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise DLPluginError(f"cannot read {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise DLPluginError(f"{path} is not valid TOML ({exc}); fix or remove it") from exc


def _disable_list(path: Path, data: dict) -> list[str]:
    plugins = data.get("plugins", {})
    value = plugins.get("disable", []) if isinstance(plugins, dict) else None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DLPluginError(f"{path}: [plugins] disable must be a list of plugin names, got "
                            f"{value!r}; fix it by hand")
    return list(value)


def _write(path: Path, text: str, data: dict, disabled: list[str]) -> None:
    wanted = {**data, "plugins": {**data.get("plugins", {}), "disable": disabled}}
    new = _edit_disable(text, disabled)
    try:
        ok = tomllib.loads(new) == wanted
    except tomllib.TOMLDecodeError:
        ok = False
    if not ok:  # a layout the text edit does not handle: rewrite (comments are lost)
        new = dumps(wanted)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda: new.encode("utf-8"))


# -- text edit of `[plugins] disable` ------------------------------------------------------------
_HEADER = re.compile(r"^\s*\[\s*plugins\s*\]\s*(#.*)?$")
_ANY_HEADER = re.compile(r"^\s*\[\[?\s*[A-Za-z0-9_.\"' -]+\]\]?\s*(#.*)?$")
_DISABLE = re.compile(r"^\s*disable\s*=\s*")


def _edit_disable(text: str, disabled: list[str]) -> str:
    """`text` with the `[plugins]` table's `disable` value replaced (added when absent)."""
    value = _value(disabled)
    lines = text.splitlines(keepends=True)
    header = next((i for i, line in enumerate(lines) if _HEADER.match(line)), None)
    if header is None:
        sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
        return f"{text}{sep}[plugins]\ndisable = {value}\n"
    end = next((i for i in range(header + 1, len(lines)) if _ANY_HEADER.match(lines[i])), len(lines))
    for i in range(header + 1, end):
        m = _DISABLE.match(lines[i])
        if m:
            start = sum(len(line) for line in lines[:i]) + m.end()
            stop = _array_end(text, start)
            return text[:start] + value + text[stop:] if stop is not None else text
    insert = sum(len(line) for line in lines[:header + 1])
    nl = "" if text[:insert].endswith("\n") else "\n"
    return f"{text[:insert]}{nl}disable = {value}\n{text[insert:]}"


def _array_end(text: str, start: int) -> int | None:
    """Index just past the TOML array starting at `start` (strings and comments skipped)."""
    if not text.startswith("[", start):
        return None
    depth, i = 0, start
    while i < len(text):
        c = text[i]
        if c == "#":
            i = text.find("\n", i)
            if i < 0:
                return None
            continue
        if c in "\"'":
            quote = text[i:i + 3] if text[i:i + 3] in ('"""', "'''") else c
            i += len(quote)
            while i < len(text) and not text.startswith(quote, i):
                i += 2 if c == '"' and text[i] == "\\" else 1
            i += len(quote)
            continue
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


# -- a small TOML writer (tomllib only reads) ----------------------------------------------------
def _string(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\b\t\n\f\r":
            out.append({"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else _string(k)


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")) if not math.isfinite(v) else repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, (datetime, date, time)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def dumps(data: dict, _prefix: tuple[str, ...] = ()) -> str:
    """Parsed TOML (tomllib's result) back to TOML text: scalars first, then tables."""
    def is_table_array(v) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)

    lines = [f"{_key(k)} = {_value(v)}" for k, v in data.items()
             if not isinstance(v, dict) and not is_table_array(v)]
    parts = ["\n".join(lines) + "\n" if lines else ""]
    for k, v in data.items():
        path = _prefix + (k,)
        name = ".".join(_key(p) for p in path)
        if isinstance(v, dict):
            parts.append(f"\n[{name}]\n" + dumps(v, path))
        elif is_table_array(v):
            parts.extend(f"\n[[{name}]]\n" + dumps(x, path) for x in v)
    return "".join(parts).lstrip("\n")
