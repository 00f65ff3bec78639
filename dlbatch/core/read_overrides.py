"""Parameters given to read_dl_model: runtime settings first, then hyperparameter overrides
applied like set_dl_model_param, for dlbatch files and foreign networks alike."""
from __future__ import annotations

from .errors import DLParamError
from .params import ParamTable, coerce

IMAGE_PARAMS = ("image_width", "image_height", "image_num_channels", "image_dimensions")


def runtime_overrides(params: dict, table: ParamTable) -> tuple[str | None, str | None]:
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


def apply_overrides(model, table: ParamTable, params: dict) -> None:
    """Caller's parameters, validated and applied like set_dl_model_param (class_ids first,
    so class_names/class_weights given together with them fit)."""
    params = dict(params)
    if "num_classes" in params:
        if "class_ids" in params:
            raise DLParamError("give class_ids or num_classes, not both")
        k = coerce(table.spec("num_classes"), params.pop("num_classes"))
        if k < 1:
            raise DLParamError("num_classes must be >= 1")
        params = {"class_ids": list(range(k)), **params}
    order = sorted(params, key=lambda n: (n != "class_ids", n not in IMAGE_PARAMS))
    for name in order:
        model.set_param(name, params[name])


def differs(model, table: ParamTable, name: str, value) -> bool:
    """Whether `value` would change the model's parameter `name`."""
    try:
        return model.get_param(name) != coerce(table.spec(name), value)
    except DLParamError:
        return True
