"""log.jsonl: one JSON object per line, flushed as it is written so another process (or a
person with `tail -f`) sees it at once. Records have a "type": "iterations" (mean losses over
a window of iterations), "evaluation", "epoch". A resumed run first cuts the file back to its
size when the state was written, so no record of the lost partial epoch stays behind."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

WINDOWS_PER_EPOCH = 10  # iteration records per epoch (fewer when an epoch has fewer iterations)


def json_safe(value):
    """numpy scalars and arrays to Python, non-finite floats to None, dict keys to strings,
    anything else that JSON cannot hold to its repr."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return repr(value)


def window_size(iterations_per_epoch: int) -> int:
    return max(1, -(-iterations_per_epoch // WINDOWS_PER_EPOCH))


class TrainingLog:
    """Appends records to `path` (None: a log that writes nothing)."""

    def __init__(self, path: Path | None, keep_bytes: int | None):
        """keep_bytes None starts a new log; otherwise the file is cut back to that size."""
        self.path = path
        self._fh = None
        if path is None:
            return
        if keep_bytes is None or not path.exists():
            self._fh = open(path, "wb")
        else:
            self._fh = open(path, "r+b")
            self._fh.truncate(min(keep_bytes, os.fstat(self._fh.fileno()).st_size))
            self._fh.seek(0, os.SEEK_END)

    def write(self, record: dict) -> None:
        if self._fh is None:
            return
        self._fh.write(json.dumps(json_safe(record), allow_nan=False).encode() + b"\n")
        self._fh.flush()

    def size(self) -> int:
        return 0 if self._fh is None else self._fh.tell()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def read_log(path) -> list[dict]:
    """Every complete record of a log.jsonl (a torn last line of a killed run is skipped)."""
    out = []
    with open(path, "rb") as fh:
        for line in fh:
            if line.endswith(b"\n"):
                out.append(json.loads(line))
    return out
