"""Plugins: built-ins via plugins.toml, third parties via entry points and a user's plugins.toml."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import dlbatch
from dlbatch.core.backend import OpContext
from dlbatch.core.plugins import manager
from tests.conftest import make_samples, tiny_model

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plugin"


@pytest.fixture
def fresh_plugins(monkeypatch):
    """Reload plugins for a test and restore the normal set afterwards."""
    yield monkeypatch
    monkeypatch.undo()
    manager.reload()


@pytest.fixture
def example_installed(fresh_plugins, tmp_path):
    """Make the example plugin an installed distribution with an entry point (a dist-info on
    sys.path is what pip would create), then reload plugins."""
    dist = tmp_path / "dlbatch_example_plugin-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: dlbatch-example-plugin\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text("[dlbatch]\nexample = dlbatch_example_plugin\n")
    fresh_plugins.syspath_prepend(str(tmp_path))
    fresh_plugins.syspath_prepend(str(EXAMPLE))
    manager.reload()
    yield manager
    # the source copy stays imported otherwise, and a later test that pip-installs the package
    # would silently get this copy instead of the installed one
    for name in [m for m in sys.modules if m.startswith("dlbatch_example_plugin")]:
        del sys.modules[name]


def test_builtins_are_plugins_and_listed_with_what_they_registered():
    infos = {p.name: p for p in dlbatch.plugins()}
    numpy_plugin = infos["dlbatch.backends.numpy_cpu.plugin"]
    assert numpy_plugin.source == "builtin" and numpy_plugin.distribution == "dlbatch"
    assert "backend numpy" in numpy_plugin.registered
    assert "op numpy:Conv" in numpy_plugin.registered
    assert "model type classification" in infos["dlbatch.models.classification"].registered
    assert "loss multinomial_logistic" in infos["dlbatch.losses.multinomial_logistic"].registered
    assert manager.default_backend() == "numpy"


@pytest.mark.parametrize("kind,lookup", [("backend", manager.backend), ("loss", manager.loss),
                                         ("model type", manager.model_type)])
def test_unknown_names_list_the_available_ones(kind, lookup):
    with pytest.raises(dlbatch.DLPluginError) as err:
        lookup("no_such_thing")
    msg = str(err.value)
    assert f"unknown {kind} 'no_such_thing'" in msg and "available:" in msg and "Loaded plugins" in msg


def test_create_with_unknown_type_or_backend_lists_names():
    with pytest.raises(dlbatch.DLPluginError, match="classification"):
        dlbatch.create_dl_model("segmentatoin", num_classes=2)
    with pytest.raises(dlbatch.DLPluginError, match="numpy"):
        tiny_model(backend="cupy")


def test_entry_point_plugin_loss_replaces_builtin_and_matches_torch(example_installed):
    info = {p.name: p for p in dlbatch.plugins()}["example"]
    assert info.source == "entry point"
    assert (info.distribution, info.version) == ("dlbatch-example-plugin", "0.1.0")
    assert "loss label_smoothing_logistic" in info.registered and "op numpy:Softplus" in info.registered

    model = tiny_model(precision="float64", losses={"classification": "label_smoothing_logistic"})
    assert model.get_param("losses") == {"classification": "label_smoothing_logistic"}
    out = model.train_batch(make_samples(4))
    assert set(out) == {"total_loss", "loss_label_smoothing_logistic", "loss_regularization"}
    # the plugin loss (a weighted sum, like every loss) against torch's own label smoothing
    loss = manager.loss("label_smoothing_logistic")
    rng = np.random.default_rng(0)
    z, y = rng.standard_normal((5, 3)), rng.integers(0, 3, 5)
    value, grad = loss.value_and_grad(np, z, y, np.ones(5))
    zt = torch.tensor(z, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(zt, torch.tensor(y), label_smoothing=0.1, reduction="sum")
    ref.backward()
    assert float(value) == pytest.approx(float(ref), rel=1e-12)
    np.testing.assert_allclose(grad, zt.grad.numpy(), rtol=1e-10)


def test_plugin_kernel_gradient_matches_finite_differences(example_installed):
    kernel = manager.kernels("numpy")["Softplus"]
    x = np.random.default_rng(1).standard_normal(7) * 3
    ctx = OpContext(needs_input_grad=(True,))
    (y,), saved = kernel.forward(ctx, [x], {})
    dy = np.random.default_rng(2).standard_normal(7)
    (dx,) = kernel.backward(ctx, saved, [dy], {})
    eps = 1e-6
    numeric = (np.logaddexp(0, x + eps) - np.logaddexp(0, x - eps)) / (2 * eps) * dy
    np.testing.assert_allclose(dx, numeric, rtol=1e-7)


def test_user_plugins_toml_adds_modules_and_disables_plugins(fresh_plugins, tmp_path):
    module = tmp_path / "my_dlbatch_loss.py"
    module.write_text(textwrap.dedent("""
        from dlbatch.core.hookspecs import hookimpl
        from dlbatch.losses.multinomial_logistic import MultinomialLogistic

        class Doubled(MultinomialLogistic):
            name = "doubled_logistic"
            def value_and_grad(self, xp, prediction, target, weights, options=None):
                v, g = super().value_and_grad(xp, prediction, target, weights, options)
                return 2 * v, 2 * g

        @hookimpl
        def dlbatch_register_losses(register):
            register(Doubled())
    """))
    toml = tmp_path / "plugins.toml"
    toml.write_text('[plugins]\nmodules = ["my_dlbatch_loss"]\ndisable = ["dlbatch.backends.torch.plugin"]\n')
    fresh_plugins.syspath_prepend(str(tmp_path))
    fresh_plugins.setenv("DLBATCH_PLUGINS", str(toml))
    manager.reload()
    names = {p.name for p in dlbatch.plugins()}
    assert "my_dlbatch_loss" in names and "dlbatch.backends.torch.plugin" not in names
    with pytest.raises(dlbatch.DLPluginError, match="unknown backend 'torch'"):
        manager.backend("torch")
    a = tiny_model(precision="float64")
    b = tiny_model(precision="float64", losses={"classification": "doubled_logistic"})
    s = make_samples(4)
    assert b.train_batch(s)["loss_doubled_logistic"] == pytest.approx(2 * a.train_batch(s)["loss_multinomial_logistic"])


def test_missing_plugins_file_in_env_is_a_clear_error(fresh_plugins, tmp_path):
    fresh_plugins.setenv("DLBATCH_PLUGINS", str(tmp_path / "nope.toml"))
    with pytest.raises(dlbatch.DLPluginError, match="not a file"):
        manager.reload()


def test_import_dlbatch_and_numpy_training_do_not_import_torch():
    code = ("import sys, numpy as np, dlbatch\n"
            "m = dlbatch.create_dl_model('classification', num_classes=2, image_dimensions=[8, 8, 1], batch_size=2)\n"
            "s = [{'image': np.zeros((8, 8, 1), np.float32), 'image_label_id': i} for i in (0, 1)]\n"
            "m.train_batch(s)\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
