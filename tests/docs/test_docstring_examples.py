"""The `Example:` sections of the public docstrings run (doctest), in an empty temporary folder
since some write files. The examples of one module run in source order in one namespace, as a
reader would type them into one session (a later example may use an earlier one's model)."""
from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_LINE = re.compile(r"^\s*>>> ", re.M)


def modules_with_examples() -> list[str]:
    """Every dlbatch module whose source holds a `>>>` line: nothing to forget when a module
    gains examples (a `>>>` outside any docstring fails below as "no example")."""
    names = []
    for path in sorted((ROOT / "dlbatch").rglob("*.py")):
        if EXAMPLE_LINE.search(path.read_text(encoding="utf-8")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


MODULES = modules_with_examples()
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def run_examples(module) -> doctest.TestResults:
    """Run every docstring example of `module` (not of what it imports) in one namespace."""
    tests = [t for t in doctest.DocTestFinder().find(module, module.__name__) if t.examples]
    tests.sort(key=lambda t: t.lineno or 0)
    namespace = dict(module.__dict__)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in tests:
        test.globs = namespace
        runner.run(test, clear_globs=False)
    return runner.summarize(verbose=False)


def test_the_modules_include_the_public_api():
    """The modules documented in the API reference are found (the search itself works)."""
    for name in ("dlbatch", "dlbatch.core.model", "dlbatch.core.errors", "dlbatch.training.loop",
                 "dlbatch.training.change", "dlbatch.training.progress", "dlbatch.visual.draw",
                 "dlbatch.visual.palette", "dlbatch.visual.confusion_plot", "dlbatch.datasets.split",
                 "dlbatch.datasets.synth"):
        assert name in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] == "dlbatch":
            raise
        pytest.skip(f"{name} needs {e.name}, which is not installed")
    result = run_examples(module)
    assert result.failed == 0
    assert result.attempted > 0, f"{name} has no example"
