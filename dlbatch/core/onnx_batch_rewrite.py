"""Files exported with a fixed batch size (torch.onnx.export with an example batch of 1 and no
dynamic axes) bake that batch into constants. dlbatch trains with any batch size, so before
folding, such a graph is made batch-free where the batch can be proven:

- `Reshape` to a constant target [B, ...] (the default exporter writes `x.view(x.size(0), -1)`
  and `x.flatten(1)` this way) whose data carries the batch in dimension 0 and whose other
  entries account for exactly the data's other dimensions: B becomes 0 (copy the batch).
- `Concat` along a non-batch axis of a batch-carrying tensor and a constant with leading
  dimension 1 (a class token `torch.cat((cls, x), 1)` traced at batch 1): the constant is
  broadcast over the batch, `Expand(c, Concat(Shape(x)[:1], shape(c)[1:]))`, so it stays one
  trainable tensor.

"The batch" is found by shape inference with the image batch set to two probe sizes: a dimension
equal to the probe in both runs is the batch. After the rewrite the graph's outputs must carry
the batch in dimension 0; where they do not, the read is refused naming the first node that
loses it (a crash at the first batch of 4 would be worse).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .errors import DLModelFileError
from .onnx_fold import BATCH_PROBES
from .onnx_reference import infer_shapes


def _constant_values(graph: onnx.GraphProto, initial: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    values = dict(initial)
    for n in graph.node:
        if n.op_type == "Constant" and n.output and n.domain in ("", "ai.onnx"):
            for a in n.attribute:
                if a.name == "value":
                    values[n.output[0]] = numpy_helper.to_array(a.t)
                elif a.name == "value_ints":
                    values[n.output[0]] = np.array(list(a.ints), dtype=np.int64)
                elif a.name == "value_int":
                    values[n.output[0]] = np.array(a.i, dtype=np.int64)
    return values


def _is_batch(shapes: Sequence[Mapping], name: str, probes: Sequence[int]) -> bool:
    return all((s.get(name) or (None,))[0] == p for s, p in zip(shapes, probes))


def _static_rest(shapes: Sequence[Mapping], name: str) -> tuple | None:
    """The dimensions after the first, when known and equal in every probe run."""
    rests = [tuple((s.get(name) or (None,))[1:]) for s in shapes]
    if not rests[0] or any(d is None for d in rests[0]) or any(r != rests[0] for r in rests):
        return None
    return rests[0]


def _fits(target: np.ndarray, rest: tuple, allowzero: bool) -> bool:
    """Whether target[1:] reshapes a tensor of shape (B, *rest) per sample."""
    size = int(np.prod(rest)) if rest else 1
    dims = []
    for i, t in enumerate(int(x) for x in target[1:]):
        if t == 0:
            if allowzero or i + 1 >= len(rest) + 1:
                return False
            t = rest[i]
        dims.append(t)
    if dims.count(-1) > 1 or any(d < -1 for d in dims):
        return False
    known = int(np.prod([d for d in dims if d != -1])) if dims else 1
    if -1 in dims:
        return known > 0 and size % known == 0
    return known == size


def _slice_first(opset: int, shape_name: str, out: str, prefix: str, inits: list) -> list:
    """Nodes computing `out` = `shape_name`[:1] for the file's opset."""
    if opset >= 10:
        names = [f"{prefix}.starts", f"{prefix}.ends", f"{prefix}.axes"]
        for n, v in zip(names, ([0], [1], [0])):
            inits.append(numpy_helper.from_array(np.array(v, dtype=np.int64), n))
        return [helper.make_node("Slice", [shape_name, *names], [out], name=f"{prefix}/Slice")]
    return [helper.make_node("Slice", [shape_name], [out], name=f"{prefix}/Slice", starts=[0], ends=[1], axes=[0])]


