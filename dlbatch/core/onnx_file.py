"""Loading an .onnx file safely: clear errors for a missing, truncated, oversized or corrupt
file; external tensor data read only from inside the model's folder, and only after every
declared size was checked against the bytes really there (no allocation a file merely
declares); the ONNX checker with type and shape inference before anything is imported."""
from __future__ import annotations

import math
import os
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from .errors import DLModelFileError
from .onnx_reference import MAX_STATIC_TENSOR_BYTES
from .onnx_import import CONSTANT_TYPES, SUPPORTED_DTYPES, check_domains, check_opset, type_name


def _all_tensors(proto: onnx.ModelProto):
    def sparse(s: onnx.SparseTensorProto):
        yield s.values
        yield s.indices

    def graph_tensors(g: onnx.GraphProto):
        yield from g.initializer
        for s in g.sparse_initializer:
            yield from sparse(s)
        for n in g.node:
            for a in n.attribute:
                if a.HasField("t"):
                    yield a.t
                yield from a.tensors
                if a.HasField("sparse_tensor"):
                    yield from sparse(a.sparse_tensor)
                for s in a.sparse_tensors:
                    yield from sparse(s)
                if a.HasField("g"):
                    yield from graph_tensors(a.g)
                for sub in a.graphs:
                    yield from graph_tensors(sub)
    yield from graph_tensors(proto.graph)
    for info in proto.training_info:
        yield from graph_tensors(info.initialization)
        yield from graph_tensors(info.algorithm)


MAX_FILE_BYTES = 2 ** 31 - 1  # protobuf cannot parse more; larger networks keep weights as external data


def _element_size(t: TensorProto) -> int | None:
    """Bytes per element of a fixed-size ONNX type, None for strings and unknown types."""
    try:
        dtype = helper.tensor_dtype_to_np_dtype(t.data_type)
    except (KeyError, ValueError, TypeError):
        return None
    return None if dtype.kind in "OSU" else dtype.itemsize


def _declared_bytes(t: TensorProto, path: Path) -> int | None:
    """The byte length the tensor's dims and type declare (None when the type has no fixed size)."""
    if any(d < 0 for d in t.dims):
        raise DLModelFileError(f"{path}: tensor {t.name!r} declares a negative dimension {list(t.dims)}; "
                               "the file is corrupt")
    size = _element_size(t)
    return None if size is None else math.prod(t.dims) * size


def _external_ranges(proto: onnx.ModelProto, path: Path) -> list[tuple[TensorProto, Path, int, int]]:
    """(tensor, file, offset, length) of every external tensor, validated before anything is
    read: a location must be a relative path that stays inside the model's folder (no absolute
    paths, no '..', no symlinks leading out), the range must lie inside its file, match the
    size the tensor's dims declare and overlap no other tensor's range, so reading needs no
    more memory than the data files hold."""
    base = path.parent.resolve()
    ranges = []
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
        available = target.stat().st_size - offset
        if offset < 0 or (length is not None and length < 0) or available < (length or 0):
            raise DLModelFileError(f"{path}: external data {location!r} of tensor {t.name!r} is truncated: it "
                                   f"declares bytes {offset}..{offset + (length or 0)}, the file has "
                                   f"{target.stat().st_size}")
        length = available if length is None else length
        declared = _declared_bytes(t, path)
        if declared is not None and declared != length:
            raise DLModelFileError(f"{path}: tensor {t.name!r} declares shape {list(t.dims)} "
                                   f"({declared} bytes) but its external data {location!r} holds {length} bytes; "
                                   "the file is corrupt")
        ranges.append((t, target, offset, length))
    by_file: dict[Path, list] = {}
    for t, target, offset, length in ranges:
        by_file.setdefault(target, []).append((offset, offset + length, t.name))
    for target, spans in by_file.items():
        spans.sort()
        for (_, end, first), (start, _, second) in zip(spans, spans[1:]):
            if start < end:
                raise DLModelFileError(f"{path}: tensors {first!r} and {second!r} share bytes of the external "
                                       f"data file {target.name!r}; each tensor must have its own range")
    return ranges


