"""The model graph: ONNX-shaped nodes with attributes, and the names of its parameters.

The graph holds structure only. Values live in the model (trainable parameters, batch-norm
statistics, constants), so a backend can keep them in its own array type. A model type's
`build` returns a Graph; a backend's `compile` turns one into a Program.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Node", "ValueInfo", "Graph"]


@dataclass
class Node:
    """One ONNX operator application.

    Attributes:
        op_type: the ONNX op ("Conv", "Relu", ...); a backend needs a kernel for it.
        inputs: tensor names read, in the op's order; "" marks an omitted optional input.
        outputs: tensor names written.
        attrs: the ONNX attributes (absent ones take the ONNX default).
        name: the node's name, used in error messages.
        domain: the op's domain ("" for ai.onnx).

    Examples:
        >>> Node("Relu", ["x"], ["y"], name="act").attrs
        {}
    """

    op_type: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    domain: str = ""


@dataclass
class ValueInfo:
    """A graph input or output.

    Attributes:
        name: the tensor's name.
        shape: its dimensions, None for a free one (the batch, a variable image size).
        dtype: its element type name.

    Examples:
        >>> ValueInfo("image", (None, 3, 32, 32)).dtype
        'float32'
    """

    name: str
    shape: tuple
    dtype: str = "float32"


@dataclass
class Graph:
    """Nodes in topological order, graph inputs/outputs and the roles of the initializers.

    Attributes:
        nodes: the nodes, each after the nodes whose outputs it reads.
        inputs: the graph inputs (the image, ...).
        outputs: the graph outputs (what loss terms and `decode` read).
        trainable: the parameters the solver updates.
        statistics: the batch-norm running statistics (updated by training forward passes,
            never by the solver).
        constants: every other initializer (shapes, fixed tensors).
        opset: the ai.onnx opset the nodes follow.

    Examples:
        A linear classifier on flattened 2 x 2 grey images:

        >>> graph = Graph([Node("Flatten", ["image"], ["flat"], {"axis": 1}, "flatten"),
        ...                Node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], {"transB": 1}, "fc")],
        ...               inputs=[ValueInfo("image", (None, 1, 2, 2))], outputs=[ValueInfo("logits", (None, 3))],
        ...               trainable=["fc.weight", "fc.bias"])
        >>> sorted(graph.op_types())
        ['Flatten', 'Gemm']
    """

    nodes: list[Node]
    inputs: list[ValueInfo]
    outputs: list[ValueInfo]
    trainable: list[str]
    statistics: list[str] = field(default_factory=list)
    constants: list[str] = field(default_factory=list)
    opset: int = 17

    def initializer_names(self) -> list[str]:
        """Every initializer: the names a model holds values for.

        Returns:
            trainable, then statistics, then constants.

        Examples:
            >>> graph.initializer_names()
            ['fc.weight', 'fc.bias']
        """
        return [*self.trainable, *self.statistics, *self.constants]

    def producer(self, name: str) -> Node | None:
        """The node that writes a tensor.

        Args:
            name: a tensor name.

        Returns:
            The node, or None for graph inputs and initializers.

        Examples:
            >>> graph.producer("logits").name, graph.producer("image")
            ('fc', None)
        """
        for node in self.nodes:
            if name in node.outputs:
                return node
        return None

    def needed_nodes(self, outputs) -> list[Node]:
        """The nodes that the given tensors depend on.

        Args:
            outputs: tensor names.

        Returns:
            Those nodes, in the graph's order.

        Examples:
            >>> [n.name for n in graph.needed_nodes(["flat"])]
            ['flatten']
        """
        needed = set(outputs)
        keep = []
        for node in reversed(self.nodes):
            if needed.intersection(node.outputs):
                keep.append(node)
                needed.update(i for i in node.inputs if i)
        return keep[::-1]

    def restricted_to(self, outputs: list[ValueInfo]) -> "Graph":
        """A copy computing only some outputs.

        What is not computed for an output is neither run nor trained: the copy holds only
        the nodes the outputs need and the initializers (roles kept) and inputs those nodes
        read.

        Args:
            outputs: the new graph outputs (tensors of this graph).

        Returns:
            The new graph; this one is not changed.

        Examples:
            >>> small = graph.restricted_to([ValueInfo("flat", (None, 4))])
            >>> [n.name for n in small.nodes], small.trainable
            (['flatten'], [])
        """
        nodes = self.copy().needed_nodes([o.name for o in outputs])
        read = {i for n in nodes for i in n.inputs if i}
        return Graph(nodes=nodes, inputs=[vi for vi in self.inputs if vi.name in read], outputs=list(outputs),
                     trainable=[k for k in self.trainable if k in read],
                     statistics=[k for k in self.statistics if k in read],
                     constants=[k for k in self.constants if k in read], opset=self.opset)

    def op_types(self) -> set[str]:
        """The ops the graph uses: what a backend needs kernels for.

        Returns:
            The op types of the nodes.
        """
        return {n.op_type for n in self.nodes}

    def copy(self) -> "Graph":
        """A copy whose nodes and lists can be changed without changing this graph.

        Returns:
            The copy (attribute values are shared, not copied).

        Examples:
            >>> twin = graph.copy()
            >>> twin.nodes[1].attrs["transB"] = 0
            >>> graph.nodes[1].attrs["transB"]
            1
        """
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
