"""`dlbatch ...`: inspect plugins, backends and parameters; run the demo."""
from __future__ import annotations

import json
from typing import Optional

import typer

app = typer.Typer(help="dlbatch admin commands: plugins, backends, model parameters, demo.",
                  no_args_is_help=True, add_completion=False)


@app.command()
def plugins(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """List every loaded plugin: where it came from, its distribution and what it registered."""
    from dlbatch.core.plugins import manager
    infos = manager.plugins()
    if as_json:
        typer.echo(json.dumps([vars(p) for p in infos], indent=2))
        return
    for p in infos:
        dist = f"{p.distribution} {p.version}".strip() or "-"
        kinds: dict[str, list[str]] = {}
        for item in p.registered:
            kind, _, name = item.rpartition(" ")
            kinds.setdefault(kind, []).append(name)
        typer.echo(f"{p.name}  [{p.source}; {dist}]")
        for kind, names in kinds.items():
            shown = ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")
            typer.echo(f"    {kind}: {shown}")


@app.command()
def backends() -> None:
    """List the compute backends, their devices and how many ops each implements."""
    from dlbatch.core.plugins import manager
    reg = manager.registry
    for name, backend in sorted(reg.backends.items()):
        default = " (default)" if name == reg.default_backend else ""
        typer.echo(f"{name}{default}: {backend.description} — {len(reg.ops.get(name, {}))} ops")


@app.command()
def params(model_type: str = typer.Argument("classification", help="model type")) -> None:
    """Show the parameter table of a model type (names, kinds, defaults, allowed values)."""
    from dlbatch.core.params import ParamTable
    from dlbatch.core.plugins import manager
    from dlbatch.core.errors import DLError
    try:
        mt = manager.model_type(model_type)
    except DLError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2)
    table = ParamTable(mt.name, mt.param_specs())
    defaults = mt.default_params()
    for name, spec in table.specs.items():
        flags = ", ".join(f for f, on in (("read-only", spec.readonly), ("runtime", spec.runtime)) if on)
        default = defaults.get(name, spec.default)
        allowed = f" allowed: {', '.join(map(str, spec.choices))}" if spec.choices else ""
        typer.echo(f"{name:24s} {spec.kind:10s} default={default!r}{allowed}"
                   f"{' [' + flags + ']' if flags else ''}  {spec.doc}")


@app.command()
def info(path: str = typer.Argument(..., help="a .onnx model file"),
         as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Read a model file and show its type, classes, image size, size and solver progress."""
    import dlbatch
    from dlbatch.core.errors import DLError
    try:
        model = dlbatch.read_dl_model(path)
    except DLError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2)
    solver = model.solver_state_dict()
    facts = {name: model.get_param(name) for name in (
        "type", "class_ids", "class_names", "image_dimensions", "image_range_min", "image_range_max",
        "num_trainable_params", "solver_type", "learning_rate", "batch_size")}
    facts["backbone"] = model.meta.get("backbone")
    facts["steps_trained"] = int(solver["step"])
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
        return
    for key, value in facts.items():
        typer.echo(f"{key:22s} {value}")


@app.command()
def create(model_type: str = typer.Argument(..., help="model type, e.g. classification"),
           out: str = typer.Argument(..., help="where to write the .onnx file"),
           backbone: Optional[str] = typer.Option(None, help="backbone name"),
           num_classes: int = typer.Option(2, help="number of classes (ids 0..K-1)"),
           width: int = typer.Option(224), height: int = typer.Option(224), channels: int = typer.Option(3),
           seed: int = typer.Option(42)) -> None:
    """Create a freshly initialised model and write it to an .onnx file."""
    import dlbatch
    from dlbatch.core.errors import DLError
    try:
        model = dlbatch.create_dl_model(model_type, backbone=backbone, num_classes=num_classes,
                                        image_dimensions=[width, height, channels], seed=seed)
        dlbatch.write_dl_model(model, out)
    except DLError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2)
    typer.echo(f"wrote {out}: {model}")


@app.command()
def demo(epochs: int = typer.Option(12, help="training epochs"),
         backend: str = typer.Option("numpy", help="compute backend"),
         seed: Optional[int] = typer.Option(0, help="random seed")) -> None:
    """Train the compact classifier on scikit-learn's digits and print what it learned."""
    from dlbatch.demo import main as run_demo
    run_demo(["--epochs", str(epochs), "--backend", backend, "--seed", str(seed)])


def main() -> None:
    app()


if __name__ == "__main__":
    main()
