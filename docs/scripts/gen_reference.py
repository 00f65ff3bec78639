"""Generate the parameter reference and the CLI reference from the code, never by hand.

Run by mkdocs-gen-files at every `mkdocs build` (the pages exist only in the built site), or on
its own to print them: `python docs/scripts/gen_reference.py [parameters|cli]`.

- parameters: the parameter table (`dlbatch.core.params.GENERIC` plus each registered model
  type's `param_specs()`, with the type's defaults), one section per model type.
- cli: every command of the Typer app (`dlbatch.cli.app.app`), walked as a click command tree
  (duck-typed: Typer may vendor its own click): usage, help, arguments and options with their
  defaults, and the command's example.
"""
from __future__ import annotations

import sys

import typer.main

from dlbatch.cli.app import app
from dlbatch.core.params import GENERIC, ParamTable
from dlbatch.core.plugins import manager

_FLAGS = (("read-only", "readonly"), ("runtime", "runtime"), ("fixed at creation", "fixed"))


def _cell(value) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _default(value) -> str:
    return "" if value is None else f"`{value!r}`"


def parameter_rows(model_type: str) -> list[dict]:
    """One row per parameter of a model type: name, kind, default, allowed values, flags, doc."""
    mt = manager.model_type(model_type)
    table = ParamTable(mt.name, mt.param_specs())
    defaults = mt.default_params()
    rows = []
    for name, spec in table.specs.items():
        allowed = ", ".join(f"`{c}`" for c in spec.choices) if spec.choices else ""
        flags = [label for label, attr in _FLAGS if getattr(spec, attr)]
        if spec.nullable:
            flags.append("may be None")
        rows.append({"name": name, "kind": spec.kind, "default": defaults.get(name, spec.default),
                     "allowed": allowed, "flags": ", ".join(flags), "doc": spec.doc})
    return rows


def _table(rows: list[dict]) -> list[str]:
    lines = ["| name | kind | default | allowed | notes | meaning |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r['name']}` | {r['kind']} | {_cell(_default(r['default']))} | {r['allowed']} | "
                     f"{r['flags']} | {_cell(r['doc'])} |")
    return lines


def parameters_page() -> str:
    """Markdown of the parameter reference."""
    generic = {spec.name for spec in GENERIC}
    types = sorted(manager.registry.model_types)
    out = ["# Parameter reference", "",
           "Generated from the parameter table (`dlbatch.core.params` and each model type's "
           "`param_specs()`) at every docs build; `dlbatch params TYPE` prints the same table.", "",
           "Set a parameter with `create_dl_model(type, name=value)`, `set_dl_model_param(model, name, value)` "
           "or `dlbatch model set FILE name=value`; read it with `get_dl_model_param`. A wrong name, type or "
           "value raises `DLParamError` listing what is allowed.", "",
           "- **read-only**: derived from the model (`get_dl_model_param` only).",
           "- **runtime**: where the model runs; never written to model files.",
           "- **fixed at creation**: shapes the network; give it to `create_dl_model`.", "",
           "## Every model type", ""]
    first = types[0] if types else "classification"
    out += _table([r for r in parameter_rows(first) if r["name"] in generic])
    for name in types:
        own = [r for r in parameter_rows(name) if r["name"] not in generic]
        out += ["", f"## {name}", ""]
        out += _table(own) if own else ["No parameters beyond the generic ones."]
    return "\n".join(out) + "\n"


def _is_argument(param) -> bool:
    return getattr(param, "param_type_name", "") == "argument" or type(param).__name__.endswith("Argument")


def _kind(param) -> str:
    if getattr(param, "is_flag", False):
        return "flag"
    if getattr(param, "type", None) is not None:
        return param.type.name
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    name = getattr(annotation, "__name__", None) or str(annotation)
    return {"str": "text", "Path": "path", "int": "integer", "float": "number", "bool": "flag"}.get(name, name)


def _param_line(param) -> str:
    if _is_argument(param):
        names = f"`{param.metavar or param.name.upper()}`"
        kind = "argument" + (" (several)" if param.nargs == -1 else "")
    else:
        names = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
        kind = _kind(param)
    default = param.default if not callable(param.default) else None
    shown = "" if default in (None, (), [], False) or _is_argument(param) else f"`{default}`"
    text = getattr(param, "help", None) or ""
    required = "yes" if param.required else ""
    return f"| {names} | {kind} | {required} | {_cell(shown)} | {_cell(text)} |"


def _command_section(cmd, path: list[str], out: list[str]) -> None:
    ctx = cmd.context_class(cmd, info_name=" ".join(path))
    level = "#" * min(len(path) + 1, 4)
    out += [f"{level} `{' '.join(path)}`", ""]
    if cmd.help:
        out += [cmd.help.strip(), ""]
    out += ["```text", cmd.get_usage(ctx).strip(), "```", ""]
    params = [p for p in cmd.get_params(ctx) if p.name != "help"]
    if params:
        out += ["| argument / option | kind | required | default | meaning |", "|---|---|---|---|---|"]
        out += [_param_line(p) for p in params] + [""]
    if cmd.epilog:
        out += [cmd.epilog.strip(), ""]
    if hasattr(cmd, "list_commands"):
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if not getattr(sub, "hidden", False):
                _command_section(sub, [*path, name], out)


def cli_page() -> str:
    """Markdown of the CLI reference, walked from the Typer app."""
    out = ["# CLI reference", "",
           "Generated from the Typer app (`dlbatch.cli.app`) at every docs build; `dlbatch COMMAND --help` "
           "prints the same. Errors print one line on stderr and exit with status 2; `dlbatch --debug ...` "
           "shows the traceback.", ""]
    _command_section(typer.main.get_command(app), ["dlbatch"], out)
    return "\n".join(out) + "\n"


PAGES = {"parameters": ("reference/parameters.md", parameters_page),
         "cli": ("reference/cli.md", cli_page)}


def write_with_gen_files() -> None:
    import mkdocs_gen_files
    for path, make in PAGES.values():
        with mkdocs_gen_files.open(path, "w") as f:
            f.write(make())


if __name__ == "__main__" and len(sys.argv) > 1:
    print(PAGES[sys.argv[1]][1]())
elif __name__ != "__main__":  # loaded by mkdocs-gen-files
    write_with_gen_files()
