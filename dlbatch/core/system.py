"""Process-wide settings (HALCON's set_system): determinism and the default seed."""
from __future__ import annotations

from typing import Any

from .errors import DLParamError, did_you_mean

_SETTINGS: dict[str, Any] = {"cudnn_deterministic": False, "seed": 42}
_KINDS = {"cudnn_deterministic": bool, "seed": int}


def set_system(name: str, value: Any) -> None:
    """Set a process-wide option (HALCON's set_system).

    Args:
        name: "cudnn_deterministic" (bool): the torch backend uses deterministic algorithms
            (the numpy backend always is); "seed" (int >= 0): the default seed of models
            created afterwards.
        value: the new value.

    Raises:
        DLParamError: an unknown name or a value of the wrong type.

    Examples:
        >>> import dlbatch
        >>> dlbatch.set_system("cudnn_deterministic", True)
        >>> dlbatch.get_system("cudnn_deterministic")
        True
    """
    if name not in _KINDS:
        raise DLParamError(f"unknown system parameter {name!r}; {did_you_mean(name, _KINDS)}")
    kind = _KINDS[name]
    if kind is bool and not isinstance(value, bool):
        raise DLParamError(f"system parameter {name!r} must be True or False, got {value!r}")
    if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise DLParamError(f"system parameter {name!r} must be an integer >= 0, got {value!r}")
    _SETTINGS[name] = value


def get_system(name: str) -> Any:
    """The current value of a process-wide option set with `set_system`.

    Args:
        name: "cudnn_deterministic" or "seed".

    Returns:
        The value (False and 42 unless set).

    Raises:
        DLParamError: an unknown name.

    Examples:
        >>> import dlbatch
        >>> isinstance(dlbatch.get_system("seed"), int)
        True
        >>> dlbatch.get_system("speed")
        Traceback (most recent call last):
        ...
        dlbatch.core.errors.DLParamError: unknown system parameter 'speed'; ...
    """
    if name not in _SETTINGS:
        raise DLParamError(f"unknown system parameter {name!r}; {did_you_mean(name, _SETTINGS)}")
    return _SETTINGS[name]
