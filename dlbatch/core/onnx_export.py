"""Graph -> ONNX ModelProto: nodes, typed inputs/outputs, initializers, dlbatch metadata and the
solver state.

Layout of a file written by dlbatch (format 1):

- `graph`: the inference graph (`model.graph` nodes), its inputs and outputs with shapes, every
  trainable parameter, batch-norm statistic and constant as an initializer.
- `metadata_props` (keys prefixed `dlbatch.`): `format_version`, `model_type`, `precision`,
  `hyperparameters` (JSON, every non-runtime parameter), `meta` (JSON, the model type's
  metadata), `roles` (JSON: which initializers are trainable / statistics / constants), `io`
  (JSON: the graph inputs/outputs as dlbatch holds them, free dimensions as null),
  `solver_state` (JSON: the names of the solver-state tensors, so a cut file is detected) and,
  only where needed, `exact_float_attributes` (float attributes that float32 cannot hold).
- `training_info[0].algorithm.initializer`: the solver state (`model.solver_state_dict()`),
  each tensor named `dlbatch.solver.<key>` (`step`, `adam_step`, `velocity/<param>`, ...). The
  ONNX IR treats initializers of a training algorithm graph as its global state (optimizer
  slots), which is exactly what these are; runtimes that only infer ignore them.

No pickle anywhere: every value is an ONNX tensor or JSON text.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping

import numpy as np
import onnx
from onnx import AttributeProto, helper, numpy_helper

from .atomic_file import atomic_write
from .errors import DLError, DLModelFileError
from .graph import Graph, Node, ValueInfo
from .hyperparameters import RUNTIME_PARAMS
from .onnx_attributes.resize import scales_input_index

FORMAT_VERSION = "1"
PREFIX = "dlbatch."
SOLVER_PREFIX = "dlbatch.solver."
SOLVER_GRAPH_NAME = "dlbatch_solver_state"

_SCHEMA_ATTR_TYPES = {
    "FLOAT": AttributeProto.FLOAT, "INT": AttributeProto.INT, "STRING": AttributeProto.STRING,
    "TENSOR": AttributeProto.TENSOR, "FLOATS": AttributeProto.FLOATS, "INTS": AttributeProto.INTS,
    "STRINGS": AttributeProto.STRINGS,
}


def tensor_type(dtype: str | np.dtype) -> int:
    """numpy dtype (or its name) -> TensorProto element type."""
    try:
        return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    except (KeyError, TypeError, ValueError):
        raise DLModelFileError(f"data type {dtype!r} cannot be stored in an ONNX file") from None


def _schema_attr_type(op_type: str, domain: str, opset: int, name: str) -> int | None:
    try:
        schema = onnx.defs.get_schema(op_type, opset, domain or "")
    except onnx.defs.SchemaError:
        return None
    attr = schema.attributes.get(name)
    if attr is None:
        return None
    return _SCHEMA_ATTR_TYPES.get(attr.type.name)


def _plain(value: Any) -> Any:
    """numpy scalars and arrays -> Python numbers and lists (tensors stay arrays)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def make_attribute(node: Node, name: str, value: Any, opset: int) -> AttributeProto:
    """An AttributeProto of the type the operator schema declares (so `alpha=1` becomes a
    FLOAT where the schema wants one, and an empty list gets its type)."""
    atype = _schema_attr_type(node.op_type, node.domain, opset, name)
    if atype == AttributeProto.TENSOR or (atype is None and isinstance(value, np.ndarray)):
        return helper.make_attribute(name, numpy_helper.from_array(np.asarray(value)))
    value = _plain(value)
    if atype == AttributeProto.FLOAT:
        value = float(value)
    elif atype == AttributeProto.INT:
        value = int(value)
    elif atype == AttributeProto.STRING:
        value = value.decode() if isinstance(value, (bytes, bytearray)) else str(value)
    elif atype == AttributeProto.FLOATS:
        value = [float(v) for v in np.asarray(value, dtype=np.float64).reshape(-1)]
    elif atype == AttributeProto.INTS:
        value = [int(v) for v in np.asarray(value, dtype=np.int64).reshape(-1)]
    elif atype == AttributeProto.STRINGS:
        value = [v.decode() if isinstance(v, (bytes, bytearray)) else str(v) for v in value]
    if atype is None:
        if isinstance(value, list) and not value:
            raise DLModelFileError(f"node {node.name!r} ({node.op_type}): attribute {name!r} is an "
                                   "empty list of unknown type; give it a value or drop it")
        return helper.make_attribute(name, value)
    return helper.make_attribute(name, value, attr_type=atype)


