"""Constant folding for imported ONNX graphs.

Exporters leave small computations on constants in a graph: `Constant` nodes, shapes taken
with `Shape` and massaged with `Gather`/`Unsqueeze`/`Concat`/`Cast`, `ConstantOfShape`,
`Identity` copies of weights. dlbatch backends only implement the ops that carry data, so every
node whose inputs are known before any image arrives is evaluated here, once, with
`onnx.reference.ReferenceEvaluator`, and its outputs become initializers.

`Shape` of a computed tensor is known when its static shape is: the image input has a fixed
C x H x W, shape inference gives the rest. A free batch dimension is handled by folding twice,
with two batch sizes: values equal in both runs are constants; a value that depends on the
batch size becomes, as the target shape of a `Reshape` (the usual `x.view(x.size(0), -1)`), a
constant whose batch entry is `0` (copy the input's dimension) or `-1` (inferred); anywhere else
(a class token expanded to `x.shape[0]`) the nodes computing it stay in the graph and run on the
actual batch. `CastLike` of a constant is folded when the type of its second input is known.
Files exported with a fixed batch are made batch-free first (onnx_batch_rewrite).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import onnx
from onnx import helper

from .errors import DLModelFileError
from .onnx_reference import evaluate_node, infer_shapes

# evaluated at run time even when their inputs are constant
NEVER_FOLD = frozenset({
    "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
    "Bernoulli", "Dropout", "If", "Loop", "Scan", "SequenceConstruct", "Optional",
})
DEFAULT_DOMAINS = ("", "ai.onnx")
# two batch sizes for graphs whose batch dimension is free (small primes, unlike channel counts)
BATCH_PROBES = (2, 3)


@dataclass
class Folded:
    """What is left to run: `nodes` (topological, dead nodes removed), `constants` (every
    known value the remaining nodes read) and `shapes` (static shapes from shape inference,
    None for unknown; free batch dimensions as None)."""

    nodes: list
    constants: dict[str, np.ndarray]
    shapes: dict[str, tuple | None] = field(default_factory=dict)


def _shape_value(node: onnx.NodeProto, shape: tuple, opset: int) -> np.ndarray:
    if node.op_type == "Size":
        return np.array(int(np.prod(shape)), dtype=np.int64)
    start, end = 0, None
    if opset >= 15:
        for a in node.attribute:
            if a.name == "start":
                start = a.i
            elif a.name == "end":
                end = a.i
    return np.array(shape[slice(start, end)], dtype=np.int64)


def _has_subgraph(node: onnx.NodeProto) -> bool:
    return any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute)


def _propagate(graph: onnx.GraphProto, opsets: Mapping[str, int], ir_version: int,
               initial: Mapping[str, np.ndarray], dims: Mapping[str, Sequence[int]]):
    """Known values and static shapes with the inputs fixed to `dims`. onnx shape inference
    stops at a Reshape whose target it cannot see (a target computed by Shape of an activation,
    as GroupNorm and attention exports have): once folding knows such a target, the Reshape's
    output shape is handed back to inference as a hint and inference runs again."""
    known: dict[str, np.ndarray] = dict(initial)
    hints: dict[str, tuple[tuple, int]] = {}
    for _ in range(MAX_INFERENCE_ROUNDS):
        elem_types: dict = {}
        shapes = infer_shapes(graph, opsets, ir_version, dims, elem_types, hints)
        _fold_pass(graph, opsets, ir_version, known, shapes, elem_types)
        new = _shape_hints(graph, known, shapes, elem_types)
        if not set(new) - set(hints):
            break
        hints.update(new)
    return known, shapes


MAX_INFERENCE_ROUNDS = 16


def _shape_hints(graph, known, shapes, elem_types) -> dict[str, tuple[tuple, int]]:
    """Shapes inference left unknown but folding can tell: values it computed (an Unsqueeze
    whose axes come from a Range), and the outputs of Reshapes with a known target."""
    out = {}
    for node in graph.node:
        for name in node.output:
            res = shapes.get(name)
            if name in known and (res is None or any(d is None for d in res)):
                try:
                    elem = helper.np_dtype_to_tensor_dtype(known[name].dtype)
                except (KeyError, TypeError, ValueError):
                    continue
                out[name] = (tuple(int(d) for d in known[name].shape), elem)
    for node in graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.domain not in DEFAULT_DOMAINS:
            continue
        res = shapes.get(node.output[0])
        if res is not None and all(d is not None for d in res):
            continue
        data, target = shapes.get(node.input[0]), known.get(node.input[1])
        dtype = elem_types.get(node.input[0])
        if data is None or any(d is None for d in data) or target is None or not dtype:
            continue
        allowzero = any(a.name == "allowzero" and a.i for a in node.attribute)
        t = [int(x) for x in np.asarray(target).reshape(-1)]
        if not allowzero:
            t = [data[i] if x == 0 and i < len(data) else x for i, x in enumerate(t)]
        try:
            shape = np.empty(tuple(int(d) for d in data), dtype=np.bool_).reshape(t).shape
        except ValueError:
            continue
        out[node.output[0]] = (tuple(int(d) for d in shape), dtype)
    return out


def _fold_pass(graph, opsets, ir_version, known, shapes, elem_types) -> None:
    opset = opsets.get("", opsets.get("ai.onnx", 1))
    for node in graph.node:
        if node.domain not in DEFAULT_DOMAINS or node.op_type in NEVER_FOLD or _has_subgraph(node):
            continue
        outs = [o for o in node.output if o]
        if not outs or all(o in known for o in outs):
            continue
        if node.op_type in ("Shape", "Size") and node.input[0] not in known:
            s = shapes.get(node.input[0])
            if s is not None and all(d is not None for d in s):
                known[node.output[0]] = _shape_value(node, s, opset)
            continue
        if node.op_type == "CastLike" and node.input[0] in known and node.input[1] not in known:
            # the result depends on the second input's type only (the default exporter casts
            # constants "like" the activations)
            target = elem_types.get(node.input[1])
            if target:
                try:
                    known[node.output[0]] = known[node.input[0]].astype(helper.tensor_dtype_to_np_dtype(target))
                except (KeyError, TypeError, ValueError):
                    pass
            continue
        ins = [i for i in node.input if i]
        if all(i in known for i in ins):
            feeds = {i: known[i] for i in ins}
            for name, value in zip(node.output, evaluate_node(node, feeds, opsets, ir_version)):
                if name:
                    known[name] = value


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a, b, equal_nan=True))


def _live_nodes(nodes: list, outputs: Sequence[str]) -> list:
    """Nodes that contribute to `outputs` (dead-code elimination), in their order."""
    needed = set(outputs)
    keep = []
    for node in reversed(nodes):
        if any(o in needed for o in node.output if o):
            keep.append(node)
            needed.update(i for i in node.input if i)
    return keep[::-1]


def _batch_free_reshape(name: str, values: list[np.ndarray], consumers: list, runs_shapes: list,
                        probes: Sequence[int]) -> tuple[np.ndarray, bool]:
    """A Reshape target shape that depends on the batch size -> one that does not, and whether
    the consumers' allowzero flag must be dropped for it."""
    base = values[0].astype(np.int64).reshape(-1)
    differ = sorted({int(i) for v in values[1:] for i in np.nonzero(v.reshape(-1) != base)[0]})
    if len(differ) == 1 and all(v.size == base.size for v in values):
        pos = differ[0]
        others = [int(x) for i, x in enumerate(base) if i != pos]
        allowzero = any(a.name == "allowzero" and a.i for n in consumers for a in n.attribute)
        # with allowzero a 0 in the target means an empty dimension; a target without zeros
        # means the same with or without it, so the flag is dropped where 0 (copy) is written
        zeros_elsewhere = 0 in others
        batch_at = all(int(v.reshape(-1)[pos]) == p for v, p in zip(values, probes))
        data_is_batch = all(shapes.get(n.input[0]) and shapes[n.input[0]][0] == p
                            for n in consumers for shapes, p in zip(runs_shapes, probes))
        out = base.copy()
        if pos == 0 and batch_at and data_is_batch and not (allowzero and zeros_elsewhere):
            out[0] = 0
            return out, allowzero
        if -1 not in others and not (allowzero and zeros_elsewhere):
            out[pos] = -1
            return out, False
    raise DLModelFileError(
        f"the target shape {name!r} of Reshape node(s) {[n.name or n.output[0] for n in consumers]} depends on "
        "the batch size in a way dlbatch cannot express (it trains with any batch size)")