def free_fixed_batch(graph: onnx.GraphProto, opsets: Mapping[str, int], ir_version: int,
                     initial: Mapping[str, np.ndarray], input_dims: Mapping[str, Sequence[int | None]],
                     fixed_batch: int, where: str) -> onnx.GraphProto:
    """A copy of `graph` that runs with any batch size (see the module docstring), or the
    graph itself when nothing had to change. `input_dims` has None for the batch dimension."""
    opset = opsets.get("", opsets.get("ai.onnx", 1))
    g = onnx.GraphProto()
    g.CopyFrom(graph)
    probes = BATCH_PROBES
    changed_any = False
    for _ in range(len(g.node) + 1):
        values = _constant_values(g, initial)
        shapes = [infer_shapes(g, opsets, ir_version, {k: [p if d is None else d for d in v]
                                                      for k, v in input_dims.items()}) for p in probes]
        changed = False
        new_nodes: list = []
        for original in g.node:
            node = onnx.NodeProto()
            node.CopyFrom(original)
            if node.domain not in ("", "ai.onnx"):
                new_nodes.append(node)
                continue
            if node.op_type == "Reshape" and len(node.input) > 1 and node.input[1] in values:
                target = np.asarray(values[node.input[1]])
                allowzero = any(a.name == "allowzero" and a.i for a in node.attribute)
                rest = _static_rest(shapes, node.input[0])
                if (target.ndim == 1 and target.size and int(target[0]) == fixed_batch
                        and _is_batch(shapes, node.input[0], probes) and rest is not None
                        and _fits(target, rest, allowzero)
                        and not _is_batch(shapes, node.output[0], probes)):
                    fixed = np.array(target, dtype=np.int64, copy=True)
                    fixed[0] = 0
                    if allowzero:  # no other 0 (checked by _fits): the flag changes nothing else
                        for a in list(node.attribute):
                            if a.name == "allowzero":
                                node.attribute.remove(a)
                    name = f"{node.input[1]}.any_batch"
                    g.initializer.append(numpy_helper.from_array(fixed, name))
                    node.input[1] = name
                    changed = True
            elif node.op_type == "Concat" and fixed_batch == 1:
                axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
                carriers = [i for i in node.input if i and _is_batch(shapes, i, probes)]
                rank = len(shapes[0].get(carriers[0]) or ()) if carriers else 0
                if carriers and rank and axis % rank != 0:
                    for k, name in enumerate(node.input):
                        if name not in values or name in carriers:
                            continue
                        c = np.asarray(values[name])
                        if c.ndim != rank or c.shape[0] != 1:
                            continue
                        prefix = f"{node.name or node.output[0]}.batch_broadcast_{k}"
                        inits: list = []
                        shape_out, first, full, out = (f"{prefix}.shape", f"{prefix}.batch", f"{prefix}.target",
                                                       f"{prefix}.expanded")
                        rest_name = f"{prefix}.rest"
                        inits.append(numpy_helper.from_array(np.array(c.shape[1:], dtype=np.int64), rest_name))
                        added = [helper.make_node("Shape", [carriers[0]], [shape_out], name=f"{prefix}/Shape")]
                        added += _slice_first(opset, shape_out, first, prefix, inits)
                        added.append(helper.make_node("Concat", [first, rest_name], [full], name=f"{prefix}/Concat",
                                                      axis=0))
                        added.append(helper.make_node("Expand", [name, full], [out], name=f"{prefix}/Expand"))
                        g.initializer.extend(inits)
                        new_nodes.extend(added)
                        node.input[k] = out
                        changed = True
            new_nodes.append(node)
        if changed:
            del g.node[:]
            g.node.extend(new_nodes)
            changed_any = True
            continue
        _check_outputs_carry_batch(g, shapes, probes, fixed_batch, where)
        break
    return g if changed_any else graph


def _check_outputs_carry_batch(g: onnx.GraphProto, shapes, probes, fixed_batch: int, where: str) -> None:
    outputs = [o.name for o in g.output]
    lost = [o for o in outputs if all(s.get(o) for s in shapes) and not _is_batch(shapes, o, probes)]
    if not lost:
        return
    culprit = None
    for node in g.node:
        ins = [i for i in node.input if i and _is_batch(shapes, i, probes)]
        outs = [o for o in node.output if o and all(s.get(o) for s in shapes)]
        if ins and outs and not any(_is_batch(shapes, o, probes) for o in outs):
            culprit = node
            break
    at = (f"node {culprit.name or culprit.output[0]!r} ({culprit.op_type})" if culprit is not None
          else "a node dlbatch could not locate")
    raise DLModelFileError(
        f"{where}: the network was exported with a fixed batch size of {fixed_batch}, and {at} keeps that "
        f"batch size as a constant in a way dlbatch cannot prove to be the batch; dlbatch trains with any "
        "batch size. Export with a dynamic batch instead: torch.onnx.export(..., dynamo=True, "
        "dynamic_shapes=({0: torch.export.Dim('batch')},)) or, with dynamo=False, "
        "dynamic_axes={'input': {0: 'batch'}, 'output': {0: 'batch'}}")
