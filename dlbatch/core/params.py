"""The parameter table (SPEC section 7): names, types, ranges, defaults, and per model type.

A model's hyperparameters are a plain dict validated through `coerce`, so every setter and
reader shares one definition of what a valid value is.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from .errors import DLParamError, did_you_mean

Check = Callable[[Any], str | None]  # returns a description of the problem, or None


@dataclass(frozen=True)
class ParamSpec:
    """One model parameter. `kind` is one of: float, int, str, bool, int_list, float_list,
    str_list, dict, any. `model_types` None means every model type. Runtime parameters are
    never written to model files; read-only ones are derived from the model; fixed ones are
    given to create_dl_model and shape the network, so they cannot change afterwards."""

    name: str
    kind: str
    default: Any = None
    doc: str = ""
    choices: tuple | None = None
    check: Check | None = None
    model_types: tuple[str, ...] | None = None
    runtime: bool = False
    readonly: bool = False
    nullable: bool = False
    fixed: bool = False


def positive(x) -> str | None:
    return None if x > 0 else "must be > 0"


def non_negative(x) -> str | None:
    return None if x >= 0 else "must be >= 0"


def at_most(limit: int):
    """A size bound: larger values would allocate absurd amounts of memory or run for minutes
    instead of failing clearly."""
    def check(x) -> str | None:
        return None if x <= limit else f"must be <= {limit}"
    return check


MAX_IMAGE_SIDE = 1 << 15  # pixels per side of the network input
MAX_CHANNELS = 1 << 12
MAX_CLASSES = 1 << 16


def in_unit_interval(x) -> str | None:
    return None if 0 <= x < 1 else "must be in [0, 1)"


def nonempty(x) -> str | None:
    return None if len(x) > 0 else "must not be empty"


def unique(x) -> str | None:
    return None if len(set(x)) == len(x) else "must not contain duplicates"


def all_of(*checks: Check) -> Check:
    def check(x):
        for c in checks:
            problem = c(x)
            if problem:
                return problem
        return None
    return check


GENERIC: list[ParamSpec] = [
    ParamSpec("type", "str", readonly=True, doc="model type (classification, detection, segmentation)"),
    ParamSpec("batch_size", "int", 1, "images per micro-batch", check=positive),
    ParamSpec("batch_size_multiplier", "int", 1, "micro-batches averaged into one update", check=positive),
    ParamSpec("learning_rate", "float", 0.001, "solver step size", check=positive),
    ParamSpec("momentum", "float", 0.9, "SGD momentum mu", check=in_unit_interval),
    ParamSpec("weight_prior", "float", 0.0, "L2 regularization strength", check=non_negative),
    ParamSpec("solver_type", "str", "sgd", "weight update rule", choices=("sgd", "adam")),
    ParamSpec("adam_beta1", "float", 0.9, "Adam first-moment decay", check=in_unit_interval),
    ParamSpec("adam_beta2", "float", 0.999, "Adam second-moment decay", check=in_unit_interval),
    ParamSpec("adam_epsilon", "float", 1e-8, "Adam denominator offset", check=positive),
    ParamSpec("class_ids", "int_list", None, "the user's class ids, mapped to 0..K-1",
              check=all_of(nonempty, unique, lambda v: None if len(v) <= MAX_CLASSES else
                           f"must hold at most {MAX_CLASSES} classes")),
    ParamSpec("class_names", "str_list", None, "one name per class id"),
    ParamSpec("class_weights", "float_list", None, "per-class loss weights", nullable=True,
              check=lambda v: None if all(w >= 0 for w in v) else "weights must be >= 0"),
    ParamSpec("num_classes", "int", readonly=True, doc="number of classes (len(class_ids))"),
    ParamSpec("image_width", "int", 224, "input width in pixels", check=all_of(positive, at_most(MAX_IMAGE_SIDE))),
    ParamSpec("image_height", "int", 224, "input height in pixels",
              check=all_of(positive, at_most(MAX_IMAGE_SIDE))),
    ParamSpec("image_num_channels", "int", 3, "input channels", check=all_of(positive, at_most(MAX_CHANNELS))),
    ParamSpec("image_dimensions", "int_list", None, "[width, height, channels]",
              check=lambda v: None if len(v) == 3 and all(d > 0 for d in v) and max(v[:2]) <= MAX_IMAGE_SIDE
              and v[2] <= MAX_CHANNELS else f"must be 3 positive ints, sides <= {MAX_IMAGE_SIDE}, channels "
              f"<= {MAX_CHANNELS}"),
    ParamSpec("image_range_min", "float", -127.0, "value of black after preprocessing"),
    ParamSpec("image_range_max", "float", 128.0, "value of white after preprocessing"),
    ParamSpec("batchnorm_momentum", "float", 0.9, "running = m*running + (1-m)*batch",
              check=lambda v: None if 0 <= v <= 1 else "must be in [0, 1]"),
    ParamSpec("batchnorm_sync", "bool", False, "data-parallel training: batch-norm statistics over every "
              "rank's samples (SyncBatchNorm) instead of per rank"),
    ParamSpec("num_trainable_params", "int", readonly=True, doc="number of trainable scalars"),
    ParamSpec("losses", "dict", None, "loss-term name -> registered loss name"),
    ParamSpec("seed", "int", 42, "seed for weight initialisation and dropout",
              check=non_negative),
    ParamSpec("runtime", "str", "cpu", "cpu or gpu", choices=("cpu", "gpu"), runtime=True),
    ParamSpec("device", "str", "cpu", "device of the backend, e.g. cpu or cuda:0", runtime=True),
    ParamSpec("backend", "str", None, "compute backend plugin name", runtime=True),
    ParamSpec("precision", "str", "float32", "floating-point type of weights and activations; "
              "bfloat16 (torch backend): forward under bfloat16 autocast, float32 weights and solver state",
              choices=("float32", "float64", "bfloat16"), runtime=True),
]

_KIND_NAMES = {
    "float": "a number", "int": "an integer", "str": "a string", "bool": "true/false",
    "int_list": "a list of integers", "float_list": "a list of numbers",
    "str_list": "a list of strings", "dict": "a mapping", "any": "any value",
}


def _as_int(v):
    if isinstance(v, bool):
        raise TypeError
    if isinstance(v, int):
        return v
    if hasattr(v, "dtype") and getattr(v, "ndim", 1) == 0 and v.dtype.kind in "iu":
        return int(v)
    if isinstance(v, float) and v.is_integer() and abs(v) < 2.0 ** 63:
        return int(v)
    raise TypeError


def _as_float(v):
    if isinstance(v, bool):
        raise TypeError
    f = float(v)
    if not math.isfinite(f):
        raise ValueError
    return f


def _as_list(v, item):
    if isinstance(v, (str, bytes, dict)):
        raise TypeError
    return [item(x) for x in list(v)]


def _convert(spec: ParamSpec, value):
    k = spec.kind
    if k == "float":
        return _as_float(value)
    if k == "int":
        return _as_int(value)
    if k == "str":
        if not isinstance(value, str):
            raise TypeError
        return value
    if k == "bool":
        if not isinstance(value, bool):
            raise TypeError
        return value
    if k == "int_list":
        return _as_list(value, _as_int)
    if k == "float_list":
        return _as_list([value] if isinstance(value, (int, float)) else value, _as_float)
    if k == "str_list":
        return _as_list(value, lambda s: s if isinstance(s, str) else (_ for _ in ()).throw(TypeError))
    if k == "dict":
        if not isinstance(value, dict):
            raise TypeError
        return dict(value)
    return value


def coerce(spec: ParamSpec, value) -> Any:
    """Return `value` converted to the parameter's type, or raise DLParamError that says what
    is allowed."""
    if value is None and spec.nullable:
        return None
    try:
        out = _convert(spec, value)
    except (TypeError, ValueError, OverflowError):
        raise DLParamError(f"parameter {spec.name!r} must be {_KIND_NAMES[spec.kind]}"
                           f"{' (or None)' if spec.nullable else ''}, got {value!r} "
                           f"({type(value).__name__})") from None
    if spec.choices is not None and out not in spec.choices:
        raise DLParamError(f"parameter {spec.name!r} got {out!r}; allowed values: "
                           f"{', '.join(map(repr, spec.choices))}")
    if spec.check is not None:
        problem = spec.check(out)
        if problem:
            raise DLParamError(f"parameter {spec.name!r} got {value!r}: {problem}")
    return out


class ParamTable:
    """Generic specs plus those of one model type; unknown names list what exists."""

    def __init__(self, model_type: str, extra: Iterable[ParamSpec] = ()):
        self.model_type = model_type
        self.specs: dict[str, ParamSpec] = {}
        for spec in [*GENERIC, *extra]:
            if spec.model_types is None or model_type in spec.model_types:
                self.specs[spec.name] = spec

    def spec(self, name: str) -> ParamSpec:
        if not isinstance(name, str) or name not in self.specs:
            raise DLParamError(f"unknown parameter {name!r} for a {self.model_type} model; "
                               f"{did_you_mean(name, self.specs)}")
        return self.specs[name]

    def stored_names(self) -> list[str]:
        """Names kept in the model's hyperparameter dict (not derived, not runtime)."""
        return [n for n, s in self.specs.items() if not s.readonly and not s.runtime
                and n != "image_dimensions"]
