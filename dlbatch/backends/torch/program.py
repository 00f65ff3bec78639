"""Runs a graph node by node with torch kernels. A training forward makes the trainable
parameters autograd leaves; the tape is (attached outputs, leaves) and backward is one
`torch.autograd.grad` call from the given output gradients.

A program compiled for an autocast precision (bfloat16) runs the forward under
`torch.autocast(device type, bfloat16)` over float32 values and inputs: autocast's own op lists
decide (convolutions and matrix products in bfloat16, reductions, softmax and normalisation
statistics in float32). Floating graph outputs are cast to float32 on the tape, so losses are
computed in float32 and their gradients flow back through the cast; the float32 leaves receive
float32 gradients, and batch-norm statistics are kept in the type of the running values.
"""
from __future__ import annotations

import contextlib
from typing import Any, Mapping

from ...core.backend import ForwardResult, Program, missing_kernel_error
from ...core.errors import DLPluginError
from ...core.kernel_errors import node_error
from ...core.graph import Graph
from ._lazy import require_torch
from .kernel import TorchOpContext


# precisions a program computes in under autocast (the values stay float32)
AUTOCAST_DTYPES = ("bfloat16",)


def _like(value, running):
    """A new statistic in the type of the running value it replaces (float32 under autocast)."""
    if running is not None and hasattr(running, "dtype") and value.dtype != running.dtype:
        return value.to(running.dtype)
    return value


class TorchTape:
    """What backward needs: graph outputs still attached to autograd, and the parameter leaves."""

    __slots__ = ("outputs", "leaves")

    def __init__(self, outputs: dict, leaves: dict) -> None:
        self.outputs = outputs
        self.leaves = leaves


class _Step:
    __slots__ = ("node", "kernel", "attrs", "inputs", "outputs", "host", "free", "label", "plan")

    def __init__(self, node, kernel, host, free):
        self.node = node
        self.kernel = kernel
        self.attrs = node.attrs
        self.inputs = tuple(node.inputs)
        self.outputs = tuple(node.outputs)
        self.host = host
        self.free = free
        self.label = f"node {node.name or node.outputs[0]!r} ({node.op_type})"
        self.plan: dict = {}  # the kernel's memo of what its attributes give for seen shapes


