"""The Typer admin CLI."""
from typer.testing import CliRunner

from dlbatch.cli.app import app

runner = CliRunner()


def test_plugins_lists_builtins_with_registrations():
    result = runner.invoke(app, ["plugins"])
    assert result.exit_code == 0, result.output
    assert "dlbatch.backends.numpy_cpu.plugin" in result.output
    assert "backend: numpy" in result.output
    assert "model type: classification" in result.output


def test_backends_and_params():
    result = runner.invoke(app, ["backends"])
    assert result.exit_code == 0 and "numpy (default)" in result.output
    result = runner.invoke(app, ["params", "classification"])
    assert result.exit_code == 0 and "learning_rate" in result.output and "allowed: sgd, adam" in result.output


def test_unknown_model_type_is_an_error_listing_names():
    result = runner.invoke(app, ["params", "nope"])
    assert result.exit_code == 2
    assert "classification" in result.output


def test_create_then_info_round_trip(tmp_path):
    path = tmp_path / "m.onnx"
    result = runner.invoke(app, ["create", "classification", str(path), "--backbone", "compact",
                                 "--num-classes", "4", "--width", "16", "--height", "16", "--channels", "1"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["info", str(path), "--json"])
    assert result.exit_code == 0, result.output
    import json
    facts = json.loads(result.output)
    assert facts["class_ids"] == [0, 1, 2, 3] and facts["image_dimensions"] == [16, 16, 1]
    assert facts["backbone"] == "compact" and facts["steps_trained"] == 0


def test_info_on_a_broken_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    result = runner.invoke(app, ["info", str(bad)])
    assert result.exit_code == 2
