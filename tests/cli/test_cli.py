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
