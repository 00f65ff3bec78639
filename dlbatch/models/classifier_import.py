"""A classifier network made elsewhere (e.g. torch.onnx.export) as a classification model.

The network must end in class scores N x K (optionally behind a Softmax over the classes, in
which case the loss reads the Softmax input); scores N x K x 1 x 1 or N x 1 x 1 x K are
flattened to N x K. When the scores come from a fully connected layer,
that layer is recorded as the head, so a new class count re-initialises it (HALCON behaviour).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import DLModelFileError
from ..core.graph import Graph, Node, ValueInfo
from ..core.model_type import ForeignModel


def _softmax_over_classes(node: Node, rank: int, opset: int) -> bool:
    axis = int(node.attrs.get("axis", -1 if opset >= 13 else 1))
    return rank == 2 and axis in (1, -1)


def _use_counts(graph: Graph) -> dict[str, int]:
    uses: dict[str, int] = {}
    for n in graph.nodes:
        for i in n.inputs:
            uses[i] = uses.get(i, 0) + 1
    return uses


def _gemm_head(graph: Graph, values: dict, node: Node, uses: dict) -> tuple[str | None, str | None]:
    trainable = set(graph.trainable)
    if len(node.inputs) < 2 or node.inputs[1] not in trainable or int(node.attrs.get("transA", 0)):
        return None, None
    w = node.inputs[1]
    if values[w].ndim != 2:
        return None, None
    if not int(node.attrs.get("transB", 0)):
        if uses.get(w, 0) != 1:
            return None, None
        values[w] = np.ascontiguousarray(values[w].T)
        node.attrs["transB"] = 1
    b = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] in trainable else None
    if b is not None and values[b].shape != (values[w].shape[0],):
        b = None
    return w, b


def _matmul_add_head(graph: Graph, values: dict, node: Node, uses: dict) -> tuple[str | None, str | None]:
    """MatMul(x, W) + b  ->  Gemm(x, W^T, b, transB=1): the same numbers, one node."""
    trainable = set(graph.trainable)
    mm = next((graph.producer(i) for i in node.inputs if graph.producer(i) is not None), None)
    bias = next((i for i in node.inputs if i in trainable), None)
    if mm is None or mm.op_type != "MatMul" or bias is None or uses.get(mm.outputs[0]) != 1:
        return None, None
    w = next((i for i in mm.inputs if i in trainable), None)
    x = next((i for i in mm.inputs if i != w), None)
    if w is None or x is None or mm.inputs[1] != w or values[w].ndim != 2 or uses.get(w) != 1 \
            or values[bias].shape != (values[w].shape[1],):
        return None, None
    values[w] = np.ascontiguousarray(values[w].T)
    idx = graph.nodes.index(mm)
    graph.nodes.remove(node)
    graph.nodes[idx] = Node("Gemm", [x, w, bias], list(node.outputs), {"transB": 1}, mm.name)
    return w, bias


def find_head(graph: Graph, values: dict, logits: str) -> tuple[str | None, str | None]:
    """(head weight, head bias) when the logits come from a fully connected layer, with the
    weight normalised to the (K, features) layout dlbatch's classification head uses."""
    node = graph.producer(logits)
    uses = _use_counts(graph)
    if node is not None and node.op_type == "Gemm":
        return _gemm_head(graph, values, node, uses)
    if node is not None and node.op_type == "Add":
        return _matmul_add_head(graph, values, node, uses)
    return None, None


def _scores_as_nk(graph: Graph, out: ValueInfo) -> ValueInfo:
    """Class scores N x K x 1 x 1 (a 1x1 convolution and global pooling, no flatten) or
    N x 1 x 1 x K -> N x K: a Flatten is appended and takes over the output's name, so the
    network's own output keeps its meaning."""
    shape = tuple(out.shape)
    if len(shape) < 3 or any(d is None for d in shape[1:]):
        return out
    rest = [d for d in shape[1:] if d != 1]
    if len(rest) != 1:
        return out
    inner = f"{out.name}.unflattened"
    taken = {o for n in graph.nodes for o in n.outputs} | {i for n in graph.nodes for i in n.inputs}
    while inner in taken:
        inner += "_"
    for n in graph.nodes:
        n.inputs = [inner if i == out.name else i for i in n.inputs]
        n.outputs = [inner if o == out.name else o for o in n.outputs]
    graph.nodes.append(Node("Flatten", [inner], [out.name], {"axis": 1}, f"{out.name}/flatten_to_NxK"))
    flat = ValueInfo(out.name, (shape[0], rest[0]), out.dtype)
    graph.outputs = [flat if o.name == out.name else o for o in graph.outputs]
    return flat


def classifier_from_network(network) -> ForeignModel:
    """A core.onnx_foreign.ForeignNetwork -> the graph, values, metadata and derived
    hyperparameters of a classification model."""
    graph, values, path = network.graph, network.values, network.path
    if len(graph.outputs) != 1:
        raise DLModelFileError(f"{path}: a classifier needs exactly one output (class scores N x K); this "
                               f"graph has {len(graph.outputs)} ({[o.name for o in graph.outputs]})")
    out = _scores_as_nk(graph, graph.outputs[0])
    if len(out.shape) != 2 or out.shape[1] is None or out.shape[1] < 1:
        raise DLModelFileError(f"{path}: output {out.name!r} has shape {out.shape}; an importable classifier "
                               "ends in class scores of shape N x K (K known)")
    k = int(out.shape[1])
    graph.outputs = [ValueInfo(out.name, (None, k), out.dtype)]
    meta: dict[str, Any] = {"input": network.input_name, "logits": out.name}
    last = graph.producer(out.name)
    if last is not None and last.op_type == "Softmax" and _softmax_over_classes(last, 2, graph.opset):
        meta.update(logits=last.inputs[0], output=out.name, output_is_probability=True)
    head_w, head_b = find_head(graph, values, meta["logits"])
    if head_w:
        meta["head_weight"] = head_w
    if head_b:
        meta["head_bias"] = head_b
    meta["backbone"] = f"onnx:{network.name}"
    return ForeignModel(graph, values, meta, {"class_ids": list(range(k))})
