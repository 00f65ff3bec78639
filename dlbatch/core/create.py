"""create_dl_model: a new model of a registered type with its default graph."""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from .errors import DLParamError
from .hyperparameters import check_consistency, initial_hyperparameters
from .model import DLModel
from .params import ParamTable, coerce
from .plugins import manager


def create_dl_model(type: str, backbone: str | None = None, *, backend: str | None = None,
                    device: str = "cpu", runtime: str | None = None, precision: str = "float32",
                    **params: Any) -> DLModel:
    """A new model of a registered type with freshly initialised weights.

    Every further keyword is a model parameter (see the parameter reference), validated as
    `set_dl_model_param` does; `seed` fixes the initial weights (default: `set_system("seed")`).

    Args:
        type: registered model type: "classification", "segmentation", "detection" or a plugin's.
        backbone: a built-in backbone ("compact", "resnet18"; default the type's first) or the
            path of an ONNX classifier file whose feature maps the model builds on.
        backend: compute backend ("numpy", "torch", ...; default from plugins.toml).
        device: device of the backend, e.g. "cpu" or "cuda:0".
        runtime: "cpu" or "gpu" (HALCON's runtime; "gpu" picks the first CUDA device).
        precision: "float32" (default), "float64", or "bfloat16" on the torch backend.
        **params: model parameters, e.g. class_ids, image_dimensions, batch_size, learning_rate.

    Returns:
        The new DLModel.

    Raises:
        DLParamError: an unknown model type, backbone or parameter, or a value out of range.
        DLPluginError: the backend is not registered.

    Examples:
        >>> import dlbatch
        >>> model = dlbatch.create_dl_model("classification", backbone="compact", class_ids=[0, 1],
        ...                                 image_dimensions=[16, 16, 3], batch_size=4)
        >>> model.get_param("num_classes")
        2
    """
    model_type = manager.model_type(type)
    table = ParamTable(model_type.name, model_type.param_specs())
    for name, value in (("backend", backend), ("backbone", backbone)):
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise DLParamError(f"{name} must be a name (a string){' or an .onnx path' if name == 'backbone' else ''}, "
                               f"got {value.__class__.__name__}")
    runtime_values = {"backend": backend if backend is not None else manager.default_backend(), "device": device,
                      "precision": precision}
    for name in ("backend", "device", "precision"):
        runtime_values[name] = coerce(table.spec(name), runtime_values[name])
    if runtime is not None:
        coerce(table.spec("runtime"), runtime)
    hp = initial_hyperparameters(table, model_type, params)
    names = list(model_type.backbones())
    backbone = backbone if backbone is not None else names[0]
    is_file = isinstance(backbone, (str, os.PathLike)) and os.fspath(backbone).lower().endswith(".onnx")
    if backbone not in names and not (is_file and model_type.reads_backbone_files):
        files = ", or the path of an ONNX classifier file (.onnx)" if model_type.reads_backbone_files else ""
        raise DLParamError(f"unknown backbone {backbone!r} for {model_type.name}; available: "
                           f"{', '.join(names)}{files}")
    if is_file:
        backbone = os.fspath(backbone)
    hp["backbone"] = backbone if "backbone" in table.specs else hp.get("backbone")
    rng = np.random.default_rng(hp["seed"])
    graph, values, meta = model_type.build(hp, backbone, rng)
    meta = dict(meta, backbone=backbone)
    check_consistency(hp, model_type, meta)
    model = DLModel(model_type, table, graph, values, hp, meta, **runtime_values)
    if runtime is not None:
        model.set_param("runtime", runtime)
    return model


__all__ = ["create_dl_model"]
