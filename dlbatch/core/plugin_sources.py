"""Where plugins come from: dlbatch's own plugins.toml (the built-ins and the default
backend), a user's plugins.toml ($DLBATCH_PLUGINS, else ./plugins.toml) that adds modules and
disables plugins by name, and the installed entry points of the group "dlbatch".

The plugin manager (`dlbatch.core.plugins`, which re-exports these names) reads them when it
loads; `dlbatch plugins enable/disable` edits the user's file (`dlbatch.core.plugin_config`).

Examples:
    The examples run in an empty folder:

    >>> from pathlib import Path
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources
import os
import tomllib
from pathlib import Path

from .errors import DLPluginError

__all__ = ["ENTRY_POINT_GROUP", "builtin_config", "builtin_config_path", "user_config_path", "read_toml",
           "entry_points", "entry_point_distribution", "distribution_of", "own_version"]

ENTRY_POINT_GROUP = "dlbatch"
"""The entry-point group an installed package names its plugin in (`[project.entry-points.dlbatch]`)."""


def read_toml(path: Path) -> dict:
    """A plugins.toml's content.

    Args:
        path: the file.

    Returns:
        The parsed TOML.

    Raises:
        DLPluginError: the file is not valid TOML, naming it.

    Examples:
        >>> _ = Path("plugins.toml").write_text('default_backend = "numpy"')
        >>> read_toml(Path("plugins.toml"))
        {'default_backend': 'numpy'}
        >>> Path("plugins.toml").unlink()
    """
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise DLPluginError(f"{path} is not valid TOML ({exc}); fix or remove it") from exc


def builtin_config_path() -> Path:
    """Where the source tree keeps dlbatch's own plugins.toml (a wheel ships it inside the
    package instead).

    Returns:
        The path (which a user's ./plugins.toml must not be).

    Examples:
        >>> builtin_config_path().name
        'plugins.toml'
    """
    return Path(__file__).resolve().parents[2] / "plugins.toml"


def builtin_config() -> dict:
    """The plugins.toml shipped with dlbatch (inside the wheel, or at the source-tree root).

    Returns:
        Its content: the built-in plugin modules, the default backend.

    Raises:
        DLPluginError: the file is not valid TOML.

    Examples:
        >>> "dlbatch.models.classification" in builtin_config()["plugins"]["modules"]
        True
    """
    shipped = importlib.resources.files("dlbatch") / "plugins.toml"
    if shipped.is_file():
        return tomllib.loads(shipped.read_text())
    return read_toml(builtin_config_path())


def user_config_path() -> Path | None:
    """The user's plugins.toml: the path in $DLBATCH_PLUGINS, else ./plugins.toml.

    Returns:
        The path, or None when there is none.

    Raises:
        DLPluginError: $DLBATCH_PLUGINS names something that is not a file.

    Examples:
        In an empty folder with DLBATCH_PLUGINS unset:

        >>> import os
        >>> saved = os.environ.pop("DLBATCH_PLUGINS", None)
        >>> user_config_path() is None
        True
        >>> _ = Path("plugins.toml").write_text('default_backend = "numpy"')
        >>> user_config_path().name
        'plugins.toml'
        >>> Path("plugins.toml").unlink()
        >>> if saved is not None:
        ...     os.environ["DLBATCH_PLUGINS"] = saved
    """
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
    """Every installed entry point of the group "dlbatch" (not loaded).

    Returns:
        The entry points; their names are the plugins' names.

    Examples:
        >>> all(ep.group == ENTRY_POINT_GROUP for ep in entry_points())
        True
    """
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def distribution_of(module_name: str) -> tuple[str, str]:
    """The installed distribution that provides a module (what `dlbatch plugins list` shows).

    Args:
        module_name: a dotted module name; its top-level package is looked up.

    Returns:
        `(distribution name, version)`, or `("", "")` when none is known.

    Examples:
        >>> distribution_of("pluggy.hooks")[0]
        'pluggy'
    """
    top = module_name.split(".")[0]
    for dist_name in importlib.metadata.packages_distributions().get(top, []):
        try:
            return dist_name, importlib.metadata.version(dist_name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return "", ""


def entry_point_distribution(ep) -> tuple[str, str]:
    """The distribution that declares an entry point.

    Args:
        ep: an `importlib.metadata.EntryPoint`.

    Returns:
        `(distribution name, version)`, or `("", "")` when the entry point has none.

    Examples:
        >>> all(entry_point_distribution(ep)[0] for ep in entry_points())
        True
    """
    return (ep.dist.name, ep.dist.version) if ep.dist else ("", "")


def own_version() -> str:
    """dlbatch's own installed version, shown for the built-in plugins.

    Returns:
        The version, or "" when dlbatch runs from a source tree that is not installed.

    Examples:
        >>> isinstance(own_version(), str)
        True
    """
    try:
        return importlib.metadata.version("dlbatch")
    except importlib.metadata.PackageNotFoundError:
        return ""
