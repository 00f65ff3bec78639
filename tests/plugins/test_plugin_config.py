"""The user's plugins.toml: which file, edits that keep everything else, clear errors, and the
`dlbatch plugins` sub-commands on top of it."""
from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

import dlbatch
from dlbatch.cli.plugins_cmd import plugins_app
from dlbatch.core.plugin_config import disable_plugin, dumps, enable_plugin, user_plugins_toml_path
from dlbatch.core.plugins import manager

REPO = Path(__file__).resolve().parents[2]
TORCH = "dlbatch.backends.torch.plugin"
HUBER = "dlbatch.losses.huber"
USER_TOML = """\
# my dlbatch plugins
default_backend = "numpy"   # the one I use

[plugins]
modules = []  # none of my own yet
disable = [
    "some.uninstalled.plugin",  # old experiment
]

[notes]
owner = "me"
"""


def user_toml(tmp_path) -> Path:
    return tmp_path / "user" / "plugins.toml"


def test_the_file_is_dlbatch_plugins_else_local_and_never_the_builtin(fresh_plugins, tmp_path):
    assert user_plugins_toml_path() == user_toml(tmp_path)
    fresh_plugins.delenv("DLBATCH_PLUGINS")
    assert user_plugins_toml_path() == tmp_path / "plugins.toml"
    fresh_plugins.chdir(REPO)  # ./plugins.toml is dlbatch's own list there
    with pytest.raises(dlbatch.DLPluginError, match="dlbatch's own list of built-in plugins.*DLBATCH_PLUGINS"):
        user_plugins_toml_path()
    with pytest.raises(dlbatch.DLPluginError, match="own list"):
        disable_plugin(TORCH)
    assert tomllib.loads((REPO / "plugins.toml").read_text()).get("plugins", {}).get("disable") is None


def test_disable_and_enable_keep_everything_else_and_reload(fresh_plugins, tmp_path):
    path = user_toml(tmp_path)
    path.write_text(USER_TOML)
    manager.reload()
    assert manager.backend("torch").name == "torch"

    assert disable_plugin(TORCH) is True
    data = tomllib.loads(path.read_text())
    assert data == {"default_backend": "numpy", "notes": {"owner": "me"},
                    "plugins": {"modules": [], "disable": ["some.uninstalled.plugin", TORCH]}}
    for comment in ("# my dlbatch plugins", "# the one I use", "# none of my own yet"):
        assert comment in path.read_text()
    with pytest.raises(dlbatch.DLPluginError, match="unknown backend 'torch'"):  # reloaded
        manager.backend("torch")
    assert TORCH in {d.name for d in manager.disabled_plugins()}
    assert disable_plugin(TORCH) is False  # already disabled: nothing written
    assert tomllib.loads(path.read_text()) == data

    assert enable_plugin(TORCH) is True
    assert tomllib.loads(path.read_text())["plugins"]["disable"] == ["some.uninstalled.plugin"]
    assert manager.backend("torch").name == "torch"
    assert enable_plugin(TORCH) is False  # not disabled: nothing to do
    # a name only in the disable list (its package is gone) can still be enabled
    assert enable_plugin("some.uninstalled.plugin") is True
    assert tomllib.loads(path.read_text()) == {"default_backend": "numpy", "notes": {"owner": "me"},
                                               "plugins": {"modules": [], "disable": []}}


def test_a_missing_file_is_created_with_its_folder(fresh_plugins, tmp_path):
    path = tmp_path / "config" / "dlbatch" / "plugins.toml"
    fresh_plugins.setenv("DLBATCH_PLUGINS", str(path))
    assert disable_plugin(HUBER) is True
    assert tomllib.loads(path.read_text()) == {"plugins": {"disable": [HUBER]}}
    with pytest.raises(dlbatch.DLPluginError, match="unknown loss 'huber'"):
        manager.loss("huber")


def test_a_dotted_key_layout_is_rewritten_with_the_same_content(fresh_plugins, tmp_path):
    path = user_toml(tmp_path)
    path.write_text('default_backend = "numpy"\nplugins.disable = ["x.y"]\n')
    disable_plugin(HUBER)
    assert tomllib.loads(path.read_text()) == {"default_backend": "numpy", "plugins": {"disable": ["x.y", HUBER]}}


def test_unknown_names_and_bad_files_are_clear_errors(fresh_plugins, tmp_path):
    with pytest.raises(dlbatch.DLPluginError) as err:
        disable_plugin("dlbatch.losses.hubber")
    msg = str(err.value)
    assert "no plugin named 'dlbatch.losses.hubber'" in msg and HUBER in msg and TORCH in msg
    with pytest.raises(dlbatch.DLPluginError, match="no plugin named 'nope'"):
        enable_plugin("nope")
    assert user_toml(tmp_path).read_text() == ""  # nothing written
    user_toml(tmp_path).write_text("[plugins]\ndisable = 'dlbatch.losses.huber'\n")
    with pytest.raises(dlbatch.DLPluginError, match="disable must be a list"):
        enable_plugin(HUBER)


def test_the_toml_writer_round_trips():
    data = {"a": 1, "b": -2.5, "c": True, "s": 'quote " back \\ tab \t é', "list": [1, [2, 3], "x"],
            "plugins": {"disable": ["p"], "deeper": {"k": {"inline": 1}}}, "rows": [{"x": 1}, {"x": 2}],
            "odd key": "v"}
    assert tomllib.loads(dumps(data)) == data


runner = CliRunner()


def test_cli_disable_enable_and_list(fresh_plugins, tmp_path):
    result = runner.invoke(plugins_app, ["disable", HUBER])
    assert result.exit_code == 0, result.output
    assert f"disabled {HUBER} in {user_toml(tmp_path)}" in result.stdout
    listed = json.loads(runner.invoke(plugins_app, ["list", "--json"]).stdout)
    assert HUBER in {d["name"] for d in listed["disabled"]}
    assert HUBER not in {p["name"] for p in listed["plugins"]}
    numpy_plugin = next(p for p in listed["plugins"] if p["name"] == "dlbatch.backends.numpy_cpu.plugin")
    assert numpy_plugin["distribution"] == "dlbatch" and "backend numpy" in numpy_plugin["registered"]
    text = runner.invoke(plugins_app, ["list"]).stdout
    assert text.index("disabled:") < text.index(HUBER)

    result = runner.invoke(plugins_app, ["enable", HUBER])
    assert result.exit_code == 0 and f"enabled {HUBER}" in result.stdout
    assert HUBER in {p["name"] for p in json.loads(runner.invoke(plugins_app, ["list", "--json"]).stdout)["plugins"]}


def test_cli_errors_are_one_line_with_exit_code_2(fresh_plugins):
    result = runner.invoke(plugins_app, ["disable", "nope"])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "no plugin named 'nope'" in result.stderr
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("command", ["list", "enable", "disable"])
def test_cli_help_has_an_example(command):
    result = runner.invoke(plugins_app, [command, "--help"])
    assert result.exit_code == 0 and f"Example: dlbatch plugins {command}" in result.stdout
