"""Runs a graph node by node with numpy kernels; the tape keeps what each kernel saved.

Beyond running the nodes in order:

* Fusion: a BatchNormalization or Add whose only consumer is a Relu, a BatchNormalization
  whose only consumer is a Clip or HardSwish, and a BatchNormalization -> Relu -> MaxPool
  chain, run as one fused kernel (ops/fused.py) when all nodes use the
  built-in kernels; for inference a Conv followed by a BatchNormalization (and Relu, and
  MaxPool) runs as one convolution with the batch norm folded into its weights. Intermediate values are then never stored; a forward that asks for one
  (`wanted`) runs the unfused node list instead.
* Threads: forward and backward run with BLAS limited to one thread while the kernels split
  their work over the numpy backend's threads (parallel.py).
* Buffers: large activations and gradients come from a per-program pool and are recycled
  once nothing references them (buffers.py), so steps after the first cost no page faults.
* Inference forwards pass needs_input_grad all False (there is no tape), so kernels skip what
  only backward would need.
* Values derived from parameters (batch norm folded into convolution weights) are cached by
  the identity of the parameter arrays (ops/derived.py): like the model, callers of `forward`
  pass new arrays for new values instead of changing arrays in place.
"""
from __future__ import annotations

from typing import Any, Mapping

from ...core.backend import ForwardResult, OpContext, Program, missing_kernel_error
from ...core.errors import DLPluginError
from ...core.kernel_errors import node_error
from ...core.graph import Graph
from . import buffers, parallel


class _Step:
    """One kernel call: a graph node, or a fused chain of nodes."""

    __slots__ = ("op_type", "name", "inputs", "outputs", "attrs", "kernel")

    def __init__(self, op_type, name, inputs, outputs, attrs, kernel):
        self.op_type, self.name, self.inputs, self.outputs = op_type, name, list(inputs), list(outputs)
        self.attrs, self.kernel = attrs, kernel


class _Plan:
    """A step list with what each step needs: gradient flags and the values to free after it."""

    def __init__(self, steps: list[_Step], graph: Graph):
        self.steps = steps
        needs = set(graph.trainable)  # trainable parameters and everything computed from them
        for st in steps:
            if any(i in needs for i in st.inputs if i):
                needs.update(o for o in st.outputs if o)
        self.needs_input_grad = [tuple(bool(i) and i in needs for i in st.inputs) for st in steps]
        last_use: dict[str, int] = {}
        for idx, st in enumerate(steps):
            for i in st.inputs:
                if i:
                    last_use[i] = idx
        keep = set(graph.initializer_names()) | {v.name for v in graph.outputs}
        self.free_after: list[list[str]] = [[] for _ in steps]
        for name, idx in last_use.items():
            if name not in keep:
                self.free_after[idx].append(name)


TRAIN_PATTERNS = [("BatchNormalization", "Relu", "MaxPool"), ("BatchNormalization", "Relu"), ("Add", "Relu"),
                  ("BatchNormalization", "Clip"), ("BatchNormalization", "HardSwish")]
# inference only: batch norm with frozen statistics folds into the convolution before it
INFER_PATTERNS = [("Conv", "BatchNormalization", "Relu", "MaxPool"), ("Conv", "BatchNormalization", "Relu"),
                  ("Conv", "BatchNormalization")] + TRAIN_PATTERNS


