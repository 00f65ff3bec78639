"""`dlbatch ...`: the root command. It mounts the command groups (model, data, plugins) and the
top-level commands (train, evaluate, apply, backends, params, demo) and owns the one error
handler: an expected error is one line on stderr and exit status 2, never a traceback, unless
`dlbatch --debug ...` asks for it."""
from __future__ import annotations

import json
import os
import sys
from typing import Optional

import typer
from typer.core import TyperGroup

from . import apply_cmd, data_cmd, evaluate_cmd, model_cmd, train_cmd
from .errors import EXIT_USER_ERROR, describe_error, is_expected
from .plugins_cmd import plugins_app

DEBUG_KEY = "dlbatch.debug"


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


class _Root(TyperGroup):
    """Runs every command inside the error handler (sub-groups included, since they are
    invoked from here)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except BrokenPipeError:  # e.g. `dlbatch apply ... | head`: the reader left, nothing to report
            _silence_stdout()
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        except Exception as exc:  # noqa: BLE001 - the one place that turns errors into exit codes
            if ctx.meta.get(DEBUG_KEY) or os.environ.get("DLBATCH_DEBUG"):
                raise
            expected = is_expected(exc)
            hint = "" if expected else " (unexpected; run `dlbatch --debug ...` for the traceback)"
            typer.echo(f"error: {describe_error(exc)}{hint}", err=True)
            raise typer.Exit(EXIT_USER_ERROR if expected else 1) from None


app = typer.Typer(cls=_Root, help="dlbatch: create, train, evaluate and apply deep-learning models; "
                  "inspect plugins, backends and parameters.",
                  epilog="Example: dlbatch data synth classification data && "
                         "dlbatch model create classification -o m.onnx --dataset data --width 32 --height 32 && "
                         "dlbatch train m.onnx data --out run --epochs 5",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False,
                  context_settings={"help_option_names": ["-h", "--help"]})


@app.callback()
def _root(ctx: typer.Context,
          debug: bool = typer.Option(False, "--debug", help="show the full traceback of an error")) -> None:
    ctx.meta[DEBUG_KEY] = debug


app.add_typer(model_cmd.model_app, name="model")
app.add_typer(data_cmd.data_app, name="data")
app.add_typer(plugins_app, name="plugins")
app.command("train", epilog=train_cmd.EPILOG)(train_cmd.train)
app.command("evaluate", epilog=evaluate_cmd.EPILOG)(evaluate_cmd.evaluate)
app.command("apply", epilog=apply_cmd.EPILOG)(apply_cmd.apply)
# the commands before `model create` / `model info` existed, kept for scripts that use them
app.command("create", hidden=True)(model_cmd.create_legacy)
app.command("info", hidden=True)(model_cmd.info)


@app.command(epilog="Example: dlbatch backends")
def backends() -> None:
    """List the compute backends, their devices and how many ops each implements."""
    from dlbatch.core.plugins import manager
    reg = manager.registry
    for name, backend in sorted(reg.backends.items()):
        default = " (default)" if name == reg.default_backend else ""
        typer.echo(f"{name}{default}: {backend.description} — {len(reg.ops.get(name, {}))} ops")


@app.command(epilog="Example: dlbatch params detection")
def params(model_type: str = typer.Argument("classification", help="model type"),
           as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Show the parameter table of a model type (names, kinds, defaults, allowed values)."""
    from dlbatch.core.params import ParamTable
    from dlbatch.core.plugins import manager
    mt = manager.model_type(model_type)
    table = ParamTable(mt.name, mt.param_specs())
    defaults = mt.default_params()
    rows = []
    for name, spec in table.specs.items():
        flags = [f for f, on in (("read-only", spec.readonly), ("runtime", spec.runtime), ("fixed", spec.fixed)) if on]
        rows.append({"name": name, "kind": spec.kind, "default": defaults.get(name, spec.default),
                     "choices": list(spec.choices) if spec.choices else None, "flags": flags, "doc": spec.doc})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        allowed = f" allowed: {', '.join(map(str, r['choices']))}" if r["choices"] else ""
        flags = f" [{', '.join(r['flags'])}]" if r["flags"] else ""
        typer.echo(f"{r['name']:26s} {r['kind']:10s} default={r['default']!r}{allowed}{flags}  {r['doc']}")


@app.command(epilog="Example: dlbatch demo --epochs 3")
def demo(epochs: int = typer.Option(8, help="training epochs"),
         backend: str = typer.Option("numpy", help="compute backend"),
         seed: Optional[int] = typer.Option(0, help="random seed")) -> None:
    """Train the compact classifier on scikit-learn's digits and print what it learned."""
    from dlbatch.demo import main as run_demo
    run_demo(["--epochs", str(epochs), "--backend", backend, "--seed", str(seed)])


def main() -> None:
    app(prog_name="dlbatch")


if __name__ == "__main__":
    main()
