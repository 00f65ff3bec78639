"""`dlbatch plugins list|enable|disable`: what is loaded, what failed and why, and switching
plugins on and off in the user's plugins.toml (see dlbatch.core.plugin_config)."""
from __future__ import annotations

import json
import warnings
from contextlib import contextmanager
from dataclasses import asdict

import typer

plugins_app = typer.Typer(
    help="List, enable and disable dlbatch plugins (backends, losses, model types, op kernels).\n\n"
         "Example: dlbatch plugins list",
    no_args_is_help=True, add_completion=False)

MAX_SHOWN = 12


@contextmanager
def _clean_errors():
    """One line on stderr and exit code 2 for a DLError; the failed-plugin warning is not
    printed because `plugins list` shows those failures itself."""
    from dlbatch.core.errors import DLError
    from dlbatch.core.plugins import DLPluginWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DLPluginWarning)
        try:
            yield
        except DLError as exc:
            typer.echo(" ".join(str(exc).split()), err=True)
            raise typer.Exit(2) from None


def _dist(distribution: str, version: str) -> str:
    return f"{distribution} {version}".strip() or "-"


def _describe_registered(registered: list[str]) -> list[str]:
    kinds: dict[str, list[str]] = {}
    for item in registered:
        kind, _, name = item.rpartition(" ")
        if kind == "op":  # "op numpy:Conv": one line per backend
            backend, _, name = name.rpartition(":")
            kind = f"ops for {backend}"
        kinds.setdefault(kind, []).append(name)
    lines = []
    for kind, names in kinds.items():
        shown = ", ".join(names[:MAX_SHOWN])
        if len(names) > MAX_SHOWN:
            shown += f", ... ({len(names)} in all)"
        lines.append(f"    {kind}: {shown}")
    return lines


@plugins_app.command("list")
def list_plugins(as_json: bool = typer.Option(False, "--json", help="print one JSON object: "
                                              '{"plugins": [...], "failed": [...], "disabled": [...]}')) -> None:
    """List loaded, failed and disabled plugins.

    Loaded plugins: name, source, distribution and version, and what each registered.
    Plugins that failed to load: the reason. Then the disabled ones.

    Example: dlbatch plugins list --json
    """
    from dlbatch.core.plugins import manager
    with _clean_errors():
        loaded, failed, disabled = manager.plugins(), manager.failed_plugins(), manager.disabled_plugins()
    if as_json:
        typer.echo(json.dumps({"plugins": [asdict(p) for p in loaded],
                               "failed": [asdict(f) for f in failed],
                               "disabled": [asdict(d) for d in disabled]}, indent=2))
        return
    for p in loaded:
        typer.echo(f"{p.name}  [{p.source}; {_dist(p.distribution, p.version)}]")
        for line in _describe_registered(p.registered):
            typer.echo(line)
    if failed:
        typer.echo("\nfailed to load (skipped):")
        for f in failed:
            typer.echo(f"{f.name}  [{f.source}; {_dist(f.distribution, f.version)}]: {f.reason}")
    if disabled:
        typer.echo("\ndisabled:")
        for d in disabled:
            where = f"[{d.source}; {_dist(d.distribution, d.version)}]" if d.source else "[not installed]"
            typer.echo(f"{d.name}  {where}")


@plugins_app.command("disable")
def disable(name: str = typer.Argument(..., help="plugin name as `dlbatch plugins list` shows it")) -> None:
    """Disable a plugin in the user's plugins.toml.

    Adds NAME to the plugins.disable list of $DLBATCH_PLUGINS, else ./plugins.toml.
    The file is created when missing; its other content and comments are kept.

    Example: dlbatch plugins disable example
    """
    from dlbatch.core.plugin_config import disable_plugin, user_plugins_toml_path
    with _clean_errors():
        changed = disable_plugin(name)
        path = user_plugins_toml_path()
    typer.echo(f"disabled {name} in {path}" if changed else f"{name} was already disabled in {path}")


@plugins_app.command("enable")
def enable(name: str = typer.Argument(..., help="a disabled plugin's name")) -> None:
    """Enable a disabled plugin again.

    Removes NAME from the plugins.disable list of $DLBATCH_PLUGINS, else ./plugins.toml.

    Example: dlbatch plugins enable example
    """
    from dlbatch.core.plugin_config import enable_plugin, user_plugins_toml_path
    with _clean_errors():
        changed = enable_plugin(name)
        path = user_plugins_toml_path()
    typer.echo(f"enabled {name} in {path}" if changed else f"{name} is not disabled in {path}; nothing to do")


if __name__ == "__main__":
    plugins_app()