def _fuse(graph: Graph, kernels: Mapping[str, Any], patterns) -> tuple[list[_Step], set[str]]:
    """Steps with fusable chains merged, and the names of the values that fusion hides.

    A chain fuses when each link's single output feeds only the next node (as its first input;
    declared outputs that nothing reads do not count)
    and is no graph output, every node uses the built-in kernel, and the later nodes' other
    inputs are initializers (so the fused step can run where the chain starts)."""
    from .ops import KERNELS
    from .ops.fused import FUSED

    builtin = {k.op_type: type(k) for k in KERNELS}
    nodes = graph.nodes
    consumers: dict[str, list[int]] = {}
    for idx, node in enumerate(nodes):
        for i in node.inputs:
            if i:
                consumers.setdefault(i, []).append(idx)
    outputs = {v.name for v in graph.outputs}
    inits = set(graph.initializer_names())
    prefixes = {p[:k] for p in patterns for k in range(1, len(p) + 1)}

    def is_builtin(op):
        return op in kernels and type(kernels[op]) is builtin.get(op)

    def used(name):
        return name in outputs or bool(consumers.get(name))

    def single_output(node):
        """The node's one used output (optional outputs nobody reads, such as the running
        statistics of a training-form BatchNormalization export, do not count), or None."""
        real = [o for o in node.outputs if o]
        if not real or real[0] != node.outputs[0] or any(used(o) for o in real[1:]):
            return None
        return real[0]

    def next_link(idx):
        out = single_output(nodes[idx])
        if out is None or out in outputs:
            return None
        real = [out]
        uses = consumers.get(real[0], [])
        if len(uses) != 1:
            return None
        nxt = nodes[uses[0]]
        if not nxt.inputs or nxt.inputs[0] != real[0] or not is_builtin(nxt.op_type):
            return None
        if any(i == real[0] or (i and i not in inits) for i in nxt.inputs[1:]):
            return None
        return uses[0]

    taken: set[int] = set()
    chains: dict[int, list[int]] = {}
    hidden: set[str] = set()
    for idx, node in enumerate(nodes):
        if idx in taken or not is_builtin(node.op_type):
            continue
        chain = [idx]
        while True:
            j = next_link(chain[-1])
            if j is None or j in taken or tuple(nodes[i].op_type for i in chain + [j]) not in prefixes:
                break
            chain.append(j)
        # the fused kernels produce one output: the chain's last node may not have more
        while len(chain) > 1 and (tuple(nodes[i].op_type for i in chain) not in patterns
                                  or single_output(nodes[chain[-1]]) is None):
            chain.pop()
        if len(chain) > 1:
            chains[idx] = chain
            taken.update(chain)
            for i in chain[:-1]:
                hidden.update(o for o in nodes[i].outputs if o)
    steps = []
    for idx, node in enumerate(nodes):
        if idx in chains:
            links = [nodes[i] for i in chains[idx]]
            kernel = FUSED[tuple(n.op_type for n in links)]
            inputs = list(node.inputs) + [i for n in links[1:] for i in n.inputs[1:]]
            steps.append(_Step(kernel.op_type, node.name or links[-1].name, inputs, links[-1].outputs,
                               tuple((n.attrs, len(n.inputs)) for n in links), kernel))
        elif idx not in taken:
            steps.append(_Step(node.op_type, node.name, node.inputs, node.outputs, node.attrs,
                               kernels[node.op_type]))
    return steps, hidden


class NumpyProgram(Program):
    def __init__(self, graph: Graph, kernels: Mapping[str, Any], dtype: str, rng_source):
        err = missing_kernel_error(graph, kernels, "numpy")
        if err:
            raise err
        self.graph = graph
        self.dtype = dtype
        self._rng_source = rng_source
        plain = [_Step(n.op_type, n.name, n.inputs, n.outputs, n.attrs, kernels[n.op_type]) for n in graph.nodes]
        self._plain = _Plan(plain, graph)
        fused, self._hidden = _fuse(graph, kernels, TRAIN_PATTERNS)
        self._fused = _Plan(fused, graph) if self._hidden else self._plain
        infer, self._hidden_infer = _fuse(graph, kernels, INFER_PATTERNS)
        self._infer = _Plan(infer, graph) if self._hidden_infer else self._plain
        self._pool = buffers.BufferPool()

    def forward(self, values, inputs, *, training, bn_momentum=0.9, wanted=None) -> ForwardResult:
        graph = self.graph
        wanted = tuple(wanted) if wanted else tuple(v.name for v in graph.outputs)
        if training:
            plan = self._plain if self._hidden.intersection(wanted) else self._fused
        else:
            plan = self._plain if self._hidden_infer.intersection(wanted) else self._infer
        env: dict[str, Any] = dict(values)
        env.update(inputs)
        stats: dict[str, Any] = {}
        tape = [] if training else None
        rng = self._rng_source() if training else None
        self._pool.new_generation()
        with parallel.blas_single_threaded(), self._pool:
            for idx, st in enumerate(plan.steps):
                ins = [env[i] if i else None for i in st.inputs]
                # without a tape nothing will ask for gradients: kernels may skip what only
                # backward needs (explicit False per input; an empty tuple would mean "all")
                ngrad = plan.needs_input_grad[idx] if training else (False,) * len(st.inputs)
                ctx = OpContext(training=training, bn_momentum=bn_momentum,
                                needs_input_grad=ngrad, rng=rng, opset=graph.opset, num_outputs=len(st.outputs))
                try:
                    outs, saved = st.kernel.forward(ctx, ins, st.attrs)
                except Exception as exc:
                    raise node_error(exc, st.name, st.op_type, "numpy", "forward")
                for i, value in ctx.statistic_updates.items():
                    stats[st.inputs[i]] = value
                for name, out in zip(st.outputs, outs):
                    if name:
                        env[name] = out
                if tape is not None and any(ctx.needs_input_grad):
                    tape.append((st, ctx, saved))
                for name in plan.free_after[idx]:
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
        with parallel.blas_single_threaded(), self._pool:
            while tape:
                st, ctx, saved = tape.pop()
                gouts = [grads.pop(o, None) if o else None for o in st.outputs]
                if all(g is None for g in gouts):
                    continue
                try:
                    gins = st.kernel.backward(ctx, saved, gouts, st.attrs)
                except Exception as exc:
                    raise node_error(exc, st.name, st.op_type, "numpy", "backward")
                del saved, gouts
                for name, g, need in zip(st.inputs, gins, ctx.needs_input_grad):
                    if need and g is not None:
                        prev = grads.get(name)
                        grads[name] = g if prev is None else prev + g
        return {n: grads[n] for n in self.graph.trainable if n in grads}
