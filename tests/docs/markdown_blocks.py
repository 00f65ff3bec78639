"""Find the Python code blocks of a Markdown page, with what they are expected to print.

A block is a fenced ```python block (indented fences inside list items count too). Markers, as
HTML comments that a rendered page does not show:

- `<!-- skip-test -->` on the line before a block: the block is not run (it needs files or
  runs long); use it sparingly.
- `<!-- output -->` after a block, followed by a ```text block: what the block prints; the
  test compares it (doctest rules: `...` matches anything, whitespace runs are equal).
- `<!-- test-setup` ... `-->`: Python code hidden from readers that runs before the next block,
  for what the page takes for granted (a trained PyTorch `model`, a dataset folder).
"""
from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^(\s*)```+\s*([\w+-]*)")
SKIP = "<!-- skip-test -->"
OUTPUT = "<!-- output -->"
SETUP = "<!-- test-setup"


@dataclass(frozen=True)
class Block:
    """One Python block: its page, first line (1-based, the fence), code and expected output."""

    page: str
    line: int
    code: str
    expected: str | None
    skipped: bool


def _fenced(lines: list[str], start: int) -> tuple[str, str, int]:
    """(language, dedented body, index after the closing fence) of the fence at `start`."""
    m = FENCE.match(lines[start])
    indent, lang = m.group(1), m.group(2).lower()
    body, i = [], start + 1
    while i < len(lines) and not re.match(rf"^{re.escape(indent)}```\s*$", lines[i]) and lines[i].strip() != "```":
        body.append(lines[i])
        i += 1
    return lang, textwrap.dedent("\n".join(body)) + "\n", i + 1


def _previous_text(lines: list[str], i: int) -> str:
    j = i - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    return lines[j].strip() if j >= 0 else ""


def _next_index(lines: list[str], i: int) -> int:
    while i < len(lines) and not lines[i].strip():
        i += 1
    return i


def _setup(path: Path, lines: list[str], start: int) -> tuple[Block, int]:
    body, i = [], start + 1
    while i < len(lines) and lines[i].strip() != "-->":
        body.append(lines[i])
        i += 1
    if i == len(lines):
        raise ValueError(f"{path}:{start + 1}: {SETUP} is not closed by a line '-->'")
    return Block(str(path), start + 1, textwrap.dedent("\n".join(body)) + "\n", None, False), i + 1


def python_blocks(path: Path) -> list[Block]:
    """Every ```python block of the page and every hidden test-setup, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == SETUP:
            setup, i = _setup(path, lines, i)
            blocks.append(setup)
            continue
        if not FENCE.match(lines[i]):
            i += 1
            continue
        lang, code, after = _fenced(lines, i)
        if lang not in ("python", "py"):
            i = after
            continue
        expected = None
        j = _next_index(lines, after)
        if j < len(lines) and lines[j].strip() == OUTPUT:
            k = _next_index(lines, j + 1)
            if k >= len(lines) or not FENCE.match(lines[k]):
                raise ValueError(f"{path}:{j + 1}: {OUTPUT} must be followed by a ```text block")
            _, expected, after = _fenced(lines, k)
        blocks.append(Block(str(path), i + 1, code, expected, _previous_text(lines, i) == SKIP))
        i = after
    return blocks
