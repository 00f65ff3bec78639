"""Loading an .onnx file safely: clear errors for a missing, truncated or corrupt file, and
external tensor data read only from inside the model's folder."""
from __future__ import annotations

import os
from pathlib import Path

import onnx
from onnx import TensorProto

from .errors import DLModelFileError
from .onnx_import import check_domains, check_opset


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


def check_model_file(proto: onnx.ModelProto, path: Path) -> int:
    """The file's ai.onnx opset, after the checks every model file must pass."""
    opset = check_opset(proto, str(path))
    check_domains(proto.graph.node, str(path))
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        msg = str(exc).strip().splitlines()
        raise DLModelFileError(f"{path} is not a valid ONNX model ({msg[0] if msg else type(exc).__name__}); "
                               "the file may be truncated or corrupt") from None
    return opset
