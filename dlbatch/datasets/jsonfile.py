"""Reading dataset index files (COCO, HALCON DLDataset, classes.json) with errors that name
the file and the entry that is wrong."""
from __future__ import annotations

import json
import operator
from pathlib import Path
from typing import Any

from ..core.errors import DLError, DLSampleError


def load_json(path: Path, what: str) -> Any:
    """The parsed JSON file; a missing or malformed file is a DLError naming it and `what`
    it should have been."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise DLError(f"{path}: {what} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DLError(f"{path}: not a valid JSON {what} ({exc})") from None


def write_json(path: Path, data: Any) -> None:
    """Write `data` as UTF-8 JSON with one-space indents and a final newline (diff-friendly)."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")


def require(obj: Any, key: str, where: str, kind: type | tuple = object) -> Any:
    """obj[key], which must exist and be of `kind`."""
    if not isinstance(obj, dict) or key not in obj:
        raise DLSampleError(f"{where}: missing the key {key!r}")
    value = obj[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise DLSampleError(f"{where}: {key!r} must be {names}, got {value!r}")
    return value


def integer(value: Any, where: str, what: str) -> int:
    """An int from JSON (an integral float such as 3.0 counts too)."""
    if isinstance(value, bool):
        raise DLSampleError(f"{where}: {what} must be an integer, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    try:
        return operator.index(value)
    except TypeError:
        raise DLSampleError(f"{where}: {what} must be an integer, got {value!r}") from None


def class_table(ids: Any, names: Any, where: str) -> tuple[list[int], list[str]]:
    """Checked class_ids and class_names (names default to the ids as text)."""
    if not isinstance(ids, list) or not ids:
        raise DLError(f"{where}: 'class_ids' must be a non-empty list of integers, got {ids!r}")
    ids = [integer(c, where, "each class id") for c in ids]
    if len(set(ids)) != len(ids):
        raise DLError(f"{where}: 'class_ids' has duplicates: {ids}")
    if names is None:
        return ids, [str(c) for c in ids]
    if not isinstance(names, list) or len(names) != len(ids):
        raise DLError(f"{where}: 'class_names' must be a list with one name per class id ({len(ids)}), "
                      f"got {names!r}")
    return ids, [str(n) for n in names]
