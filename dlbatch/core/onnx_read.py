"""Reading a file written by dlbatch (layout: onnx_export): everything restored, so the next
training step is exactly the step the unsaved model would have made."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from onnx import numpy_helper

from . import solvers
from .errors import DLModelFileError, DLParamError
from .graph import Graph, ValueInfo
from .hyperparameters import RUNTIME_PARAMS, check_consistency
from .model import DLModel
from .precision import AUTOCAST_PRECISIONS, storage_precision
from .onnx_export import PREFIX, SOLVER_GRAPH_NAME, SOLVER_PREFIX
from .onnx_import import check_ops, check_opset, initializer_arrays, nodes_from_proto
from .params import ParamTable, coerce
from .plugins import manager
from .read_overrides import apply_overrides, runtime_overrides

REQUIRED_KEYS = ("format_version", "model_type", "precision", "hyperparameters", "meta", "roles", "io",
                 "solver_state")
SUPPORTED_FORMATS = ("1",)


def _json_prop(props: Mapping[str, str], key: str, path: Path):
    try:
        return json.loads(props[PREFIX + key])
    except KeyError:
        raise DLModelFileError(f"{path}: dlbatch metadata {PREFIX + key!r} is missing; the file is truncated "
                               "or was edited") from None
    except ValueError as exc:
        raise DLModelFileError(f"{path}: dlbatch metadata {PREFIX + key!r} is not valid JSON ({exc})") from None


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


def read_dlbatch_file(proto, path: Path, props, backend_name: str, device: str, params: dict) -> DLModel:
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
    precision, runtime = runtime_overrides(params, table)
    stored_precision = props[PREFIX + "precision"]
    if stored_precision not in ("float32", "float64", *AUTOCAST_PRECISIONS):
        raise DLModelFileError(f"{path}: unknown stored precision {stored_precision!r}")
    if precision is None and stored_precision in AUTOCAST_PRECISIONS and \
            stored_precision not in getattr(manager.backend(backend_name), "autocast_precisions", ()):
        precision = storage_precision(stored_precision)  # its weights are float32: a float32 model here
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
    apply_overrides(model, table, params)
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
        try:
            state[key] = np.asarray(numpy_helper.to_array(t))
        except Exception as exc:
            raise DLModelFileError(f"{path}: solver state tensor {key!r} is corrupt ({exc})") from None
    for c in solvers.COUNTERS:
        if c not in state:
            raise DLModelFileError(f"{path}: solver step counter {c!r} is missing; the file is corrupt")
    return state