def _dims(shape: tuple, name: str) -> list:
    out = []
    for i, d in enumerate(shape):
        if d is None:
            out.append("N" if i == 0 else f"{name}_dim{i}")
        else:
            out.append(int(d))
    return out


def _float_dtype(dtype: str, precision: str) -> str:
    return precision if np.dtype(dtype).kind == "f" else dtype


def value_info(vi: ValueInfo, precision: str, shape: tuple | None = None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(vi.name, tensor_type(_float_dtype(vi.dtype, precision)),
                                         _dims(shape if shape is not None else vi.shape, vi.name))


def _inference_form(proto: onnx.NodeProto, used: set[str]) -> None:
    """A node an imported training-form export carries (torch.onnx.export in train mode), in
    its inference form: BatchNormalization without training_mode=1 and without its unused
    running-statistics outputs, Dropout without its training_mode input. dlbatch's backends
    decide training by their own flag and ignore both; other runtimes (onnxruntime, and so the
    onnxruntime backend) obey them and would normalise with the batch's statistics."""
    if proto.op_type == "BatchNormalization":
        keep = [a for a in proto.attribute if a.name != "training_mode"]
        del proto.attribute[:]
        proto.attribute.extend(keep)
        if not used.intersection(o for o in proto.output[1:] if o):
            del proto.output[1:]
    elif proto.op_type == "Dropout" and len(proto.input) > 2:
        del proto.input[2:]


def graph_to_proto(graph: Graph, values: Mapping[str, np.ndarray], *, precision: str = "float32",
                   input_shapes: Mapping[str, tuple] | None = None, name: str = "dlbatch") -> onnx.GraphProto:
    """The inference graph with every initializer. `input_shapes` replaces free dimensions
    of graph inputs (e.g. the image size a model was made for)."""
    input_shapes = input_shapes or {}
    used = {i for n in graph.nodes for i in n.inputs} | {v.name for v in graph.outputs}
    nodes = []
    for i, n in enumerate(graph.nodes):
        proto = helper.make_node(n.op_type, list(n.inputs), list(n.outputs), name=n.name or f"{n.op_type}_{i}",
                                 domain=n.domain or None)
        proto.attribute.extend(make_attribute(n, k, v, graph.opset) for k, v in n.attrs.items()
                               if v is not None)
        if not n.domain or n.domain == "ai.onnx":
            _inference_form(proto, used)
        nodes.append(proto)
    initializers = []
    always_float32 = _float32_operands(graph)
    for key in graph.initializer_names():
        arr = np.asarray(values[key])
        if key in always_float32 and arr.dtype.kind == "f":
            arr = arr.astype(np.float32)
        initializers.append(numpy_helper.from_array(np.asarray(arr, order="C"), key))
    inputs = [value_info(v, precision, input_shapes.get(v.name)) for v in graph.inputs]
    outputs = [value_info(v, precision) for v in graph.outputs]
    return helper.make_graph(nodes, name, inputs, outputs, initializers)


def _float32_operands(graph: Graph) -> set[str]:
    """Initializers that ONNX types as tensor(float) whatever the data type (Resize and
    Upsample scales): a float64 model keeps them float32 in its files, or onnxruntime and the
    checker refuse the graph."""
    names = set()
    for n in graph.nodes:
        position = scales_input_index(n.op_type, graph.opset)
        if position is not None and len(n.inputs) > position and n.inputs[position]:
            names.add(n.inputs[position])
    return names


def opset_imports(graph: Graph) -> list:
    ops = [helper.make_opsetid("", int(graph.opset))]
    for domain in sorted({n.domain for n in graph.nodes if n.domain and n.domain != "ai.onnx"}):
        ops.append(helper.make_opsetid(domain, 1))
    return ops


def ir_version_for(graph: Graph) -> int:
    """The lowest IR version that knows the opset (and training_info, IR >= 7): files stay
    readable by older runtimes."""
    try:
        ir = helper.find_min_ir_version_for(opset_imports(graph), ignore_unknown=True)
    except Exception:  # an opset newer than this onnx knows: use the library's own version
        ir = onnx.IR_VERSION
    return max(7, int(ir))


def _exact_float_attributes(graph: Graph) -> dict:
    """{node index: {attribute: value}} for float attributes that float32 would round, so
    a float64 model reads back its exact epsilon."""
    out: dict[str, dict] = {}
    for i, n in enumerate(graph.nodes):
        for k, v in n.attrs.items():
            v = _plain(v)
            if isinstance(v, float) and float(np.float32(v)) != v:
                out.setdefault(str(i), {})[k] = v
            elif isinstance(v, list) and v and all(isinstance(x, float) for x in v) and \
                    any(float(np.float32(x)) != x for x in v):
                out.setdefault(str(i), {})[k] = v
    return out


def _json(value: Any) -> str:
    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, tuple):
            return list(o)
        raise TypeError(f"{type(o).__name__} is not JSON serializable")
    return json.dumps(value, default=default, allow_nan=False, sort_keys=True)


