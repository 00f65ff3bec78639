"""A model's hyperparameters as a whole: the initial set for a new model and the rules that
tie several parameters together (one name and weight per class, known loss terms).

Kept apart from `DLModel` so that creating, reading and changing a model share one set of
rules without importing each other.
"""
from __future__ import annotations

from typing import Any, Mapping

from .errors import DLParamError, DLPluginError
from .model_type import ModelType
from .params import MAX_CLASSES, ParamTable, coerce
from .plugins import manager
from .system import get_system

RUNTIME_PARAMS = ("backend", "device", "runtime", "precision")


def initial_hyperparameters(table: ParamTable, model_type: ModelType, params: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults, then the model type's defaults, then the caller's values, all validated."""
    hp = {n: table.specs[n].default for n in table.stored_names()}
    hp.update(model_type.default_params())
    hp["seed"] = get_system("seed")
    params = dict(params)
    if "num_classes" in params and "class_ids" not in params:
        k = coerce(table.spec("num_classes"), params.pop("num_classes"))
        if not 1 <= k <= MAX_CLASSES:
            raise DLParamError(f"num_classes must be in 1..{MAX_CLASSES}, got {k}")
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


def check_consistency(hp: Mapping[str, Any], model_type: ModelType, meta: Mapping[str, Any]) -> None:
    """Cross-parameter rules: one name and weight per class, known loss terms and losses."""
    k = len(hp["class_ids"])
    if len(hp["class_names"]) != k:
        raise DLParamError(f"class_names has {len(hp['class_names'])} entries but there are {k} class_ids; "
                           "give one name per class id")
    if hp.get("class_weights") is not None and len(hp["class_weights"]) != k:
        raise DLParamError(f"class_weights has {len(hp['class_weights'])} entries but there are {k} "
                           "class_ids; give one weight per class id")
    losses = hp.get("losses") or {}
    terms = {t.name for t in model_type.loss_terms(meta)}
    for term, loss_name in losses.items():
        if term not in terms:
            raise DLParamError(f"losses: {term!r} is not a loss term of a {model_type.name} model; "
                               f"its terms are {sorted(terms)}")
        if not isinstance(loss_name, str):
            raise DLParamError(f"losses[{term!r}] must be the name of a registered loss")
        try:
            manager.loss(loss_name)
        except DLPluginError as exc:
            raise DLParamError(f"losses[{term!r}]: {exc}") from None
