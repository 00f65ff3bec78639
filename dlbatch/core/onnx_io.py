"""read_dl_model / write_dl_model: one .onnx file per model.

A file written by dlbatch holds the inference graph with all weights and batch-norm statistics,
every non-runtime hyperparameter, the model type's metadata, the role of each initializer and
the solver state (layout: onnx_export). Reading it gives back a model whose next training step
is exactly the step the unsaved model would have made.

Any other ONNX classifier (e.g. from torch.onnx.export) is imported: constant subgraphs are
folded, initializers get roles (onnx_import), and it becomes a classification model with
class_ids 0..K-1 that can be fine-tuned.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import onnx
from onnx import TensorProto

from . import solvers
from .errors import DLError, DLModelFileError, DLParamError
from .graph import Graph, ValueInfo
from .model import RUNTIME_PARAMS, DLModel, check_consistency
from .onnx_export import PREFIX, SOLVER_GRAPH_NAME, SOLVER_PREFIX, export_model
from .onnx_import import (FLOAT_TYPES, MAX_OPSET, MIN_OPSET, check_domains, check_ops, check_opset,
                          import_graph, initializer_arrays, nodes_from_proto, real_inputs, type_name)
from .params import ParamTable, coerce
from .plugins import manager

REQUIRED_KEYS = ("format_version", "model_type", "precision", "hyperparameters", "meta", "roles", "io",
                 "solver_state")
SUPPORTED_FORMATS = ("1",)
IMAGE_PARAMS = ("image_width", "image_height", "image_num_channels", "image_dimensions")


# -- writing ----------------------------------------------------------------------------------
def _serialize(proto: onnx.ModelProto) -> bytes:
    return proto.SerializeToString()


def _fsync_dir(folder: str) -> None:
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, make_bytes) -> None:
    """Write `make_bytes()` to `path` through a temporary file in the same folder (fsync, then
    os.replace): a failure at any point leaves an existing file untouched."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise DLModelFileError(f"cannot write {path}: the folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(make_bytes())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(folder)


def write_dl_model(model: DLModel, path) -> None:
    """Write `model` to one self-contained .onnx file, atomically."""
    if not isinstance(model, DLModel):
        raise DLParamError(f"write_dl_model needs a DLModel, got {type(model).__name__}")
    proto = export_model(model)
    try:
        atomic_write(path, lambda: _serialize(proto))
    except DLError:
        raise
    except ValueError as exc:  # protobuf refuses messages over 2 GiB
        raise DLModelFileError(f"cannot write {os.fspath(path)}: {exc}") from exc
    except OSError as exc:
        raise DLModelFileError(f"cannot write {os.fspath(path)}: {exc}") from exc


# -- loading a file safely --------------------------------------------------------------------
def _all_tensors(proto: onnx.ModelProto):
    def graph_tensors(g: onnx.GraphProto):
        yield from g.initializer
        for n in g.node:
            for a in n.attribute:
                if a.HasField("t"):
                    yield a.t
                yield from a.tensors
                if a.HasField("g"):
                    yield from graph_tensors(a.g)
                for sub in a.graphs:
                    yield from graph_tensors(sub)
    yield from graph_tensors(proto.graph)
    for info in proto.training_info:
        yield from graph_tensors(info.initialization)
        yield from graph_tensors(info.algorithm)


def _load_external_data(proto: onnx.ModelProto, path: Path) -> None:
    """Read tensors stored next to the model. A location must be a relative path that stays
    inside the model's folder (no absolute paths, no '..', no symlinks leading out)."""
    base = path.parent.resolve()
    for t in _all_tensors(proto):
        if t.data_location != TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        location = info.get("location", "")
        if not location:
            raise DLModelFileError(f"{path}: tensor {t.name!r} is marked external but names no location")
        if os.path.isabs(location) or Path(location).drive or location.startswith(("/", "\\")):
            raise DLModelFileError(f"{path}: tensor {t.name!r} refers to external data at the absolute path "
                                   f"{location!r}; only files inside the model's folder are read")
        target = (base / location).resolve()
        if target != base and base not in target.parents:
            raise DLModelFileError(f"{path}: tensor {t.name!r} refers to external data {location!r} outside the "
                                   f"model's folder {base}; refusing to read it")
        if not target.is_file():
            raise DLModelFileError(f"{path}: external data file {location!r} of tensor {t.name!r} is missing")
        try:
            offset = int(info.get("offset", 0) or 0)
            length = int(info["length"]) if info.get("length") else None
        except ValueError:
            raise DLModelFileError(f"{path}: tensor {t.name!r} has an invalid external data offset/length") from None
        with open(target, "rb") as fh:
            fh.seek(offset)
            data = fh.read() if length is None else fh.read(length)
        if length is not None and len(data) != length:
            raise DLModelFileError(f"{path}: external data {location!r} of tensor {t.name!r} is truncated")
        t.raw_data = data
        del t.external_data[:]
        t.data_location = TensorProto.DEFAULT


