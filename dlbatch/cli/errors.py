"""Which errors a user caused (a bad value, a missing file, broken JSON) and how to say them in
one line: the root command's error handler prints that line and exits 2; anything else is a
bug and says how to see the traceback."""
from __future__ import annotations

import json

from dlbatch.core.errors import DLError

EXIT_USER_ERROR = 2

EXPECTED = (DLError, OSError, json.JSONDecodeError, UnicodeDecodeError, ModuleNotFoundError)


def is_expected(exc: BaseException) -> bool:
    return isinstance(exc, EXPECTED)


def describe_error(exc: BaseException) -> str:
    """One line: what was wrong, naming the file where there is one."""
    if isinstance(exc, DLError):
        text = str(exc)
    elif isinstance(exc, OSError) and getattr(exc, "filename", None) and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    elif isinstance(exc, json.JSONDecodeError):
        text = f"invalid JSON: {exc}"
    elif isinstance(exc, ModuleNotFoundError):
        text = f"{exc} (install the package, e.g. pip install 'dlbatch[plots]' or 'dlbatch[torch]')"
    elif isinstance(exc, OSError):
        text = str(exc) or type(exc).__name__
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())