def _io_json(graph: Graph) -> dict:
    return {"inputs": [[v.name, list(v.shape), v.dtype] for v in graph.inputs],
            "outputs": [[v.name, list(v.shape), v.dtype] for v in graph.outputs]}


def model_input_shapes(model) -> dict[str, tuple]:
    """The image input with the model's image size filled in (N stays free)."""
    hp, meta = model.hyperparameters, model.meta
    shapes = {}
    name = meta.get("input")
    for v in model.graph.inputs:
        if v.name == name and len(v.shape) == 4 and all(k in hp for k in
                                                         ("image_num_channels", "image_height", "image_width")):
            shapes[v.name] = (v.shape[0], hp["image_num_channels"], hp["image_height"], hp["image_width"])
    return shapes


def export_model(model) -> onnx.ModelProto:
    """A DLModel as one self-contained ModelProto (see the module docstring for the layout)."""
    graph: Graph = model.graph
    precision = model.precision
    values = model.numpy_values()
    proto_graph = graph_to_proto(graph, values, precision=precision, input_shapes=model_input_shapes(model),
                                 name=f"dlbatch_{model.model_type.name}")
    model_proto = helper.make_model(proto_graph, opset_imports=opset_imports(graph),
                                    producer_name="dlbatch", producer_version=_version(),
                                    doc_string=f"dlbatch {model.model_type.name} model")
    model_proto.ir_version = ir_version_for(graph)

    solver = model.solver_state_dict()
    solver_tensors = [numpy_helper.from_array(np.asarray(a, order="C"), SOLVER_PREFIX + k)
                      for k, a in solver.items()]
    algorithm = helper.make_graph([], SOLVER_GRAPH_NAME, [], [], solver_tensors,
                                  doc_string="dlbatch solver state (step counters and per-parameter slots)")
    info = model_proto.training_info.add()
    info.algorithm.CopyFrom(algorithm)

    hp = {k: v for k, v in model.hyperparameters.items() if k not in RUNTIME_PARAMS}
    meta = {
        "format_version": FORMAT_VERSION,
        "model_type": model.model_type.name,
        "precision": model.compute_precision,  # bfloat16 for an autocast model, whose arrays are float32
        "hyperparameters": _json(hp),
        "meta": _json(model.meta),
        "roles": _json({"trainable": graph.trainable, "statistics": graph.statistics,
                        "constants": graph.constants}),
        "io": _json(_io_json(graph)),
        "solver_state": _json(sorted(solver)),
    }
    exact = _exact_float_attributes(graph)
    if exact:
        meta["exact_float_attributes"] = _json(exact)
    helper.set_model_props(model_proto, {PREFIX + k: v for k, v in meta.items()})
    return model_proto


def serialize(proto: onnx.ModelProto) -> bytes:
    """The file's bytes (one function, so a test can make serialization fail)."""
    return proto.SerializeToString()


def write_model_file(model, path) -> None:
    """Write `model` to one self-contained .onnx file, atomically: an error at any point
    leaves an existing file as it was."""
    proto = export_model(model)
    try:
        atomic_write(path, lambda: serialize(proto))
    except DLError:
        raise
    except ValueError as exc:  # protobuf refuses messages over 2 GiB
        raise DLModelFileError(f"cannot write {os.fspath(path)}: {exc}") from exc
    except OSError as exc:
        raise DLModelFileError(f"cannot write {os.fspath(path)}: {exc}") from exc


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("dlbatch")
    except Exception:
        return ""
