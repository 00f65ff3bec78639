"""The model graph: ONNX-shaped nodes with attributes, and the names of its parameters.

The graph holds structure only. Values live in the model (trainable parameters, batch-norm
statistics, constants), so a backend can keep them in its own array type.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Node:
    """One ONNX operator application. Empty input names mark omitted optional inputs."""

    op_type: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    domain: str = ""


@dataclass
class ValueInfo:
    """A graph input or output: name, shape (None for a free dimension) and element type."""

    name: str
    shape: tuple
    dtype: str = "float32"


@dataclass
class Graph:
    """Nodes in topological order, graph inputs/outputs and the roles of the initializers.

    `trainable` names the parameters the solver updates, `statistics` the batch-norm running
    statistics (updated by training forward passes, never by the solver), `constants` every
    other initializer (shapes, fixed tensors).
    """

    nodes: list[Node]
    inputs: list[ValueInfo]
    outputs: list[ValueInfo]
    trainable: list[str]
    statistics: list[str] = field(default_factory=list)
    constants: list[str] = field(default_factory=list)
    opset: int = 17

    def initializer_names(self) -> list[str]:
        return [*self.trainable, *self.statistics, *self.constants]

    def producer(self, name: str) -> Node | None:
        """The node that outputs tensor `name` (None for inputs and initializers)."""
        for node in self.nodes:
            if name in node.outputs:
                return node
        return None

    def needed_nodes(self, outputs) -> list[Node]:
        """The nodes the tensors `outputs` depend on, in the graph's order."""
        needed = set(outputs)
        keep = []
        for node in reversed(self.nodes):
            if needed.intersection(node.outputs):
                keep.append(node)
                needed.update(i for i in node.inputs if i)
        return keep[::-1]

    def restricted_to(self, outputs: list[ValueInfo]) -> "Graph":
        """A copy whose outputs are `outputs`, holding only the nodes they need and the
        initializers (roles kept) and inputs those nodes read: what is not computed for an
        output is neither run nor trained."""
        nodes = self.copy().needed_nodes([o.name for o in outputs])
        read = {i for n in nodes for i in n.inputs if i}
        return Graph(nodes=nodes, inputs=[vi for vi in self.inputs if vi.name in read], outputs=list(outputs),
                     trainable=[k for k in self.trainable if k in read],
                     statistics=[k for k in self.statistics if k in read],
                     constants=[k for k in self.constants if k in read], opset=self.opset)

    def op_types(self) -> set[str]:
        return {n.op_type for n in self.nodes}

    def copy(self) -> "Graph":
        return Graph(
            nodes=[Node(n.op_type, list(n.inputs), list(n.outputs), dict(n.attrs), n.name, n.domain)
                   for n in self.nodes],
            inputs=list(self.inputs),
            outputs=list(self.outputs),
            trainable=list(self.trainable),
            statistics=list(self.statistics),
            constants=list(self.constants),
            opset=self.opset,
        )