def _free_reshape_batch(remaining: list, constants: dict, shapes: Mapping[str, tuple | None],
                        fixed_batch: int) -> list:
    """A model exported with a fixed batch size B keeps `x.view(B, -1)` as a Reshape to the
    constant [B, ...]: where the data's first dimension is the (free) batch, B becomes 0 (copy
    the input's dimension), so the network takes any batch size."""
    out = []
    for n in remaining:
        if n.op_type == "Reshape" and len(n.input) > 1 and n.input[1] in constants:
            target = constants[n.input[1]]
            data = shapes.get(n.input[0])
            allowzero = any(a.name == "allowzero" and a.i for a in n.attribute)
            if (target.ndim == 1 and target.size and int(target[0]) == fixed_batch and data
                    and data[0] is None and not allowzero):
                fixed = np.array(target, dtype=np.int64, copy=True)
                fixed[0] = 0
                name = f"{n.input[1]}.any_batch"
                constants[name] = fixed
                n2 = onnx.NodeProto()
                n2.CopyFrom(n)
                n2.input[1] = name
                n = n2
        out.append(n)
    used = {i for n in out for i in n.input if i}
    for name in [k for k in constants if k not in used]:
        del constants[name]
    return out


def fold_constants(graph: onnx.GraphProto, opsets: Mapping[str, int], ir_version: int,
                   initializers: Mapping[str, np.ndarray],
                   input_dims: Mapping[str, Sequence[int | None]], fixed_batch: int | None = None) -> Folded:
    """Evaluate everything that does not depend on the graph inputs' values.

    `input_dims` gives each graph input's shape; None marks a free (batch) dimension, which
    is probed with two sizes. A value that differs between the probes depends on the batch
    size: as a Reshape target it becomes a constant with 0 or -1 at the batch entry
    (_batch_free_reshape); otherwise the nodes computing it stay in the graph and run with
    the actual batch (a class token expanded to x.shape[0], say). `fixed_batch` is the batch
    size the file was exported with, if it has one (see _free_reshape_batch). Returns the
    nodes left to run and the constants they read."""
    free = any(d is None for dims in input_dims.values() for d in dims)
    probes = BATCH_PROBES if free else (None,)
    runs = []
    for p in probes:
        dims = {k: [p if d is None else d for d in v] for k, v in input_dims.items()}
        runs.append(_propagate(graph, opsets, ir_version, initializers, dims))
    known_all = set(runs[0][0])
    for known, _ in runs[1:]:
        known_all &= set(known)
    static = {n for n in known_all if all(_same(runs[0][0][n], known[n]) for known, _ in runs[1:])}
    graph_outputs = [o.name for o in graph.output]
    constant_outputs = [o for o in graph_outputs if o in static and o not in initializers]
    remaining = [n for n in graph.node if not all(o in static for o in n.output if o)]
    remaining = _live_nodes(remaining, graph_outputs)
    rewritten: dict[str, np.ndarray] = {}
    clear_allowzero: set[str] = set()
    for name in dict.fromkeys(i for n in remaining for i in n.input if i and i in known_all and i not in static):
        users = [(n, idx) for n in remaining for idx, i in enumerate(n.input) if i == name]
        if not users or not all(n.op_type == "Reshape" and idx == 1 for n, idx in users):
            continue
        values = [known[name] for known, _ in runs]
        try:
            rewritten[name], drop_allowzero = _batch_free_reshape(
                name, values, [n for n, _ in users], [s for _, s in runs], probes)
        except DLModelFileError:
            continue  # computed with the actual batch at run time instead
        if drop_allowzero:
            clear_allowzero.update(n.name or n.output[0] for n, _ in users)
    if rewritten or clear_allowzero:
        remaining = [_without_allowzero(n) if (n.name or n.output[0]) in clear_allowzero else n for n in remaining]
        fixed = static | set(rewritten)
        remaining = _live_nodes([n for n in remaining if not all(o in fixed for o in n.output if o)], graph_outputs)
    batch_input = next((k for k, v in input_dims.items() if len(v) and v[0] is None), None)
    if batch_input is not None:
        remaining = _batch_placeholders(remaining, runs, static | set(rewritten), probes, batch_input,
                                        rewritten, graph_outputs)
    constants: dict[str, np.ndarray] = {}
    read = dict.fromkeys([*(i for n in remaining for i in n.input if i), *constant_outputs])
    for name in read:
        if name in rewritten and name not in static:
            constants[name] = rewritten[name]
        elif name in static:
            constants[name] = runs[0][0][name]
    shapes = dict(runs[0][1])
    if free:
        second = runs[1][1]
        for k, s in shapes.items():
            t = second.get(k)
            if s is not None and t is not None and len(s) == len(t):
                shapes[k] = tuple(a if a == b else None for a, b in zip(s, t))
        if fixed_batch is not None:
            remaining = _free_reshape_batch(remaining, constants, shapes, int(fixed_batch))
    return Folded(nodes=remaining, constants=constants, shapes=shapes)


