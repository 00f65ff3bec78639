"""The documentation site builds with `mkdocs build --strict`: a broken link, a missing page or
image, or a reference mkdocstrings cannot resolve fails the build (and this test). Skipped when
the `docs` extra is not installed."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("mkdocs", reason="pip install '.[docs]' to build the docs")
pytest.importorskip("material", reason="pip install '.[docs]' to build the docs")
pytest.importorskip("mkdocstrings_handlers.python", reason="pip install '.[docs]' to build the docs")
pytest.importorskip("mkdocs_gen_files", reason="pip install '.[docs]' to build the docs")

ENV = {**os.environ, "DISABLE_MKDOCS_2_WARNING": "true", "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT)}


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
                          cwd=config.parent, env=ENV, capture_output=True, text=True, timeout=300)


def test_docs_build_strict_and_contain_every_page(tmp_path):
    proc = _build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    site = tmp_path / "site"
    for page in ("training_step", "models/detection", "reference/parameters", "reference/cli", "reference/api",
                 "import_pytorch", "performance", "halcon", "plugins", "distributed"):
        assert (site / page / "index.html").is_file(), page
    parameters = (site / "reference/parameters/index.html").read_text()
    assert "anchor_angles" in parameters and "batch_size_multiplier" in parameters
    cli = (site / "reference/cli/index.html").read_text()
    assert "dlbatch train" in cli and "--resume" in cli
    api = (site / "reference/api/index.html").read_text()
    assert "train_dl_model_batch" in api and "DLParamError" in api


def test_a_broken_link_fails_the_strict_build(tmp_path):
    """The same configuration on a copy of docs/ with one link pointing nowhere."""
    copy = tmp_path / "project"
    shutil.copytree(ROOT / "docs", copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    shutil.copy(ROOT / "README.md", copy / "README.md")
    for folder in ("examples", "tests/core"):
        shutil.copytree(ROOT / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    page = copy / "docs" / "halcon.md"
    page.write_text(page.read_text() + "\nSee [the missing page](no_such_page.md).\n")
    proc = _build(copy / "mkdocs.yml", tmp_path / "site")
    assert proc.returncode != 0
    assert "no_such_page.md" in proc.stdout + proc.stderr
