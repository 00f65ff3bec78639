"""The augmentation parameters of `augment_dl_samples`, under HALCON's names and checked once.

HALCON's `create_dl_train_param`/`augment_dl_samples` take the augmentation as a dictionary;
dlbatch takes the same dictionary (JSON from the CLI, a dict from Python) and turns it into a
frozen AugmentParams here, so that a typo or a value out of range fails before training starts,
with the allowed values in the message.

    augmentation_percentage     0..100 (default 50): share of the samples augmented
    mirror                      "off" (default), "r", "c", "rc"
    rotate                      0 (default), 90, 180
    rotate_range                degrees >= 0 (default 0): a random angle in [-range, range]
    brightness_variation        grey values 0..255 >= 0 (default 0): added uniformly in [-v, v]
    brightness_variation_spot   grey values 0..255 >= 0 (default 0): the same in a circular spot
    crop_percentage             "off" (default) or 1..100: a random window of that share of
                                width and height, scaled back to the full size
    ignore_direction            rectangle2 only (default False): phi of the augmented boxes in
                                (-pi/2, pi/2] instead of (-pi, pi]
    class_ids_no_orientation    rectangle2 only (default []): classes whose phi is kept in
                                (-pi/2, pi/2] like ignore_direction (they have no front)
"""
from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from ..core.errors import DLParamError, did_you_mean

MIRROR_VALUES = ("off", "r", "c", "rc")
ROTATE_VALUES = (0, 90, 180)

#: method names in the order in which augment_dl_samples lists the enabled ones (the random
#: choice of one method per sample indexes this order, so it is part of the random stream)
METHODS = ("mirror", "rotate", "rotate_range", "brightness_variation", "brightness_variation_spot",
           "crop_percentage")


def _number(name: str, value: Any, low: float, high: float | None = None) -> float:
    """`value` as a finite float in [low, high], else DLParamError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise DLParamError(f"augmentation parameter {name!r} must be a number, got {value!r}")
    value = float(value)
    if value < low or (high is not None and value > high):
        upper = f" and <= {high:g}" if high is not None else ""
        raise DLParamError(f"augmentation parameter {name!r} must be >= {low:g}{upper}, got {value:g}")
    return value


def _flag(name: str, value: Any) -> bool:
    """A bool from True/False or HALCON's 'true'/'false'."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise DLParamError(f"augmentation parameter {name!r} must be true or false, got {value!r}")


@dataclass(frozen=True)
class AugmentParams:
    """Validated augmentation parameters (HALCON names); build with `from_dict`."""

    augmentation_percentage: float = 50.0
    mirror: str = "off"
    rotate: int = 0
    rotate_range: float = 0.0
    brightness_variation: float = 0.0
    brightness_variation_spot: float = 0.0
    crop_percentage: float | str = "off"
    ignore_direction: bool = False
    class_ids_no_orientation: tuple[int, ...] = field(default_factory=tuple)

    @classmethod
    def from_dict(cls, params: Mapping[str, Any] | "AugmentParams" | None) -> "AugmentParams":
        """Parameters from a dict of HALCON names; missing names take HALCON's defaults and None
        or {} means no augmentation method enabled. An unknown name or a bad value raises
        DLParamError saying what is allowed."""
        if isinstance(params, AugmentParams):
            return params
        if params is None:
            return cls()
        if not isinstance(params, Mapping):
            raise DLParamError(f"augmentation parameters must be a dict of HALCON names, got "
                               f"{type(params).__name__}")
        names = [f.name for f in cls.__dataclass_fields__.values()]
        unknown = [k for k in params if k not in names]
        if unknown:
            raise DLParamError(f"unknown augmentation parameter {unknown[0]!r}; {did_you_mean(unknown[0], names)}")
        values = {name: _CHECKS[name](name, value) for name, value in params.items()}
        return cls(**values)

    def to_dict(self) -> dict:
        """The parameters as a JSON-friendly dict that from_dict reads back."""
        d = asdict(self)
        d["class_ids_no_orientation"] = list(self.class_ids_no_orientation)
        return d

    def enabled_methods(self) -> tuple[str, ...]:
        """The methods these parameters switch on, in METHODS order."""
        on = {"mirror": self.mirror != "off", "rotate": self.rotate != 0, "rotate_range": self.rotate_range > 0,
              "brightness_variation": self.brightness_variation > 0,
              "brightness_variation_spot": self.brightness_variation_spot > 0,
              "crop_percentage": self.crop_percentage != "off"}
        return tuple(m for m in METHODS if on[m])


def _mirror(name, value):
    if value not in MIRROR_VALUES:
        raise DLParamError(f"augmentation parameter {name!r} must be one of {list(MIRROR_VALUES)} "
                           f"('r' mirrors the rows, 'c' the columns, 'rc' either or both), got {value!r}")
    return value


def _rotate(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value not in ROTATE_VALUES:
        raise DLParamError(f"augmentation parameter {name!r} must be one of {list(ROTATE_VALUES)} "
                           f"(degrees; use rotate_range for other angles), got {value!r}")
    return int(value)


def _crop(name, value):
    if isinstance(value, str):
        if value != "off":
            raise DLParamError(f"augmentation parameter {name!r} must be 'off' or a percentage in 1..100, "
                               f"got {value!r}")
        return value
    return _number(name, value, 1.0, 100.0)


def _class_ids(name, value):
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        value = [value]
    ids = list(value)
    if any(isinstance(c, bool) or not isinstance(c, numbers.Integral) for c in ids):
        raise DLParamError(f"augmentation parameter {name!r} must be a list of integer class ids, got {value!r}")
    return tuple(int(c) for c in ids)


_CHECKS = {
    "augmentation_percentage": lambda n, v: _number(n, v, 0.0, 100.0),
    "mirror": _mirror,
    "rotate": _rotate,
    "rotate_range": lambda n, v: _number(n, v, 0.0, 180.0),
    "brightness_variation": lambda n, v: _number(n, v, 0.0, 255.0),
    "brightness_variation_spot": lambda n, v: _number(n, v, 0.0, 255.0),
    "crop_percentage": _crop,
    "ignore_direction": _flag,
    "class_ids_no_orientation": _class_ids,
}
