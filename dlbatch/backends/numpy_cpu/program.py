"""Runs a graph node by node with numpy kernels; the tape keeps what each kernel saved."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ...core.backend import ForwardResult, OpContext, Program
from ...core.errors import DLPluginError
from ...core.graph import Graph


def missing_kernel_error(graph: Graph, kernels: Mapping[str, Any], backend: str) -> DLPluginError | None:
    """The error for the first node whose op has no kernel on `backend`, or None."""
    for node in graph.nodes:
        if node.op_type not in kernels:
            return DLPluginError(
                f"node {node.name or node.outputs[0]!r}: op {node.op_type!r} is not supported by the "
                f"{backend} backend; supported ops: {', '.join(sorted(kernels))}. A plugin can add it "
                f"with the dlbatch_register_ops hook")
    return None


class NumpyProgram(Program):
    def __init__(self, graph: Graph, kernels: Mapping[str, Any], dtype: str, rng_source):
        err = missing_kernel_error(graph, kernels, "numpy")
        if err:
            raise err
        self.graph = graph
        self.dtype = dtype
        self._kernels = [kernels[n.op_type] for n in graph.nodes]
        self._rng_source = rng_source
        trainable = set(graph.trainable)
        # which values carry a gradient: trainable parameters and everything computed from them
        self._needs = needs = set(trainable)
        for node in graph.nodes:
            if any(i in needs for i in node.inputs if i):
                needs.update(node.outputs)
        self._needs_input_grad = [tuple(bool(i) and i in needs for i in n.inputs) for n in graph.nodes]
        # free each activation after its last use (peak memory)
        last_use: dict[str, int] = {}
        for idx, node in enumerate(graph.nodes):
            for i in node.inputs:
                if i:
                    last_use[i] = idx
        keep = set(graph.initializer_names()) | {v.name for v in graph.outputs}
        self._free_after = [[] for _ in graph.nodes]
        for name, idx in last_use.items():
            if name not in keep:
                self._free_after[idx].append(name)

    def forward(self, values, inputs, *, training, bn_momentum=0.9, wanted=None) -> ForwardResult:
        graph = self.graph
        wanted = tuple(wanted) if wanted else tuple(v.name for v in graph.outputs)
        env: dict[str, Any] = dict(values)
        env.update(inputs)
        stats: dict[str, Any] = {}
        tape = [] if training else None
        rng = self._rng_source() if training else None
        for idx, (node, kernel) in enumerate(zip(graph.nodes, self._kernels)):
            ins = [env[i] if i else None for i in node.inputs]
            ctx = OpContext(training=training, bn_momentum=bn_momentum,
                            needs_input_grad=self._needs_input_grad[idx], rng=rng, opset=graph.opset)
            outs, saved = kernel.forward(ctx, ins, node.attrs)
            for i, value in ctx.statistic_updates.items():
                stats[node.inputs[i]] = value
            for name, out in zip(node.outputs, outs):
                if name:
                    env[name] = out
            if tape is not None and any(ctx.needs_input_grad):
                tape.append((idx, ctx, saved))
            for name in self._free_after[idx]:
                if name not in wanted:
                    env.pop(name, None)
        missing = [w for w in wanted if w not in env]
        if missing:
            raise DLPluginError(f"the graph has no value named {missing}; outputs are "
                                f"{[v.name for v in graph.outputs]}")
        return ForwardResult(outputs={w: env[w] for w in wanted}, statistics=stats, tape=tape)

    def backward(self, tape, output_grads) -> dict:
        if tape is None:
            raise DLPluginError("backward needs the tape of a training forward (training=True)")
        grads: dict[str, Any] = dict(output_grads)
        nodes = self.graph.nodes
        while tape:
            idx, ctx, saved = tape.pop()
            node = nodes[idx]
            gouts = [grads.pop(o, None) if o else None for o in node.outputs]
            if all(g is None for g in gouts):
                continue
            gins = self._kernels[idx].backward(ctx, saved, gouts, node.attrs)
            for name, g, need in zip(node.inputs, gins, ctx.needs_input_grad):
                if need and g is not None:
                    prev = grads.get(name)
                    grads[name] = g if prev is None else prev + g
        return {n: grads[n] for n in self.graph.trainable if n in grads}