def _load_external_data(proto: onnx.ModelProto, path: Path) -> None:
    """Read tensors stored next to the model, after _external_ranges has checked them all."""
    for t, target, offset, length in _external_ranges(proto, path):
        with open(target, "rb") as fh:
            fh.seek(offset)
            data = fh.read(length)
        if len(data) != length:
            raise DLModelFileError(f"{path}: external data {target.name!r} of tensor {t.name!r} is truncated")
        t.raw_data = data
        del t.external_data[:]
        t.data_location = TensorProto.DEFAULT


def _check_declared_sizes(proto: onnx.ModelProto, path: Path) -> None:
    """Every tensor's raw bytes are exactly what its dims and type declare (training_info
    included, which the ONNX checker skips), so no later step allocates a declared size."""
    for t in _all_tensors(proto):
        if not t.HasField("raw_data"):
            continue
        declared = _declared_bytes(t, path)
        if declared is not None and declared != len(t.raw_data):
            raise DLModelFileError(f"{path}: tensor {t.name!r} declares shape {list(t.dims)} ({declared} bytes) "
                                   f"but holds {len(t.raw_data)} bytes; the file is truncated or corrupt")


def load_model_proto(path) -> tuple[onnx.ModelProto, Path]:
    """The ModelProto in `path`, with clear errors for a missing, truncated or corrupt file."""
    path = Path(os.fspath(path))
    if not path.exists():
        raise DLModelFileError(f"model file {path} does not exist")
    if path.is_dir():
        raise DLModelFileError(f"{path} is a folder, not a model file")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DLModelFileError(f"cannot read {path}: {exc}") from exc
    if size > MAX_FILE_BYTES:
        raise DLModelFileError(f"{path} is {size / 2**30:.1f} GiB; an ONNX file holds at most 2 GiB (the protobuf "
                               "limit), so it is corrupt or not an ONNX file. Larger networks keep their weights "
                               "as external data files next to the model")
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
    _check_declared_sizes(proto, path)
    return proto, path


def check_model_file(proto: onnx.ModelProto, path: Path) -> int:
    """The file's ai.onnx opset, after the checks every model file must pass."""
    opset = check_opset(proto, str(path))
    check_domains(proto.graph.node, str(path))
    for t in proto.graph.initializer:  # named before the type checker's less direct complaint
        if t.data_type not in CONSTANT_TYPES:
            raise DLModelFileError(f"{path}: initializer {t.name!r} has data type {type_name(t.data_type)}, which "
                                   f"dlbatch does not support; supported: {', '.join(SUPPORTED_DTYPES)}")
    try:
        onnx.checker.check_model(proto)
        # types too (an int Conv weight), and the static shapes constant inputs give (data_prop)
        inferred = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
    except Exception as exc:
        msg = str(exc).strip().splitlines()
        reason = msg[0] if msg else type(exc).__name__
        raise DLModelFileError(f"{path} is not a valid ONNX model ({reason}); the file is truncated or corrupt, "
                               "or its exporter broke the ONNX rules; re-export it") from None
    _check_static_sizes(inferred, path)
    return opset


def _check_static_sizes(inferred: onnx.ModelProto, path: Path) -> None:
    """Refuse a graph that makes a tensor of a fixed shape over MAX_STATIC_TENSOR_BYTES (a
    ConstantOfShape/Expand/Tile of constants declaring gigabytes), before constant folding
    would allocate it. Tensors with a free dimension (the batch) are not bounded here."""
    g = inferred.graph
    producer = {o: n.name or n.op_type for n in g.node for o in n.output}
    for vi in list(g.value_info) + list(g.output):
        tt = vi.type.tensor_type
        if not tt.HasField("shape") or not all(d.HasField("dim_value") for d in tt.shape.dim):
            continue
        size = _element_size(onnx.TensorProto(data_type=tt.elem_type))
        dims = [d.dim_value for d in tt.shape.dim]
        if size is not None and math.prod(dims) * size > MAX_STATIC_TENSOR_BYTES:
            raise DLModelFileError(f"{path}: node {producer.get(vi.name, '?')!r} makes tensor {vi.name!r} of the fixed "
                                   f"shape {dims} ({math.prod(dims) * size} bytes, more than the "
                                   f"{MAX_STATIC_TENSOR_BYTES} dlbatch allows for one tensor); the file is corrupt "
                                   "or hostile")
