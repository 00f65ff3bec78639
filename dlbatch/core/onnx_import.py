"""ONNX ModelProto -> dlbatch Graph + values.

Two users: `read_dl_model` for files made elsewhere (a classifier exported from PyTorch, say),
and the `onnx.backend` adapter, which runs any graph its backend has kernels for.

Import steps: check opset, domains and data types; fold everything computable before an image
arrives (onnx_fold); give each remaining initializer a role:

- trainable: float tensors read as weights/biases: Conv/ConvTranspose W and B, Gemm A/B/C,
  MatMul operands, BatchNormalization (and Instance/LayerNormalization, PRelu) scale and shift,
  the data of Expand and Gather (a class token, an embedding table), and non-scalar float
  operands of Add/Mul/Sum/Concat (a bias added after a MatMul, a per-channel scale, a position
  embedding, a class token concatenated as it is). Sub/Div operands (input normalization),
  scalars and uniform values the graph makes itself from Constant nodes and shapes (GroupNorm's
  unit InstanceNormalization scale, a zero bias) stay constants.
- statistics: BatchNormalization running mean and variance (inputs 3 and 4).
- constants: everything else (shapes, axes, pads, scales, integer tensors).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .errors import DLModelFileError
from .graph import Graph, Node, ValueInfo
from .onnx_batch_rewrite import free_fixed_batch
from .onnx_fold import DEFAULT_DOMAINS, Folded, fold_constants

MIN_OPSET, MAX_OPSET = 7, 21

FLOAT_TYPES = {TensorProto.FLOAT: "float32", TensorProto.DOUBLE: "float64"}
CONSTANT_TYPES = {
    **FLOAT_TYPES, TensorProto.INT64: "int64", TensorProto.INT32: "int32", TensorProto.INT16: "int16",
    TensorProto.INT8: "int8", TensorProto.UINT8: "uint8", TensorProto.UINT16: "uint16",
    TensorProto.UINT32: "uint32", TensorProto.UINT64: "uint64", TensorProto.BOOL: "bool",
}
SUPPORTED_DTYPES = sorted(set(CONSTANT_TYPES.values()))

# (op type, input index) -> role for float initializers read there
TRAINABLE_SLOTS = {
    "Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (0, 1, 2), "MatMul": (0, 1),
    "BatchNormalization": (1, 2), "InstanceNormalization": (1, 2), "LayerNormalization": (1, 2),
    "PRelu": (1,),
    # a class token broadcast over the batch, concatenated, or an embedding table picked from
    "Expand": (0,), "Gather": (0,),
}
STATISTIC_SLOTS = {"BatchNormalization": (3, 4)}
NONSCALAR_TRAINABLE_OPS = ("Add", "Mul", "Sum", "Concat")
# ops whose output carries none of their inputs' values (only shapes or types), and ops whose
# output carries the values of some inputs only (the others give a shape or a type)
SHAPE_ONLY_OPS = ("Shape", "Size", "ConstantOfShape", "RandomNormalLike", "RandomUniformLike")
VALUE_INPUTS = {"CastLike": (0,), "Expand": (0,), "Reshape": (0,), "Tile": (0,)}


def type_name(elem_type: int) -> str:
    try:
        return TensorProto.DataType.Name(elem_type)
    except ValueError:
        return f"type {elem_type}"


# -- checks -----------------------------------------------------------------------------------
def opsets_of(proto: onnx.ModelProto) -> dict[str, int]:
    ops = {}
    for o in proto.opset_import:
        ops["" if o.domain in DEFAULT_DOMAINS else o.domain] = int(o.version)
    if not ops and proto.ir_version and proto.ir_version < 3:
        ops[""] = 1
    return ops


def check_opset(proto: onnx.ModelProto, where: str) -> int:
    ops = opsets_of(proto)
    if "" not in ops:
        raise DLModelFileError(f"{where}: the model imports no ai.onnx opset (opset_import is empty or "
                               "missing); the file is truncated or not an ONNX model")
    opset = ops[""]
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise DLModelFileError(f"{where}: ai.onnx opset {opset} is not supported; dlbatch reads opsets "
                               f"{MIN_OPSET} to {MAX_OPSET}. Re-export the model with an opset in that range "
                               "(e.g. torch.onnx.export(..., opset_version=17)) or convert it with "
                               "onnx.version_converter")
    return opset


def check_domains(nodes, where: str) -> None:
    """Every node of another domain than ai.onnx, listed at once."""
    foreign: dict[tuple[str, str], list[str]] = {}
    for n in nodes:
        if n.domain not in DEFAULT_DOMAINS:
            foreign.setdefault((n.domain, n.op_type), []).append(n.name or n.output[0])
    if foreign:
        listed = "; ".join(f"{op!r} of domain {dom!r} ({_node_list(names)})" for (dom, op), names in foreign.items())
        raise DLModelFileError(f"{where}: the graph uses operators outside ai.onnx, which dlbatch does not run: "
                               f"{listed}. Export with standard ONNX operators only (torch.onnx.export does "
                               "unless a custom symbolic or op is registered)")


def _node_list(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"node{'s' if len(names) > 1 else ''} {shown}{more}"


def check_array_dtype(name: str, arr: np.ndarray, where: str, what: str = "initializer") -> None:
    if arr.dtype.name not in SUPPORTED_DTYPES:
        raise DLModelFileError(f"{where}: {what} {name!r} has data type {arr.dtype.name}"
                               f"{' (' + _onnx_name(arr.dtype) + ')' if _onnx_name(arr.dtype) else ''}, which "
                               f"dlbatch does not support; supported: {', '.join(SUPPORTED_DTYPES)}")


def _onnx_name(dtype: np.dtype) -> str:
    try:
        return type_name(helper.np_dtype_to_tensor_dtype(dtype))
    except Exception:
        return ""


def tensor_to_array(t: onnx.TensorProto, where: str, what: str = "initializer") -> np.ndarray:
    if t.data_type not in CONSTANT_TYPES:
        raise DLModelFileError(f"{where}: {what} {t.name!r} has data type {type_name(t.data_type)}, which dlbatch "
                               f"does not support; supported: {', '.join(SUPPORTED_DTYPES)}")
    if t.data_location == TensorProto.EXTERNAL:
        raise DLModelFileError(f"{where}: {what} {t.name!r} keeps its data in an external file that was not "
                               "loaded")
    try:
        arr = numpy_helper.to_array(t)
    except Exception as exc:
        raise DLModelFileError(f"{where}: {what} {t.name!r} is corrupt ({exc})") from None
    return np.asarray(arr)


def unsupported_ops(graph: Graph, kernels: Mapping[str, Any]) -> dict[str, list[str]]:
    """op type -> names of the nodes using it, for every op without a kernel (graph order)."""
    missing: dict[str, list[str]] = {}
    for n in graph.nodes:
        if n.op_type not in kernels:
            missing.setdefault(n.op_type, []).append(n.name or n.outputs[0])
    return missing


def unsupported_ops_message(missing: Mapping[str, list[str]], kernels: Mapping[str, Any], backend: str,
                            where: str) -> str:
    ops = sorted(missing)
    listed = "; ".join(f"{op!r} ({_node_list(missing[op])})" for op in ops)
    example = ops[0]
    return (f"{where}: {len(ops)} op{'s' if len(ops) > 1 else ''} of this network {'are' if len(ops) > 1 else 'is'} "
            f"not supported by the {backend} backend: {listed}. Supported ops of the {backend} backend: "
            f"{', '.join(sorted(kernels))}. A plugin can add the missing ones: implement the dlbatch_register_ops "
            f"hook and call register({backend!r}, {example!r}, kernel) for each, then read the model again")


def check_ops(graph: Graph, kernels: Mapping[str, Any], backend: str, where: str) -> None:
    """Every node needs a kernel on the chosen backend; list every op that has none, with its
    nodes, at once."""
    missing = unsupported_ops(graph, kernels)
    if missing:
        raise DLModelFileError(unsupported_ops_message(missing, kernels, backend, where))


# -- nodes ------------------------------------------------------------------------------------
def attributes(node: onnx.NodeProto, where: str) -> dict[str, Any]:
    """ONNX attributes as Python values: numbers, lists, str, numpy arrays for tensors."""
    out: dict[str, Any] = {}
    for a in node.attribute:
        if a.ref_attr_name:
            raise DLModelFileError(f"{where}: node {node.name!r} refers to a function attribute "
                                   f"{a.ref_attr_name!r}; only plain graphs are supported")
        if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            raise DLModelFileError(f"{where}: node {node.name or node.output[0]!r} ({node.op_type}) has a "
                                   "subgraph attribute; control flow (If/Loop/Scan) is not supported")
        value = helper.get_attribute_value(a)
        if a.type == onnx.AttributeProto.STRING:
            value = value.decode("utf-8", "replace")
        elif a.type == onnx.AttributeProto.STRINGS:
            value = [v.decode("utf-8", "replace") for v in value]
        elif a.type == onnx.AttributeProto.TENSOR:
            value = tensor_to_array(value, where, f"attribute {a.name!r} of node {node.name!r}")
        elif a.type == onnx.AttributeProto.TENSORS:
            value = [tensor_to_array(t, where, f"attribute {a.name!r}") for t in value]
        elif a.type in (onnx.AttributeProto.FLOATS, onnx.AttributeProto.INTS):
            value = list(value)
        elif a.type in (onnx.AttributeProto.SPARSE_TENSOR, onnx.AttributeProto.SPARSE_TENSORS,
                        onnx.AttributeProto.TYPE_PROTO, onnx.AttributeProto.TYPE_PROTOS):
            raise DLModelFileError(f"{where}: node {node.name!r} attribute {a.name!r} has an unsupported type")
        out[a.name] = value
    return out


def nodes_from_proto(nodes, where: str) -> list[Node]:
    out = []
    names: set[str] = set()
    for i, n in enumerate(nodes):
        name = n.name or f"{n.op_type}_{i}"
        if name in names:
            name = f"{name}_{i}"
        names.add(name)
        domain = "" if n.domain in DEFAULT_DOMAINS else n.domain
        out.append(Node(n.op_type, list(n.input), list(n.output), attributes(n, where), name, domain))
    return out


def value_info_from_proto(vi: onnx.ValueInfoProto, shape: tuple | None = None) -> ValueInfo:
    tt = vi.type.tensor_type
    dtype = CONSTANT_TYPES.get(tt.elem_type, type_name(tt.elem_type).lower())
    if shape is None:
        shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                      for d in tt.shape.dim) if tt.HasField("shape") else ()
    return ValueInfo(vi.name, tuple(shape), dtype)


def real_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """Graph inputs that are not initializers (IR < 4 lists initializers as inputs too)."""
    inits = {t.name for t in graph.initializer}
    return [vi for vi in graph.input if vi.name not in inits]


def initializer_arrays(graph: onnx.GraphProto, where: str) -> dict[str, np.ndarray]:
    values = {t.name: tensor_to_array(t, where) for t in graph.initializer}
    if len(graph.sparse_initializer):
        raise DLModelFileError(f"{where}: sparse initializers are not supported")
    return values


# -- roles ------------------------------------------------------------------------------------
def made_in_graph(nodes, initializers: Mapping[str, np.ndarray]) -> set[str]:
    """Values the graph makes without reading any initializer's numbers: `Constant` nodes and
    what is computed from them and from shapes only (GroupNorm's unit scale for
    InstanceNormalization, the default exporter's zero convolution bias Expand(CastLike(0, x),
    Shape(W)[:1])). Such a value is not a parameter of the exported network."""
    carries = set(initializers)
    for n in nodes:
        if n.op_type in SHAPE_ONLY_OPS:
            continue
        slots = VALUE_INPUTS.get(n.op_type, range(len(n.input)))
        if any(n.input[k] in carries for k in slots if k < len(n.input) and n.input[k]):
            carries.update(o for o in n.output if o)
    made = set()
    for n in nodes:
        made.update(o for o in n.output if o and o not in carries)
    return made


def _uniform(arr: np.ndarray) -> bool:
    return arr.size > 0 and bool(np.all(arr == arr.reshape(-1)[0]))


def _groupnorm_unit_affine(nodes: list[Node], constants: Mapping[str, np.ndarray]) -> set[str]:
    """GroupNorm as exported: Reshape to N x G x -1, InstanceNormalization with scale 1 and
    shift 0, Reshape back, then the real per-channel scale and shift (Mul, Add). That unit
    scale and zero shift are no parameters of the network (once an exporter has moved them into
    initializers, made_in_graph cannot tell)."""
    producers = {o: n for n in nodes for o in n.outputs if o}
    out = set()
    for n in nodes:
        if n.op_type != "InstanceNormalization" or len(n.inputs) < 3:
            continue
        src = producers.get(n.inputs[0])
        scale, shift = constants.get(n.inputs[1]), constants.get(n.inputs[2])
        if (src is not None and src.op_type == "Reshape" and scale is not None and shift is not None
                and scale.size and np.all(scale == 1) and np.all(shift == 0)):
            out.update(n.inputs[1:3])
    return out


def assign_roles(nodes: list[Node], constants: Mapping[str, np.ndarray],
                 made: set[str] = frozenset()) -> tuple[list, list, list]:
    """(trainable, statistics, constants) names, in first-use order. Uniform values the graph
    made itself (`made`, see made_in_graph) are never trainable."""
    role: dict[str, str] = {}
    order: list[str] = []
    made = set(made) | _groupnorm_unit_affine(nodes, constants)
    for n in nodes:
        for idx, name in enumerate(n.inputs):
            if not name or name not in constants:
                continue
            if name not in role:
                role[name] = "constant"
                order.append(name)
            arr = constants[name]
            if arr.dtype.kind != "f" or (name in made and _uniform(arr)):
                continue
            if idx in STATISTIC_SLOTS.get(n.op_type, ()):
                role[name] = "statistics"
            elif role[name] != "statistics" and (
                    idx in TRAINABLE_SLOTS.get(n.op_type, ())
                    or (n.op_type in NONSCALAR_TRAINABLE_OPS and arr.size > 1)):
                role[name] = "trainable"
    for name in constants:
        if name not in role:
            role[name] = "constant"
            order.append(name)
    return ([n for n in order if role[n] == "trainable"], [n for n in order if role[n] == "statistics"],
            [n for n in order if role[n] == "constant"])


# -- the whole graph --------------------------------------------------------------------------
@dataclass
class Imported:
    graph: Graph
    values: dict[str, np.ndarray]
    shapes: dict[str, tuple | None]


def import_graph(proto: onnx.ModelProto, input_dims: Mapping[str, tuple], where: str, *,
                 roles: bool = True, fixed_batch: int | None = None) -> Imported:
    """Fold and convert a foreign graph. `input_dims` gives every real graph input's shape
    (None for a free batch dimension); `fixed_batch` the batch size the file was exported
    with, when it has a static one."""
    opset = check_opset(proto, where)
    graph = proto.graph
    check_domains(graph.node, where)
    initial = initializer_arrays(graph, where)
    if fixed_batch is not None and any(d is None for dims in input_dims.values() for d in dims):
        graph = free_fixed_batch(graph, opsets_of(proto), proto.ir_version or 3, initial, input_dims,
                                 int(fixed_batch), where)
        initial = initializer_arrays(graph, where)
    folded: Folded = fold_constants(graph, opsets_of(proto), proto.ir_version or 3, initial, input_dims,
                                   fixed_batch=fixed_batch)
    for name, arr in folded.constants.items():
        check_array_dtype(name, arr, where, "constant")
    nodes = nodes_from_proto(folded.nodes, where)
    if roles:
        trainable, statistics, constants = assign_roles(nodes, folded.constants, made_in_graph(graph.node, initial))
    else:
        trainable, statistics, constants = [], [], list(folded.constants)
    inputs = [value_info_from_proto(vi, tuple(input_dims[vi.name]) if vi.name in input_dims else None)
              for vi in real_inputs(graph)]
    used = {i for n in nodes for i in n.inputs if i} | {o.name for o in graph.output}
    inputs = [vi for vi in inputs if vi.name in used or not nodes]
    outputs = []
    for vi in graph.output:
        info = value_info_from_proto(vi)
        inferred = folded.shapes.get(vi.name)
        if inferred is not None and (not info.shape or any(d is None for d in info.shape[1:])):
            info = ValueInfo(info.name, tuple(inferred), info.dtype)
        outputs.append(info)
    g = Graph(nodes=nodes, inputs=inputs, outputs=outputs, trainable=trainable, statistics=statistics,
              constants=constants, opset=opset)
    return Imported(g, dict(folded.constants), folded.shapes)
