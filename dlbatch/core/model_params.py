"""What DLModel's get_param and set_param do beyond the parameter table: the parameters derived
from the model (read through its public state API) and what setting one changes (the
hyperparameters, or where the model runs).

These functions only work out values; the model applies them itself (`_commit_hp`, `_move`),
so it stays the one owner of its state and a refused value leaves it exactly as it was.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .errors import DLBackendError, DLParamError
from .params import ParamSpec, coerce
from .plugins import manager

# parameters that move the model to another backend, device or precision instead of changing
# a hyperparameter
PLACEMENT = ("backend", "device", "precision", "runtime")


def param_value(model, spec: ParamSpec, name: str) -> Any:
    """The value `model.get_param(name)` returns: derived from the model, or the stored
    hyperparameter (lists are copies, so a caller cannot change the model through them)."""
    hp = model.hyperparameters
    if name == "type":
        return model.model_type.name
    if name == "num_classes":
        return len(hp["class_ids"])
    if name == "num_trainable_params":
        values = model.values
        return int(sum(int(np.prod(tuple(values[n].shape))) for n in model.graph.trainable))
    if name == "image_dimensions":
        return [hp["image_width"], hp["image_height"], hp["image_num_channels"]]
    if name == "backend":
        return model.backend_name
    if name == "device":
        return model.device
    if name == "runtime":
        return "gpu" if model.device.startswith("cuda") else "cpu"
    if name == "precision":
        return model.compute_precision
    if name == "losses":
        return model.loss_names()
    value = hp.get(spec.name)
    return list(value) if isinstance(value, list) else value


def settable_value(spec: ParamSpec, value: Any) -> Any:
    """`value` converted and checked for a parameter that set_param may change.

    Raises:
        DLParamError: a read-only or fixed parameter, or a bad value.
    """
    if spec.readonly:
        raise DLParamError(f"parameter {spec.name!r} is read-only (derived from the model)")
    if spec.fixed:
        raise DLParamError(f"parameter {spec.name!r} shapes the network and is fixed when the model is created; "
                           f"create a new model with create_dl_model(..., {spec.name}=...)")
    return coerce(spec, value)


def placement(name: str, value: str, backend_name: str, device: str) -> dict[str, str]:
    """Where setting a PLACEMENT parameter moves a model now on (backend_name, device): the
    changed ones of backend_name, device and precision.

    runtime "gpu" keeps a CUDA device (else cuda:0) and the backend when that backend can use
    it, else takes the torch backend.

    Raises:
        DLBackendError: the torch backend cannot use the GPU either.
        DLPluginError: an unknown backend.
    """
    if name == "backend":
        return {"backend_name": value}
    if name == "device":
        return {"device": value}
    if name == "precision":
        return {"precision": value}
    if value == "cpu":
        return {"device": "cpu"}
    device = device if device.startswith("cuda") else "cuda:0"
    try:
        manager.backend(backend_name).check_device(device)
    except DLBackendError:
        if backend_name == "torch":
            raise
        backend_name = "torch"
    return {"backend_name": backend_name, "device": device}


def updated_hyperparameters(hp: Mapping[str, Any], name: str, value: Any) -> tuple[dict, list[str]]:
    """The hyperparameters after setting `name` (a new dict) and the stored names that change.

    image_dimensions is stored as image_width, image_height and image_num_channels; new
    class_ids bring default class_names when the count changes and drop class_weights of
    another count.
    """
    new = dict(hp)
    if name == "image_dimensions":
        new.update(image_width=value[0], image_height=value[1], image_num_channels=value[2])
        return new, ["image_width", "image_height", "image_num_channels"]
    new[name] = value
    if name == "class_ids":
        if len(new.get("class_names") or []) != len(value):
            new["class_names"] = [str(c) for c in value]
        if new.get("class_weights") is not None and len(new["class_weights"]) != len(value):
            new["class_weights"] = None
    return new, [name]
