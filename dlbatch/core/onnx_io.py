"""read_dl_model / write_dl_model: one .onnx file per model.

A file written by dlbatch holds the inference graph with all weights and batch-norm statistics,
every non-runtime hyperparameter, the model type's metadata, the role of each initializer and
the solver state (layout: onnx_export; reading: onnx_read). Any other ONNX network is imported
(onnx_foreign) and made into a model by its model type (a classifier by default).
"""
from __future__ import annotations

from typing import Any

from .errors import DLModelFileError, DLParamError
from .model import DLModel
from .onnx_export import PREFIX, write_model_file
from .onnx_file import check_model_file, load_model_proto
from .onnx_foreign import read_foreign
from .onnx_import import MAX_OPSET, MIN_OPSET
from .onnx_read import read_dlbatch_file
from .plugins import manager


def write_dl_model(model: DLModel, path) -> None:
    """Write `model` to one self-contained .onnx file, atomically."""
    if not isinstance(model, DLModel):
        raise DLParamError(f"write_dl_model needs a DLModel, got {type(model).__name__}")
    write_model_file(model, path)


def read_dl_model(path, backend: str | None = None, device: str = "cpu", **params: Any) -> DLModel:
    """A DLModel from an .onnx file: a dlbatch file (everything restored, training resumes
    exactly) or a network exported elsewhere (imported for fine-tuning; `type=` names the
    model type to make of it, "classification" by default). Keyword parameters override
    stored hyperparameters and are validated like set_dl_model_param."""
    proto, path = load_model_proto(path)
    check_model_file(proto, path)
    props = {p.key: p.value for p in proto.metadata_props}
    backend_name = backend or manager.default_backend()
    manager.backend(backend_name)  # unknown backend: a clear error listing the available ones
    try:
        if PREFIX + "format_version" in props:
            return read_dlbatch_file(proto, path, props, backend_name, device, params)
        return read_foreign(proto, path, backend_name, device, params)
    except DLModelFileError as exc:
        if str(path) in str(exc):
            raise
        raise DLModelFileError(f"{path}: {exc}") from exc.__cause__  # every file error names the file


__all__ = ["read_dl_model", "write_dl_model", "load_model_proto", "MIN_OPSET", "MAX_OPSET"]
