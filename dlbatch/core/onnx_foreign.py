"""An ONNX network made elsewhere (e.g. by torch.onnx.export), read for fine-tuning.

Core does the model-independent part: one float image input N x C x H x W, constant subgraphs
folded, initializers given roles (onnx_import). What the network becomes is the model type's
decision (`ModelType.import_foreign`): classification keeps the class scores as its head;
segmentation and detection would cut the head and read feature maps (onnx_backbone).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
from onnx import TensorProto

from .errors import DLModelFileError, DLParamError
from .graph import Graph, ValueInfo
from .hyperparameters import check_consistency, initial_hyperparameters
from .model import DLModel
from .onnx_import import (FLOAT_TYPES, check_ops, import_graph, real_inputs, type_name, unsupported_ops,
                          unsupported_ops_message)
from .params import ParamTable
from .plugins import manager
from .read_overrides import IMAGE_PARAMS, apply_overrides, differs, runtime_overrides


@dataclass
class ForeignNetwork:
    """The imported network a model type builds on. `graph` keeps the file's outputs,
    `shapes` holds every static tensor shape shape inference found (with the image size
    fixed), `name` is the graph's name (or the file's stem)."""

    path: Path
    name: str
    graph: Graph
    values: dict
    shapes: dict
    input_name: str
    image_num_channels: int
    image_height: int
    image_width: int
    input_is_double: bool


def _image_input(proto, path: Path) -> onnx.ValueInfoProto:
    inputs = real_inputs(proto.graph)
    if len(inputs) != 1:
        raise DLModelFileError(f"{path}: a network read by dlbatch needs exactly one image input; this graph "
                               f"has {len(inputs)} ({[vi.name for vi in inputs]})")
    vi = inputs[0]
    tt = vi.type.tensor_type
    if not vi.type.HasField("tensor_type") or tt.elem_type not in FLOAT_TYPES:
        raise DLModelFileError(f"{path}: input {vi.name!r} has data type {type_name(tt.elem_type)}; dlbatch "
                               "needs a float (FLOAT or DOUBLE) image input")
    if not tt.HasField("shape") or len(tt.shape.dim) != 4:
        raise DLModelFileError(f"{path}: input {vi.name!r} must be an image batch N x C x H x W (rank 4)")
    return vi


def _image_dims(vi, params: dict, path: Path) -> tuple[int, int, int]:
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in vi.type.tensor_type.shape.dim]
    c, h, w = dims[1], dims[2], dims[3]
    if "image_dimensions" in params:
        dd = params["image_dimensions"]
        try:
            w, h, c = (int(x) for x in dd)
        except (TypeError, ValueError):
            raise DLParamError(f"image_dimensions must be [width, height, channels], got {dd!r}") from None
    w = int(params.get("image_width", w) or 0) or None
    h = int(params.get("image_height", h) or 0) or None
    c = int(params.get("image_num_channels", c) or 0) or None
    missing = [n for n, v in (("image_num_channels", c), ("image_height", h), ("image_width", w)) if v is None]
    if missing:
        raise DLModelFileError(f"{path}: input {vi.name!r} has free dimensions {missing}; pass them to "
                               f"read_dl_model (e.g. image_dimensions=[width, height, channels])")
    return c, h, w


class _NoTrainable(DLModelFileError):
    """No weights found; keeps the graph, whose unknown ops may be the reason."""

    def __init__(self, message: str, graph: Graph):
        super().__init__(message)
        self.graph = graph


def _ops_first(graph: Graph, kernels, backend_name: str, path: Path, exc: DLModelFileError, model_type: str):
    """An op without a kernel often hides shapes and roles too: name the ops before `exc`."""
    missing = unsupported_ops(graph, kernels)
    if not missing:
        return exc
    return DLModelFileError(f"{unsupported_ops_message(missing, kernels, backend_name, str(path))} (reading it as a "
                            f"{model_type} model also failed: {exc})")


def import_network(proto: onnx.ModelProto, path: Path, params: dict) -> ForeignNetwork:
    """Fold and convert the file's graph with the image size fixed (from the file, or from
    `params` where the file leaves it free)."""
    vi = _image_input(proto, path)
    c, h, w = _image_dims(vi, params, path)
    batch_dim = vi.type.tensor_type.shape.dim[0]
    fixed_batch = batch_dim.dim_value if batch_dim.HasField("dim_value") and batch_dim.dim_value > 0 else None
    imported = import_graph(proto, {vi.name: (None, c, h, w)}, str(path), fixed_batch=fixed_batch)
    graph = imported.graph
    dtype = graph.inputs[0].dtype if graph.inputs else "float32"
    graph.inputs = [ValueInfo(vi.name, (None, c, None, None), dtype)]
    if not graph.trainable:
        raise _NoTrainable(f"{path}: no trainable parameters found (no float initializers read as weights)",
                           graph)
    return ForeignNetwork(path, proto.graph.name or path.stem, graph, imported.values, imported.shapes,
                          vi.name, c, h, w, vi.type.tensor_type.elem_type == TensorProto.DOUBLE)


def _batchnorm_momentum(graph: Graph) -> dict[str, Any]:
    """The network's batch-norm momentum, when all its batch-norm layers agree on one."""
    momenta = {round(float(n.attrs.get("momentum", 0.9)), 6) for n in graph.nodes
               if n.op_type == "BatchNormalization"}
    m = momenta.pop() if len(momenta) == 1 else None
    return {"batchnorm_momentum": m} if m is not None and 0.0 <= m <= 1.0 else {}


def read_foreign(proto, path: Path, backend_name: str, device: str, params: dict) -> DLModel:
    """A model of type `params.pop("type", "classification")` made from a foreign network."""
    params = dict(params)
    model_type = manager.model_type(params.pop("type", "classification"))
    table = ParamTable(model_type.name, model_type.param_specs())
    precision, runtime = runtime_overrides(params, table)
    kernels = manager.kernels(backend_name)
    try:
        network = import_network(proto, path, params)
    except _NoTrainable as exc:
        raise _ops_first(exc.graph, kernels, backend_name, path, exc, model_type.name) from None
    try:
        made = model_type.import_foreign(network, params)
    except DLModelFileError as exc:
        err = _ops_first(network.graph, kernels, backend_name, path, exc, model_type.name)
        if err is exc:
            raise
        raise err from None
    check_ops(made.graph, kernels, backend_name, str(path))
    base = {**made.params, "image_width": network.image_width, "image_height": network.image_height,
            "image_num_channels": network.image_num_channels, **_batchnorm_momentum(made.graph)}
    hp = initial_hyperparameters(table, model_type, base)
    hp.setdefault("backbone", None)
    if precision is None:
        precision = "float64" if network.input_is_double else "float32"
    check_consistency(hp, model_type, made.meta)
    model = DLModel(model_type, table, made.graph, made.values, hp, made.meta, backend=backend_name,
                    device=device, precision=precision)
    if runtime is not None:
        model.set_param("runtime", runtime)
    rest = {n: v for n, v in params.items() if n not in IMAGE_PARAMS or differs(model, table, n, v)}
    apply_overrides(model, table, rest)
    return model
