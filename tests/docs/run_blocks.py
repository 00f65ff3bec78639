"""Run the Python blocks of one page in order, in one namespace (as a reader would paste them
into one session), and report the first block that fails or prints something else than its
`<!-- output -->` block. Used by test_code_blocks in a fresh interpreter per page:

    python tests/docs/run_blocks.py blocks.json      # prints one JSON line: {"ok": ..., ...}
"""
from __future__ import annotations

import contextlib
import doctest
import io
import json
import sys
import traceback

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def run(blocks: list[dict]) -> dict:
    namespace: dict = {"__name__": "__docs__"}
    checker = doctest.OutputChecker()
    for block in blocks:
        where = f"{block['page']}:{block['line']}"
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(block["code"], where, "exec"), namespace)
        except Exception:  # noqa: BLE001 - reported with its traceback
            return {"ok": False, "where": where, "problem": traceback.format_exc(limit=-3)}
        want = block.get("expected")
        if want is not None and not checker.check_output(want, out.getvalue(), FLAGS):
            return {"ok": False, "where": where,
                    "problem": f"printed:\n{out.getvalue()}\nexpected:\n{want}"}
    return {"ok": True, "blocks": len(blocks)}


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as f:
        result = run(json.load(f))
    sys.stdout.flush()
    print("\n" + json.dumps(result))
