"""Parsing of the CLI's value options (`--set KEY=VALUE`, `--change JSON`, `--augment JSON`,
`--classes`), so every command reads them the same way and a bad value is one clear
DLParamError naming the option, never a traceback."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from dlbatch.core.errors import DLParamError


def parse_value(text: str) -> Any:
    """A value typed on the command line, so that `solver_type=adam` needs no quotes.

    Args:
        text: the value as typed.

    Returns:
        The JSON value where it parses (`0.01`, `true`, `[1, 2]`, `{"a": 1}`), else the text.

    Examples:
        >>> parse_value("0.01"), parse_value("[1, 2]"), parse_value("adam")
        (0.01, [1, 2], 'adam')
    """
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_assignments(items: Iterable[str], option: str = "--set") -> dict[str, Any]:
    """`--set KEY=VALUE` options as a dict of parameter values; later assignments of a name win.

    Args:
        items: the KEY=VALUE texts.
        option: the option's name, for the message.

    Returns:
        {KEY: parsed value}.

    Raises:
        DLParamError: an item without `=` or without a key.

    Examples:
        >>> parse_assignments(["learning_rate=0.01", "solver_type=adam"])
        {'learning_rate': 0.01, 'solver_type': 'adam'}
    """
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise DLParamError(f"{option} expects KEY=VALUE (e.g. learning_rate=0.01), got {item!r}")
        out[key] = parse_value(value.strip())
    return out


def load_json_option(text: str | None, option: str) -> Any:
    """A JSON option's value, given inline or, with a leading `@`, read from that file.

    Args:
        text: the option's text, or None when not given.
        option: the option's name, for the message.

    Returns:
        The parsed JSON value, or None.

    Raises:
        DLParamError: no such file, or invalid JSON (with line and column).

    Examples:
        >>> load_json_option('{"mirror": "rc"}', "--augment")
        {'mirror': 'rc'}
    """
    if text is None:
        return None
    source = "inline"
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise DLParamError(f"{option}: file {path} does not exist (write {option} @FILE.json or inline JSON)")
        source, text = str(path), path.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DLParamError(f"{option}: {source} JSON is not valid: {exc.msg} at line {exc.lineno} column "
                           f"{exc.colno}") from None


def parse_change(text: str | None) -> list[dict] | None:
    """`--change`: one change strategy object or a list of them (HALCON's shape).

    Args:
        text: the option's text (inline JSON or @FILE), or None.

    Returns:
        A list of strategy dicts, or None.

    Raises:
        DLParamError: invalid JSON, or not an object or a list of objects.

    Examples:
        >>> parse_change('{"model_param": "learning_rate", "epochs": [5], "values": [0.001]}')[0]["epochs"]
        [5]
    """
    value = load_json_option(text, "--change")
    if value is None:
        return None
    strategies = [value] if isinstance(value, dict) else value
    if not isinstance(strategies, list) or not all(isinstance(s, dict) for s in strategies):
        raise DLParamError('--change must be a JSON object or a list of objects such as {"model_param": '
                           '"learning_rate", "initial_value": 0.01, "epochs": [30], "values": [0.001]}')
    return strategies


def parse_augment(text: str | None) -> dict | None:
    """`--augment`: one JSON object of augmentation parameters (HALCON's names).

    Args:
        text: the option's text (inline JSON or @FILE), or None.

    Returns:
        The parameters as a dict, or None.

    Raises:
        DLParamError: invalid JSON, or not an object.

    Examples:
        >>> parse_augment('{"augmentation_percentage": 50}')
        {'augmentation_percentage': 50}
    """
    value = load_json_option(text, "--augment")
    if value is not None and not isinstance(value, dict):
        raise DLParamError('--augment must be a JSON object such as {"augmentation_percentage": 50, '
                           '"mirror": "rc"}')
    return value


def parse_classes(text: str) -> tuple[list[int], list[str] | None]:
    """`--classes 1,2,5` or `--classes 1:cat,2:dog`: class ids, and names when given.

    Args:
        text: the option's text.

    Returns:
        (class ids, class names or None).

    Raises:
        DLParamError: a non-integer id, or no id at all.

    Examples:
        >>> parse_classes("1:cat,2:dog"), parse_classes("1,2,5")
        (([1, 2], ['cat', 'dog']), ([1, 2, 5], None))
    """
    ids: list[int] = []
    names: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        raw_id, sep, name = part.partition(":")
        try:
            ids.append(int(raw_id))
        except ValueError:
            raise DLParamError(f"--classes expects integer class ids such as 1,2,5 or 1:cat,2:dog; "
                               f"got {raw_id!r}") from None
        names.append(name.strip() if sep else raw_id.strip())
    if not ids:
        raise DLParamError("--classes needs at least one class id, e.g. --classes 0,1")
    named = any(":" in p for p in text.split(","))
    return ids, names if named else None
