"""Fixtures that change which plugins are visible and restore the normal set afterwards."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from dlbatch.core.plugins import manager


@pytest.fixture
def fresh_plugins(monkeypatch, tmp_path):
    """A test that edits sys.path / DLBATCH_PLUGINS; its own empty plugins.toml by default."""
    toml = tmp_path / "user" / "plugins.toml"
    toml.parent.mkdir()
    toml.write_text("")
    monkeypatch.setenv("DLBATCH_PLUGINS", str(toml))
    monkeypatch.chdir(tmp_path)
    yield monkeypatch
    monkeypatch.undo()
    for name, module in list(sys.modules.items()):  # modules the test wrote are forgotten
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]
    manager.reload()


def fake_distribution(site: Path, dist: str, version: str, entry_points: dict[str, str],
                      modules: dict[str, str]) -> None:
    """What pip leaves behind: a dist-info with entry points, plus the modules, in `site`."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[dlbatch]\n{lines}")
    for name, code in modules.items():
        (site / f"{name}.py").write_text(textwrap.dedent(code))
