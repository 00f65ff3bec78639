"""What `dlbatch model info` tells about a model file: its parameters, size, ONNX ops and
opset, and how far it was trained, read through the public model API and the ONNX file."""
from __future__ import annotations

from collections import Counter
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from .render import to_jsonable

HEADLINE = ("type", "class_ids", "class_names", "image_dimensions", "num_trainable_params", "solver_type",
            "learning_rate", "batch_size")


def onnx_ops(path) -> tuple[dict[str, int], int | None]:
    """Op types of the file's graph with their counts (most used first) and the default-domain
    opset."""
    from dlbatch.core.onnx_file import load_model_proto
    proto, _ = load_model_proto(path)
    counts = Counter(node.op_type for node in proto.graph.node)
    opset = next((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))), opset


def model_facts(model, path) -> dict[str, Any]:
    """Every fact as JSON-ready values: headline parameters at the top level (for scripts),
    the full parameter set under `parameters`."""
    ops, opset = onnx_ops(path)
    facts: dict[str, Any] = {"file": str(path)}
    facts.update({name: model.get_param(name) for name in HEADLINE})
    facts["backbone"] = model.meta.get("backbone")
    facts["steps_trained"] = int(model.solver_state_dict()["step"])
    facts["opset"] = opset
    facts["num_nodes"] = sum(ops.values())
    facts["ops"] = ops
    facts["parameters"] = {k: v for k, v in model.hyperparameters.items() if not (k == "backbone" and v is None)}
    return to_jsonable(facts)


def print_facts(facts: dict[str, Any]) -> None:
    """Readable form: headline, parameters, ops."""
    console = Console(highlight=False, soft_wrap=True)
    head = ("file", "type", "backbone", "class_ids", "class_names", "image_dimensions", "num_trainable_params",
            "steps_trained", "opset", "num_nodes")
    for key in head:
        console.print(f"{key:22s} {facts.get(key)}")
    table = Table(title="parameters", title_justify="left")
    table.add_column("name")
    table.add_column("value")
    for name, value in sorted(facts["parameters"].items()):
        table.add_row(name, repr(value))
    console.print(table)
    ops = ", ".join(f"{op} x{n}" for op, n in facts["ops"].items())
    console.print(f"ops ({len(facts['ops'])} types): {ops}")


def echo_json(value: Any) -> None:
    import json
    typer.echo(json.dumps(to_jsonable(value), indent=2))