def load_model_proto(path) -> tuple[onnx.ModelProto, Path]:
    """The ModelProto in `path`, with clear errors for a missing, truncated or corrupt file."""
    path = Path(os.fspath(path))
    if not path.exists():
        raise DLModelFileError(f"model file {path} does not exist")
    if path.is_dir():
        raise DLModelFileError(f"{path} is a folder, not a model file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DLModelFileError(f"cannot read {path}: {exc}") from exc
    if not data:
        raise DLModelFileError(f"{path} is empty; it is not an ONNX model")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as exc:  # google.protobuf.message.DecodeError and friends
        raise DLModelFileError(f"{path} is not a readable ONNX model (truncated or corrupt: "
                               f"{type(exc).__name__}); write it again or re-export it") from None
    if not proto.HasField("graph") or not proto.ir_version:
        raise DLModelFileError(f"{path} is not a complete ONNX model (no graph or IR version); the file "
                               "is truncated or not an ONNX file")
    _load_external_data(proto, path)
    return proto, path


def _checked(proto: onnx.ModelProto, path: Path) -> int:
    opset = check_opset(proto, str(path))
    check_domains(proto.graph.node, str(path))
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        msg = str(exc).strip().splitlines()
        raise DLModelFileError(f"{path} is not a valid ONNX model ({msg[0] if msg else type(exc).__name__}); "
                               "the file may be truncated or corrupt") from None
    return opset


# -- reading ----------------------------------------------------------------------------------
def read_dl_model(path, backend: str | None = None, device: str = "cpu", **params: Any) -> DLModel:
    """A DLModel from an .onnx file: a dlbatch file (everything restored, training resumes
    exactly) or a classifier exported elsewhere (imported for fine-tuning). Keyword
    parameters override stored hyperparameters and are validated like set_dl_model_param."""
    proto, path = load_model_proto(path)
    _checked(proto, path)
    props = {p.key: p.value for p in proto.metadata_props}
    backend_name = backend or manager.default_backend()
    manager.backend(backend_name)  # unknown backend: a clear error listing the available ones
    if PREFIX + "format_version" in props:
        return _read_dlbatch(proto, path, props, backend_name, device, params)
    return _read_foreign(proto, path, backend_name, device, params)


def _json_prop(props: Mapping[str, str], key: str, path: Path):
    try:
        return json.loads(props[PREFIX + key])
    except KeyError:
        raise DLModelFileError(f"{path}: dlbatch metadata {PREFIX + key!r} is missing; the file is truncated "
                               "or was edited") from None
    except ValueError as exc:
        raise DLModelFileError(f"{path}: dlbatch metadata {PREFIX + key!r} is not valid JSON ({exc})") from None


def _runtime(params: dict, table: ParamTable) -> tuple[str | None, str | None]:
    precision = params.pop("precision", None)
    runtime = params.pop("runtime", None)
    if precision is not None:
        precision = coerce(table.spec("precision"), precision)
    if runtime is not None:
        runtime = coerce(table.spec("runtime"), runtime)
    for name in ("backend", "device"):
        if name in params:
            raise DLParamError(f"pass {name} as read_dl_model(path, {name}=...), once")
    return precision, runtime


def _restore_hp(table: ParamTable, model_type, stored: Mapping[str, Any], path: Path) -> dict:
    """Stored hyperparameters, each validated; parameters added to dlbatch since the file was
    written take their defaults."""
    if not isinstance(stored, dict):
        raise DLModelFileError(f"{path}: the stored hyperparameters are not a JSON object")
    hp = {n: table.specs[n].default for n in table.stored_names()}
    hp.update(model_type.default_params())
    for name, value in stored.items():
        if name in RUNTIME_PARAMS:
            continue
        spec = table.specs.get(name)
        if spec is not None and value is not None and not spec.readonly:
            try:
                value = coerce(spec, value)
            except DLParamError as exc:
                raise DLModelFileError(f"{path}: stored hyperparameter {exc}") from None
        hp[name] = value
    if hp.get("class_ids") is None:
        raise DLModelFileError(f"{path}: the stored hyperparameters have no class_ids")
    return hp


def _apply_overrides(model: DLModel, params: dict) -> None:
    """Caller's parameters, validated and applied like set_dl_model_param (class_ids first,
    so class_names/class_weights given together with them fit)."""
    params = dict(params)
    if "num_classes" in params:
        if "class_ids" in params:
            raise DLParamError("give class_ids or num_classes, not both")
        k = coerce(model._table.spec("num_classes"), params.pop("num_classes"))
        if k < 1:
            raise DLParamError("num_classes must be >= 1")
        params = {"class_ids": list(range(k)), **params}
    order = sorted(params, key=lambda n: (n != "class_ids", n not in IMAGE_PARAMS))
    for name in order:
        model.set_param(name, params[name])


def _read_dlbatch(proto, path: Path, props, backend_name: str, device: str, params: dict) -> DLModel:
    where = str(path)
    fmt = props[PREFIX + "format_version"]
    if fmt not in SUPPORTED_FORMATS:
        raise DLModelFileError(f"{path} was written in dlbatch file format {fmt}; this dlbatch reads "
                               f"format {', '.join(SUPPORTED_FORMATS)}. Update dlbatch")
    for key in REQUIRED_KEYS:
        if PREFIX + key not in props:
            raise DLModelFileError(f"{path}: dlbatch metadata {PREFIX + key!r} is missing; the file is truncated "
                                   "or was edited")
    type_name_ = props[PREFIX + "model_type"]
    model_type = manager.model_type(type_name_)
    table = ParamTable(model_type.name, model_type.param_specs())
    precision, runtime = _runtime(params, table)
    stored_precision = props[PREFIX + "precision"]
    if stored_precision not in ("float32", "float64"):
        raise DLModelFileError(f"{path}: unknown stored precision {stored_precision!r}")
    hp = _restore_hp(table, model_type, _json_prop(props, "hyperparameters", path), path)
    meta = _json_prop(props, "meta", path)
    roles = _json_prop(props, "roles", path)
    io = _json_prop(props, "io", path)
    solver_keys = _json_prop(props, "solver_state", path)
    if not isinstance(meta, dict) or not isinstance(roles, dict) or not isinstance(io, dict):
        raise DLModelFileError(f"{path}: dlbatch metadata has the wrong structure")

    opset = check_opset(proto, where)
    nodes = nodes_from_proto(proto.graph.node, where)
    exact = props.get(PREFIX + "exact_float_attributes")
    if exact:
        for idx, attrs in json.loads(exact).items():
            nodes[int(idx)].attrs.update(attrs)
    values = initializer_arrays(proto.graph, where)
    try:
        graph = Graph(nodes=nodes,
                      inputs=[ValueInfo(n, tuple(s), d) for n, s, d in io["inputs"]],
                      outputs=[ValueInfo(n, tuple(s), d) for n, s, d in io["outputs"]],
                      trainable=list(roles["trainable"]), statistics=list(roles["statistics"]),
                      constants=list(roles["constants"]), opset=opset)
    except (KeyError, TypeError, ValueError):
        raise DLModelFileError(f"{path}: dlbatch metadata 'roles'/'io' has the wrong structure") from None
    named = set(graph.initializer_names())
    if named != set(values) or len(named) != len(graph.initializer_names()):
        missing = sorted(named - set(values))[:5]
        extra = sorted(set(values) - named)[:5]
        raise DLModelFileError(f"{path}: initializers and their roles disagree (missing {missing}, "
                               f"without a role {extra}); the file is corrupt")
    for n in graph.trainable + graph.statistics:
        if values[n].dtype.kind != "f":
            raise DLModelFileError(f"{path}: trainable/statistic tensor {n!r} is not floating point")

    solver_state = _solver_state(proto, path, solver_keys)
    check_ops(graph, manager.kernels(backend_name), backend_name, where)
    try:
        check_consistency(hp, model_type, meta)
    except DLParamError as exc:
        raise DLModelFileError(f"{path}: {exc}") from None
    model = DLModel(model_type, table, graph, values, hp, meta, backend=backend_name, device=device,
                    precision=precision or stored_precision)
    try:
        model.load_solver_state_dict(solver_state)
    except DLParamError as exc:
        raise DLModelFileError(f"{path}: {exc}") from None
    if runtime is not None:
        model.set_param("runtime", runtime)
    _apply_overrides(model, params)
    return model


def _solver_state(proto, path: Path, keys) -> dict[str, np.ndarray]:
    if not isinstance(keys, list):
        raise DLModelFileError(f"{path}: dlbatch metadata 'solver_state' has the wrong structure")
    tensors = {}
    for info in proto.training_info:
        if info.algorithm.name == SOLVER_GRAPH_NAME:
            tensors = {t.name: t for t in info.algorithm.initializer}
    state = {}
    for key in keys:
        t = tensors.get(SOLVER_PREFIX + key)
        if t is None:
            raise DLModelFileError(f"{path}: solver state tensor {key!r} is missing; the file is truncated")
        from onnx import numpy_helper
        try:
            state[key] = np.asarray(numpy_helper.to_array(t))
        except Exception as exc:
            raise DLModelFileError(f"{path}: solver state tensor {key!r} is corrupt ({exc})") from None
    for c in solvers.COUNTERS:
        if c not in state:
            raise DLModelFileError(f"{path}: solver step counter {c!r} is missing; the file is corrupt")
    return state


# -- foreign classifiers ----------------------------------------------------------------------
def _image_input(proto, path: Path) -> onnx.ValueInfoProto:
    inputs = real_inputs(proto.graph)
    if len(inputs) != 1:
        raise DLModelFileError(f"{path}: a classifier needs exactly one image input; this graph has "
                               f"{len(inputs)} ({[vi.name for vi in inputs]})")
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


def _graph_output(proto, path: Path) -> onnx.ValueInfoProto:
    outs = list(proto.graph.output)
    if len(outs) != 1:
        raise DLModelFileError(f"{path}: a classifier needs exactly one output (class scores N x K); this "
                               f"graph has {len(outs)} ({[o.name for o in outs]})")
    return outs[0]


def _producer(graph: Graph, name: str):
    for n in graph.nodes:
        if name in n.outputs:
            return n
    return None


def _softmax_over_classes(node, rank: int, opset: int) -> bool:
    axis = int(node.attrs.get("axis", -1 if opset >= 13 else 1))
    return rank == 2 and axis in (1, -1)


def _find_head(graph: Graph, values: dict, logits: str) -> tuple[str | None, str | None]:
    """(head weight, head bias) when the logits come from a fully connected layer, with the
    weight normalised to the (K, features) layout dlbatch's classification head uses."""
    node = _producer(graph, logits)
    trainable = set(graph.trainable)
    uses = {}
    for n in graph.nodes:
        for i in n.inputs:
            uses[i] = uses.get(i, 0) + 1
    if node is not None and node.op_type == "Gemm" and len(node.inputs) >= 2 and node.inputs[1] in trainable \
            and not int(node.attrs.get("transA", 0)):
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
    if node is not None and node.op_type == "Add":
        mm = next((_producer(graph, i) for i in node.inputs if _producer(graph, i) is not None), None)
        bias = next((i for i in node.inputs if i in trainable), None)
        if mm is not None and mm.op_type == "MatMul" and bias is not None and uses.get(mm.outputs[0]) == 1:
            w = next((i for i in mm.inputs if i in trainable), None)
            x = next((i for i in mm.inputs if i != w), None)
            if w is not None and x is not None and mm.inputs[1] == w and values[w].ndim == 2 \
                    and uses.get(w) == 1 and values[bias].shape == (values[w].shape[1],):
                # MatMul(x, W) + b  ->  Gemm(x, W^T, b, transB=1): the same numbers, one node
                values[w] = np.ascontiguousarray(values[w].T)
                gemm_inputs = [x, w, bias]
                idx = graph.nodes.index(mm)
                graph.nodes.remove(node)
                graph.nodes[idx] = type(mm)("Gemm", gemm_inputs, list(node.outputs), {"transB": 1}, mm.name)
                return w, bias
    return None, None


def _read_foreign(proto, path: Path, backend_name: str, device: str, params: dict) -> DLModel:
    where = str(path)
    model_type = manager.model_type("classification")
    table = ParamTable(model_type.name, model_type.param_specs())
    precision, runtime = _runtime(params, table)
    vi = _image_input(proto, path)
    out_vi = _graph_output(proto, path)
    c, h, w = _image_dims(vi, params, path)
    batch_dim = vi.type.tensor_type.shape.dim[0]
    fixed_batch = batch_dim.dim_value if batch_dim.HasField("dim_value") and batch_dim.dim_value > 0 else None
    imported = import_graph(proto, {vi.name: (None, c, h, w)}, where, fixed_batch=fixed_batch)
    graph, values = imported.graph, imported.values
    out_shape = graph.outputs[0].shape
    if len(out_shape) != 2 or out_shape[1] is None or out_shape[1] < 1:
        raise DLModelFileError(f"{path}: output {out_vi.name!r} has shape {out_shape}; an importable classifier "
                               "ends in class scores of shape N x K (K known)")
    k = int(out_shape[1])
    graph.inputs = [ValueInfo(vi.name, (None, c, None, None), graph.inputs[0].dtype if graph.inputs else "float32")]
    graph.outputs = [ValueInfo(out_vi.name, (None, k), graph.outputs[0].dtype)]
    meta: dict[str, Any] = {"input": vi.name, "logits": out_vi.name}
    last = _producer(graph, out_vi.name)
    if last is not None and last.op_type == "Softmax" and _softmax_over_classes(last, 2, graph.opset):
        meta = {"input": vi.name, "logits": last.inputs[0], "output": out_vi.name, "output_is_probability": True}
    head_w, head_b = _find_head(graph, values, meta["logits"])
    if head_w:
        meta["head_weight"] = head_w
    if head_b:
        meta["head_bias"] = head_b
    meta["backbone"] = f"onnx:{proto.graph.name or path.stem}"
    if not graph.trainable:
        raise DLModelFileError(f"{path}: no trainable parameters found (no float initializers read as weights)")
    check_ops(graph, manager.kernels(backend_name), backend_name, where)

    from .create import initial_hyperparameters
    base = {"class_ids": list(range(k)), "image_width": w, "image_height": h, "image_num_channels": c}
    momenta = {round(float(n.attrs.get("momentum", 0.9)), 6) for n in graph.nodes
               if n.op_type == "BatchNormalization"}
    if len(momenta) == 1:
        m = momenta.pop()
        if 0.0 <= m <= 1.0:
            base["batchnorm_momentum"] = m
    hp = initial_hyperparameters(table, model_type, base)
    hp.setdefault("backbone", None)
    if precision is None:
        precision = "float64" if vi.type.tensor_type.elem_type == TensorProto.DOUBLE else "float32"
    check_consistency(hp, model_type, meta)
    model = DLModel(model_type, table, graph, values, hp, meta, backend=backend_name, device=device,
                    precision=precision)
    if runtime is not None:
        model.set_param("runtime", runtime)
    rest = {n: v for n, v in params.items() if n not in IMAGE_PARAMS or _differs(model, n, v)}
    _apply_overrides(model, rest)
    return model


def _differs(model: DLModel, name: str, value) -> bool:
    try:
        return model.get_param(name) != coerce(model._table.spec(name), value)
    except DLParamError:
        return True


__all__ = ["read_dl_model", "write_dl_model", "load_model_proto", "atomic_write", "MIN_OPSET", "MAX_OPSET"]