def _batch_placeholders(remaining: list, runs, fixed: set, probes, image: str, new_constants: dict,
                        graph_outputs) -> list:
    """A batch-dependent integer vector (the target of an Expand over the batch, say
    [N, 1, D] from Shape -> Gather -> Unsqueeze -> Concat -> Where) whose entries are either
    constant or the batch size is recomputed as Concat(Gather(Shape(image), [0]), constants):
    three small nodes instead of the exporter's chain."""
    producers = {o: n for n in remaining for o in n.output if o}
    wanted = dict.fromkeys(i for n in remaining for i in n.input
                           if i and i not in fixed and all(i in known for known, _ in runs))
    added: list = []
    replaced: set[str] = set()
    batch = f"{image}.batch_size"
    for name in wanted:
        values = [np.asarray(known[name]) for known, _ in runs]
        base = values[0]
        prod = producers.get(name)
        if (prod is None or len([o for o in prod.output if o]) != 1 or base.ndim != 1 or base.dtype != np.int64
                or any(v.shape != base.shape or v.dtype != base.dtype for v in values)):
            continue
        differ = {int(i) for v in values[1:] for i in np.nonzero(v != base)[0]}
        if not differ or not all(int(v[i]) == p for v, p in zip(values, probes) for i in differ):
            continue
        if not added:
            new_constants[f"{batch}.index"] = np.array([0], dtype=np.int64)
            added += [helper.make_node("Shape", [image], [f"{image}.shape"], name=f"{image}.shape"),
                      helper.make_node("Gather", [f"{image}.shape", f"{batch}.index"], [batch], name=batch, axis=0)]
        pieces, run = [], []
        for i, x in enumerate(base):
            if i in differ:
                if run:
                    pieces.append(run)
                    run = []
                pieces.append(None)
            else:
                run.append(int(x))
        if run:
            pieces.append(run)
        inputs = []
        for k, piece in enumerate(pieces):
            if piece is None:
                inputs.append(batch)
            else:
                cname = f"{name}.part{k}"
                new_constants[cname] = np.array(piece, dtype=np.int64)
                inputs.append(cname)
        added.append(helper.make_node("Concat", inputs, [name], name=f"{name}.with_batch", axis=0))
        replaced.add(name)
    if not added:
        return remaining
    kept = [n for n in remaining if not any(o in replaced for o in n.output if o)]
    return _live_nodes(added + kept, graph_outputs)


def _without_allowzero(node: onnx.NodeProto) -> onnx.NodeProto:
    n2 = onnx.NodeProto()
    n2.CopyFrom(node)
    for a in list(n2.attribute):
        if a.name == "allowzero":
            n2.attribute.remove(a)
    return n2