class TorchProgram(Program):
    def __init__(self, graph: Graph, kernels: Mapping[str, Any], *, device: str, dtype: str, backend) -> None:
        err = missing_kernel_error(graph, kernels, "torch")
        if err:
            raise err
        self._torch = torch = require_torch()
        self.graph = graph
        self.device = device
        self.dtype = dtype
        self._autocast = getattr(torch, dtype) if dtype in AUTOCAST_DTYPES else None
        self._backend = backend
        self._device = torch.device(device)
        self._on_cpu = self._device.type == "cpu"
        self._outputs = tuple(v.name for v in graph.outputs)
        self._trainable = tuple(graph.trainable)
        self._constants = frozenset(graph.constants)
        self._host_cache: dict[str, tuple] = {}
        last_use: dict[str, int] = {}
        for idx, node in enumerate(graph.nodes):
            for i in node.inputs:
                if i:
                    last_use[i] = idx
        keep = set(graph.initializer_names()) | set(self._outputs)
        free: list[list[str]] = [[] for _ in graph.nodes]
        for name, idx in last_use.items():
            if name not in keep:
                free[idx].append(name)
        self._steps = []
        for idx, node in enumerate(graph.nodes):
            kernel = kernels[node.op_type]
            kernel = kernel.resolve() if hasattr(kernel, "resolve") else kernel
            host = tuple(i for i in getattr(kernel, "host_inputs", ()) if i < len(node.inputs))
            self._steps.append(_Step(node, kernel, host, tuple(free[idx])))

    # -- helpers ------------------------------------------------------------------------------
    def _host(self, name: str, value):
        """A CPU copy of an input read as Python numbers (cached for graph constants); a value
        that needs a gradient stays as it is (the kernel then takes its tensor path)."""
        if (self._on_cpu or value is None or not hasattr(value, "device") or value.device.type == "cpu"
                or value.requires_grad):
            return value
        if name in self._constants:
            cached = self._host_cache.get(name)
            if cached is not None and cached[0] is value:
                return cached[1]
            host = value.detach().cpu()
            self._host_cache[name] = (value, host)
            return host
        return value.detach().cpu()

    def _cpu_layout(self, value):
        """4-D float inputs on the CPU in channels_last memory (the logical shape stays NCHW):
        oneDNN's convolutions then produce channels_last outputs and the whole network runs in
        that layout, in which pooling, batch norm and ReLU are much faster than in NCHW memory
        (compact 16x3x64x64 training step: 77 against 90 ms)."""
        torch = self._torch
        if isinstance(value, torch.Tensor) and value.dim() == 4 and value.is_floating_point():
            return value.contiguous(memory_format=torch.channels_last)
        return value

    # -- running ------------------------------------------------------------------------------
    def forward(self, values, inputs, *, training, bn_momentum=0.9, wanted=None) -> ForwardResult:
        torch = self._torch
        wanted = tuple(wanted) if wanted else self._outputs
        wanted_set = set(wanted)
        env: dict[str, Any] = dict(values)
        env.update(inputs if not self._on_cpu else {n: self._cpu_layout(v) for n, v in inputs.items()})
        leaves: dict[str, Any] = {}
        if training:
            for n in self._trainable:
                leaf = env[n].detach().requires_grad_(True)
                env[n] = leaf
                leaves[n] = leaf
        stats: dict[str, Any] = {}
        rng = self._backend.generator(self.device) if training else None
        opset = self.graph.opset
        with torch.set_grad_enabled(training), self._autocast_context():
            for step in self._steps:
                ins = [env[i] if i else None for i in step.inputs]
                for h in step.host:
                    ins[h] = self._host(step.inputs[h], ins[h])
                ctx = TorchOpContext(training=training, bn_momentum=bn_momentum, opset=opset,
                                     num_outputs=len(step.outputs), device=self._device, rng=rng,
                                     plan=step.plan)
                try:
                    outs = step.kernel.forward(ctx, ins, step.attrs)
                except Exception as exc:
                    raise node_error(exc, step.node.name or step.outputs[0], step.node.op_type, "torch",
                                     "forward")
                for i, value in ctx.statistic_updates.items():
                    stats[step.inputs[i]] = _like(value.detach(), values.get(step.inputs[i]))
                for name, out in zip(step.outputs, outs):
                    if name:
                        env[name] = out
                for name in step.free:
                    if name not in wanted_set:
                        env.pop(name, None)
        missing = [w for w in wanted if w not in env]
        if missing:
            raise DLPluginError(f"the graph has no value named {missing}; outputs are {list(self._outputs)}")
        attached = {w: env[w] for w in wanted}
        if self._autocast is not None:  # losses and results in float32, never in bfloat16
            attached = {w: t.float() if t.dtype == self._autocast else t for w, t in attached.items()}
        outputs = {w: t.detach() if training else t for w, t in attached.items()}
        tape = TorchTape(attached, leaves) if training else None
        return ForwardResult(outputs=outputs, statistics=stats, tape=tape)

    def _autocast_context(self):
        if self._autocast is None:
            return contextlib.nullcontext()
        return self._torch.autocast(device_type=self._device.type, dtype=self._autocast)

    def backward(self, tape, output_grads) -> dict:
        if tape is None or not isinstance(tape, TorchTape):
            raise DLPluginError("backward needs the tape of a training forward (training=True)")
        if tape.leaves is None:
            raise DLPluginError("this tape was already used by backward; run forward again")
        torch = self._torch
        outs, gouts = [], []
        for name, g in output_grads.items():
            if name not in tape.outputs:
                raise DLPluginError(f"backward got a gradient for {name!r}, which the forward did not "
                                    f"return; it returned {sorted(tape.outputs)}")
            out = tape.outputs[name]
            if g is None or not out.requires_grad:
                continue
            if not isinstance(g, torch.Tensor):
                g = torch.as_tensor(g)
            if g.dtype != out.dtype or g.device != out.device:
                g = g.to(device=out.device, dtype=out.dtype)
            if tuple(g.shape) != tuple(out.shape):
                g = g.expand(out.shape)
            outs.append(out)
            gouts.append(g)
        names = list(tape.leaves)
        leaves = [tape.leaves[n] for n in names]
        tape.leaves = None
        tape.outputs = {}
        if not outs or not leaves:
            return {}
        try:
            grads = torch.autograd.grad(outs, leaves, gouts, allow_unused=True)
        except Exception as exc:
            raise node_error(exc, None, None, "torch", "backward")
        return {n: g for n, g in zip(names, grads) if g is not None}
