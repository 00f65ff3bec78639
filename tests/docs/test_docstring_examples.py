"""The `Example:` sections of the public docstrings run (doctest), in an empty temporary folder
since some write files. The examples of one module run in source order in one namespace, as a
reader would type them into one session (a later example may use an earlier one's model)."""
from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "dlbatch",
    "dlbatch.core.create",
    "dlbatch.core.preprocess",
    "dlbatch.core.system",
    "dlbatch.datasets.read",
    "dlbatch.datasets.split",
    "dlbatch.datasets.synth",
    "dlbatch.datasets.dataset",
    "dlbatch.data.classification",
    "dlbatch.data.synthetic",
    "dlbatch.models.detection.detection_params",
    "dlbatch.models.detection.inference_export",
    "dlbatch.models.detection.nms",
    "dlbatch.models.detection.rectangle2",
    "dlbatch.models.detection.rotated_iou",
    "dlbatch.core.errors",
    "dlbatch.losses.multinomial_logistic",
    "dlbatch.tour",
]
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


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_examples(importlib.import_module(name))
    assert result.failed == 0
    assert result.attempted > 0, f"{name} has no example"
