"""Every ```python block in docs/*.md and README.md runs, and prints what the page says it
prints (see markdown_blocks for the markers). Each page runs in a fresh interpreter in an empty
temporary folder, its blocks in order in one namespace."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from .markdown_blocks import Block, python_blocks

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("run_blocks.py")
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
PAGES_WITH_CODE = [p for p in PAGES if python_blocks(p)]


def _run_page(blocks: list[Block], tmp_path: Path) -> dict:
    spec = tmp_path / "blocks.json"
    spec.write_text(json.dumps([asdict(b) for b in blocks]))
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(RUNNER), str(spec)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    try:
        return json.loads(last)
    except json.JSONDecodeError:
        return {"ok": False, "where": "runner", "problem": proc.stdout[-3000:] + proc.stderr[-3000:]}


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=[str(p.relative_to(ROOT)) for p in PAGES_WITH_CODE])
def test_python_blocks_of_page_run_and_print_what_they_claim(page, tmp_path):
    blocks = [b for b in python_blocks(page) if not b.skipped]
    if not blocks:
        pytest.skip("every block of this page is marked skip-test")
    result = _run_page(blocks, tmp_path)
    assert result["ok"], f"{result['where']}:\n{result['problem']}"
    assert result["blocks"] == len(blocks)


def test_the_collector_finds_blocks_markers_and_outputs(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n\n```python\nprint(1)\n```\n\n<!-- output -->\n```text\n1\n```\n\n"
                    "<!-- skip-test -->\n```python\nopen('missing')\n```\n\n- item\n\n  ```python\n  x = 2\n  ```\n"
                    "```sh\nls\n```\n<!-- test-setup\ny = 3\n-->\n")
    blocks = python_blocks(page)
    assert [(b.line, b.code, b.expected, b.skipped) for b in blocks] == [
        (3, "print(1)\n", "1\n", False), (13, "open('missing')\n", None, True), (19, "x = 2\n", None, False),
        (25, "y = 3\n", None, False)]


def test_a_wrong_printed_claim_fails(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```python\nprint(1 + 1)\n```\n<!-- output -->\n```text\n3\n```\n")
    result = _run_page(python_blocks(page), tmp_path)
    assert not result["ok"] and "expected:\n3" in result["problem"]
