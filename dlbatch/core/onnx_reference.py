"""What the onnx package itself can tell about a graph before any image arrives: the static
shapes of its values (onnx shape inference) and the values of nodes whose inputs are known
(the ONNX reference evaluator). Constant folding (onnx_fold) and the fixed-batch rewrite
(onnx_batch_rewrite) both build on these two.

A node evaluated on constants could allocate whatever its inputs say (a `ConstantOfShape` of
a computed shape declaring 50 GB); `evaluate_node` refuses, before running it, an output
larger than MAX_STATIC_TENSOR_BYTES when the size follows from the node's inputs.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import onnx
from onnx import helper

from .errors import DLModelFileError

MAX_STATIC_TENSOR_BYTES = 2 ** 31  # one tensor of a shape the file fixes (free batch dimensions aside)


def _tensor_shape(type_proto) -> tuple | None:
    if not type_proto.HasField("tensor_type") or not type_proto.tensor_type.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in type_proto.tensor_type.shape.dim)


def _with_input_dims(graph: onnx.GraphProto, dims: Mapping[str, Sequence[int]]) -> onnx.GraphProto:
    g = onnx.GraphProto()
    g.CopyFrom(graph)
    for vi in g.input:
        if vi.name in dims and vi.type.HasField("tensor_type"):
            shape = vi.type.tensor_type.shape
            del shape.dim[:]
            for d in dims[vi.name]:
                shape.dim.add().dim_value = int(d)
    return g


def infer_shapes(graph: onnx.GraphProto, opsets: Mapping[str, int], ir_version: int,
                 dims: Mapping[str, Sequence[int]], elem_types: dict | None = None,
                 hints: Mapping[str, tuple[tuple, int]] | None = None) -> dict[str, tuple | None]:
    """Static shapes of every value onnx shape inference can tell (inputs fixed to `dims`).
    `elem_types`, when given, receives the ONNX element type of every value inference typed;
    `hints` gives (shape, element type) of values known otherwise."""
    g = _with_input_dims(graph, dims)
    del g.value_info[:]
    for name, (shape, elem) in (hints or {}).items():
        g.value_info.append(helper.make_tensor_value_info(name, elem, list(shape)))
    for vi in g.output:  # a file's declared output shape (say, a fixed batch of 1) may contradict `dims`
        if vi.type.HasField("tensor_type"):
            vi.type.tensor_type.ClearField("shape")
    model = helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
    model.ir_version = max(int(ir_version), 4)
    shapes: dict[str, tuple | None] = {}
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
        g = inferred.graph
    except Exception:  # inference is a help here, never a requirement
        pass
    for vi in [*g.input, *g.value_info, *g.output]:
        shapes[vi.name] = _tensor_shape(vi.type)
        if elem_types is not None and vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            elem_types[vi.name] = vi.type.tensor_type.elem_type
    for init in g.initializer:
        shapes[init.name] = tuple(init.dims)
        if elem_types is not None:
            elem_types[init.name] = init.data_type
    for name, d in dims.items():
        shapes[name] = tuple(int(x) for x in d)
    return shapes


def _model_for(nodes: list, inputs: Mapping[str, np.ndarray], outputs: list[str],
               opsets: Mapping[str, int], ir_version: int) -> onnx.ModelProto:
    ins = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape))
           for k, v in inputs.items()]
    outs = [helper.make_empty_tensor_value_info(o) for o in outputs]
    g = helper.make_graph(nodes, "fold", ins, outs)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
    model.ir_version = max(int(ir_version), 4)
    return model


def _ints(value) -> list[int]:
    return [int(x) for x in np.asarray(value).reshape(-1)]


def _output_elements(node: onnx.NodeProto, feeds: Mapping[str, np.ndarray]) -> int | None:
    """Elements of the first output of a node that makes its size from its input values
    (None when the size is bounded by its inputs' sizes or cannot be told)."""
    ins = [feeds.get(i) if i else None for i in node.input]
    op = node.op_type
    try:
        if op == "ConstantOfShape" and ins and ins[0] is not None:
            return math.prod(_ints(ins[0]))
        if op == "Expand" and len(ins) > 1 and ins[0] is not None and ins[1] is not None:
            return math.prod(np.broadcast_shapes(np.shape(ins[0]), tuple(max(d, 0) for d in _ints(ins[1]))))
        if op == "Tile" and len(ins) > 1 and ins[0] is not None and ins[1] is not None:
            return int(np.size(ins[0])) * math.prod(_ints(ins[1]))
        if op == "Range" and len(ins) == 3 and all(v is not None for v in ins):
            start, limit, delta = (float(np.asarray(v).reshape(-1)[0]) for v in ins)
            return max(int(math.ceil((limit - start) / delta)), 0) if delta else None
        if op == "OneHot" and len(ins) > 1 and ins[0] is not None and ins[1] is not None:
            return int(np.size(ins[0])) * int(np.asarray(ins[1]).reshape(-1)[0])
        if op == "Pad" and len(ins) > 1 and ins[0] is not None and ins[1] is not None:
            shape, pads = np.shape(ins[0]), _ints(ins[1])
            if len(pads) == 2 * len(shape):
                return math.prod(max(d + pads[i] + pads[i + len(shape)], 0) for i, d in enumerate(shape))
    except (ValueError, TypeError, OverflowError, IndexError):
        return None  # the reference evaluator reports the bad input itself
    return None


def _output_itemsize(node: onnx.NodeProto, feeds: Mapping[str, np.ndarray]) -> int:
    """Bytes per element of the node's first output: the `value` attribute's type for
    ConstantOfShape (float32 by default), the `values` input's for OneHot, else the data input's."""
    if node.op_type == "ConstantOfShape":
        for a in node.attribute:
            if a.name == "value" and a.t.data_type:
                return int(np.dtype(helper.tensor_dtype_to_np_dtype(a.t.data_type)).itemsize)
        return 4
    source = node.input[2] if node.op_type == "OneHot" and len(node.input) > 2 else node.input[0]
    value = feeds.get(source)
    return int(np.asarray(value).dtype.itemsize) if value is not None else 8


def _refuse_huge_output(node: onnx.NodeProto, feeds: Mapping[str, np.ndarray]) -> None:
    count = _output_elements(node, feeds)
    if count is not None and count * _output_itemsize(node, feeds) > MAX_STATIC_TENSOR_BYTES:
        raise DLModelFileError(f"node {node.name or node.output[0]!r} ({node.op_type}) works on constants and would "
                               f"make a tensor of {count} elements (over the {MAX_STATIC_TENSOR_BYTES} bytes "
                               "dlbatch allows for one tensor); the file is corrupt or hostile")


def evaluate_node(node: onnx.NodeProto, feeds: Mapping[str, np.ndarray], opsets: Mapping[str, int],
                  ir_version: int) -> list[np.ndarray]:
    """Run one node with the ONNX reference implementation (of the model's opset); an output
    whose size follows from the inputs and exceeds MAX_STATIC_TENSOR_BYTES is refused first."""
    from onnx.reference import ReferenceEvaluator
    _refuse_huge_output(node, feeds)
    outputs = [o for o in node.output if o]
    model = _model_for([node], feeds, outputs, opsets, ir_version)
    try:
        results = ReferenceEvaluator(model).run(None, dict(feeds))
    except Exception as exc:
        raise DLModelFileError(f"node {node.name or node.output[0]!r} ({node.op_type}) works on constants "
                               f"but could not be evaluated: {exc}") from None
    return [np.asarray(r) for r in results]
