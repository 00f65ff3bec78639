"""The root command: help with an example on every command, backends, params, the legacy
aliases, and the one error handler (one line on stderr, exit 2, no traceback; --debug shows it)."""
import json

import pytest
from typer.testing import CliRunner

import dlbatch
from dlbatch.cli.app import app

runner = CliRunner()


def _commands(group, prefix=()):
    """Every visible command path of the CLI, sub-groups included."""
    from typer.main import get_command
    import typer
    root = get_command(group) if isinstance(group, typer.Typer) else group
    for name, cmd in getattr(root, "commands", {}).items():
        if cmd.hidden:
            continue
        if getattr(cmd, "commands", None):
            yield from _commands(cmd, prefix + (name,))
        else:
            yield prefix + (name,)


def test_every_command_has_help_with_an_example():
    paths = list(_commands(app))
    assert {("train",), ("evaluate",), ("apply",), ("model", "create"), ("model", "info"), ("model", "set"),
            ("data", "synth"), ("plugins", "list"), ("plugins", "enable"), ("plugins", "disable")} <= set(paths)
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Example" in result.output and "dlbatch" in result.output, (path, result.output)


def test_backends_and_params():
    result = runner.invoke(app, ["backends"])
    assert result.exit_code == 0 and "numpy (default)" in result.output
    result = runner.invoke(app, ["params", "classification"])
    assert result.exit_code == 0 and "learning_rate" in result.output and "allowed: sgd, adam" in result.output
    result = runner.invoke(app, ["params", "detection", "--json"])
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert rows["instance_type"]["choices"] == ["rectangle1", "rectangle2"] and "fixed" in rows["min_level"]["flags"]


def test_unknown_model_type_is_one_line_listing_names():
    result = runner.invoke(app, ["params", "nope"])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "classification" in result.stderr
    assert "Traceback" not in result.output


def test_legacy_create_and_info_aliases_still_work(tmp_path):
    path = tmp_path / "m.onnx"
    result = runner.invoke(app, ["create", "classification", str(path), "--backbone", "compact",
                                 "--num-classes", "4", "--width", "16", "--height", "16", "--channels", "1"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["info", str(path), "--json"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.output)
    assert facts["class_ids"] == [0, 1, 2, 3] and facts["image_dimensions"] == [16, 16, 1]
    assert facts["backbone"] == "compact" and facts["steps_trained"] == 0


@pytest.mark.parametrize("args, needle", [
    (["model", "info", "{bad}"], "bad.onnx"),
    (["model", "info", "{missing}"], "missing.onnx"),
    (["model", "create", "classification", "-o", "{out}", "--set", "learning_rate"], "KEY=VALUE"),
    (["model", "create", "classification", "-o", "{out}", "--set", "learning_rate=-1", "--num-classes", "2"],
     "learning_rate"),
    (["model", "create", "classification", "-o", "{out}", "--set", "nope=1", "--num-classes", "2"], "nope"),
    (["model", "create", "classification", "-o", "{out}", "--classes", "a,b"], "--classes"),
    (["model", "create", "classification", "-o", "{out}", "--backbone", "nope", "--num-classes", "2"], "compact"),
    (["model", "create", "classification", "-o", "{out}"], "--dataset"),
    (["model", "create", "classification", "-o", "{out}", "--dataset", "{missing_dir}"], "missing_dir"),
    (["train", "{bad}", "{missing_dir}", "--out", "{out_dir}"], "bad.onnx"),
    (["evaluate", "{missing}", "{missing_dir}"], "missing.onnx"),
    (["apply", "{missing}", "x.png"], "missing.onnx"),
])
def test_expected_errors_are_one_line_on_stderr_and_exit_2(tmp_path, args, needle):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    names = {"bad": bad, "missing": tmp_path / "missing.onnx", "out": tmp_path / "o.onnx",
             "missing_dir": tmp_path / "missing_dir", "out_dir": tmp_path / "run"}
    args = [a.format(**names) for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)


def test_debug_shows_the_traceback_instead(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    result = runner.invoke(app, ["--debug", "model", "info", str(bad)])
    assert isinstance(result.exception, dlbatch.DLModelFileError)
    assert result.exc_info[2] is not None  # the traceback travels with it


def test_an_unexpected_error_is_one_line_with_exit_1_and_a_hint(monkeypatch, tmp_path):
    import dlbatch.cli.model_cmd as model_cmd

    def broken(*args, **kwargs):
        raise KeyError("oops")
    monkeypatch.setattr(model_cmd, "create_params", broken)
    result = runner.invoke(app, ["model", "create", "classification", "-o", str(tmp_path / "m.onnx")])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "KeyError" in result.stderr and "--debug" in result.stderr
