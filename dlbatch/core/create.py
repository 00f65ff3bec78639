"""create_dl_model: a new model of a registered type with its default graph."""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import DLParamError
from .model import RUNTIME_PARAMS, DLModel, check_consistency
from .params import ParamTable, coerce
from .plugins import manager
from .system import get_system


def initial_hyperparameters(table: ParamTable, model_type, params: dict[str, Any]) -> dict[str, Any]:
    """Defaults, then the model type's defaults, then the caller's values, all validated."""
    hp = {n: table.specs[n].default for n in table.stored_names()}
    hp.update(model_type.default_params())
    hp["seed"] = get_system("seed")
    params = dict(params)
    if "num_classes" in params and "class_ids" not in params:
        k = coerce(table.spec("num_classes"), params.pop("num_classes"))
        if k < 1:
            raise DLParamError("num_classes must be >= 1")
        params["class_ids"] = list(range(k))
    elif "num_classes" in params:
        raise DLParamError("give class_ids or num_classes, not both")
    for name, value in params.items():
        spec = table.spec(name)
        if spec.readonly:
            raise DLParamError(f"parameter {name!r} is read-only (derived from the model)")
        value = coerce(spec, value)
        if name == "image_dimensions":
            hp["image_width"], hp["image_height"], hp["image_num_channels"] = value
        else:
            hp[name] = value
    if hp.get("class_ids") is None:
        raise DLParamError(f"a {model_type.name} model needs its classes: pass class_ids=[...] "
                           "(your label ids) or num_classes=K")
    if hp.get("class_names") is None:
        hp["class_names"] = [str(c) for c in hp["class_ids"]]
    return hp


def create_dl_model(type: str, backbone: str | None = None, *, backend: str | None = None,
                    device: str = "cpu", runtime: str | None = None, precision: str = "float32",
                    **params: Any) -> DLModel:
    """A new `type` model ("classification", ...) with freshly initialised weights.

    Every keyword is a model parameter (SPEC section 7), validated as set_dl_model_param does;
    `seed` fixes the initial weights (default: set_system("seed")).
    """
    model_type = manager.model_type(type)
    table = ParamTable(model_type.name, model_type.param_specs())
    runtime_values = {"backend": backend or manager.default_backend(), "device": device,
                      "precision": precision}
    for name in ("backend", "device", "precision"):
        runtime_values[name] = coerce(table.spec(name), runtime_values[name])
    if runtime is not None:
        coerce(table.spec("runtime"), runtime)
    hp = initial_hyperparameters(table, model_type, params)
    names = list(model_type.backbones())
    backbone = backbone or names[0]
    if backbone not in names:
        raise DLParamError(f"unknown backbone {backbone!r} for {model_type.name}; available: "
                           f"{', '.join(names)}")
    hp["backbone"] = backbone if "backbone" in table.specs else hp.get("backbone")
    rng = np.random.default_rng(hp["seed"])
    graph, values, meta = model_type.build(hp, backbone, rng)
    meta = dict(meta, backbone=backbone)
    check_consistency(hp, model_type, meta)
    model = DLModel(model_type, table, graph, values, hp, meta, **runtime_values)
    if runtime is not None:
        model.set_param("runtime", runtime)
    return model


__all__ = ["create_dl_model", "RUNTIME_PARAMS"]
