"""Two plugins registering the same backend, loss, model type or op kernel: nothing is silently
replaced. A third-party (entry point) plugin that takes a held name is skipped and reported
like a failed plugin, naming both; a plugins.toml module or a runtime registration that does so
is a DLPluginError naming both. Disabling the holder lets the other one in."""
from __future__ import annotations

import warnings

import pytest

import dlbatch
from dlbatch.core.errors import DLPluginError
from dlbatch.core.plugins import DLPluginWarning, manager
from dlbatch.losses.focal import Focal
from tests.plugins.conftest import fake_distribution
from tests.plugins.conftest import fresh_plugins as _fresh_plugins_fixture

fresh_plugins = _fresh_plugins_fixture  # the fixture, under its own name


def _loss_plugin(loss_name: str, marker: str) -> str:
    return f"""
    from dlbatch.core.hookspecs import hookimpl
    from dlbatch.losses.multinomial_logistic import MultinomialLogistic

    class Mine(MultinomialLogistic):
        name = {loss_name!r}
        marker = {marker!r}

    @hookimpl
    def dlbatch_register_losses(register):
        register(Mine())
"""


CONV_KERNEL = """
    from dlbatch.core.hookspecs import hookimpl

    class FastConv:
        op_type = "Conv"

    @hookimpl
    def dlbatch_register_ops(register):
        register("numpy", "Conv", FastConv())
"""
CLASSIFICATION_TYPE = """
    from dlbatch.core.hookspecs import hookimpl
    from dlbatch.models.classification import Classification

    class MyClassification(Classification):
        marker = "mine"

    @hookimpl
    def dlbatch_register_model_types(register):
        register(MyClassification())
"""


def _load(fresh) -> list:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manager.reload()
    return [w for w in caught if issubclass(w.category, DLPluginWarning)]


def test_a_third_party_plugin_taking_a_builtin_name_is_skipped_naming_both(fresh_plugins, tmp_path):
    site = tmp_path / "site"
    fake_distribution(site, "dlbatch-focal-clone", "1.0", {"focalclone": "fake_focal_clone"},
                      {"fake_focal_clone": _loss_plugin("focal", "clone")})
    fake_distribution(site, "dlbatch-fastconv", "1.0", {"fastconv": "fake_fastconv"},
                      {"fake_fastconv": CONV_KERNEL})
    fresh_plugins.syspath_prepend(str(site))
    caught = _load(fresh_plugins)
    failed = {f.name: f.reason for f in manager.failed_plugins()}
    assert set(failed) >= {"focalclone", "fastconv"}
    assert "'focal'" in failed["focalclone"] and "'dlbatch.losses.focal'" in failed["focalclone"]
    assert "'focalclone'" in failed["focalclone"] and "builtin" in failed["focalclone"]
    assert "'numpy:Conv'" in failed["fastconv"] and "'dlbatch.backends.numpy_cpu.plugin'" in failed["fastconv"]
    assert type(manager.loss("focal")) is Focal  # the built-in is still the one used
    assert type(manager.kernels("numpy")["Conv"]).__name__ != "FastConv"
    listed = {p.name for p in dlbatch.plugins()}
    assert "focalclone" not in listed and "fastconv" not in listed
    assert caught and "focalclone" in str(caught[0].message)
    dlbatch.create_dl_model("classification", backbone="compact", class_ids=[0, 1], image_dimensions=[8, 8, 1])


def test_two_third_party_plugins_with_one_name_keep_the_first_and_report_the_second(fresh_plugins, tmp_path):
    site = tmp_path / "site"
    fake_distribution(site, "dlbatch-one", "1.0", {"one": "fake_one"}, {"fake_one": _loss_plugin("shared", "one")})
    fake_distribution(site, "dlbatch-two", "1.0", {"two": "fake_two"}, {"fake_two": _loss_plugin("shared", "two")})
    fresh_plugins.syspath_prepend(str(site))
    _load(fresh_plugins)
    failed = {f.name: f.reason for f in manager.failed_plugins()}
    loaded = {p.name: p for p in dlbatch.plugins()}
    assert len({"one", "two"} & set(failed)) == 1 and len({"one", "two"} & set(loaded)) == 1
    (winner,) = {"one", "two"} & set(loaded)
    (loser,) = {"one", "two"} & set(failed)
    assert manager.loss("shared").marker == winner
    assert f"'{winner}'" in failed[loser] and f"'{loser}'" in failed[loser] and "'shared'" in failed[loser]
    assert loaded[winner].registered == ["loss shared"]


def test_a_plugins_toml_module_taking_a_builtin_name_is_an_error_until_the_builtin_is_disabled(
        fresh_plugins, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "my_classification.py").write_text(__import__("textwrap").dedent(CLASSIFICATION_TYPE))
    fresh_plugins.syspath_prepend(str(site))
    toml = tmp_path / "user" / "plugins.toml"
    toml.write_text('[plugins]\nmodules = ["my_classification"]\n')
    with pytest.raises(DLPluginError) as info:
        manager.reload()
    message = str(info.value)
    assert "'classification'" in message and "'my_classification'" in message
    assert "'dlbatch.models.classification'" in message and "disable" in message
    toml.write_text('[plugins]\nmodules = ["my_classification"]\ndisable = ["dlbatch.models.classification"]\n')
    manager.reload()
    assert manager.model_type("classification").marker == "mine"


class _NumpyImpostor:
    name = "numpy"


class _ImpostorPlugin:
    from dlbatch.core.hookspecs import hookimpl

    @hookimpl
    def dlbatch_register_backends(self, register):
        register(_NumpyImpostor())


def test_a_runtime_plugin_taking_a_held_name_is_refused_and_changes_nothing():
    before = manager.backend("numpy")
    with pytest.raises(DLPluginError, match=r"backend 'numpy' is registered by both 'impostor' and "
                                            r"'dlbatch.backends.numpy_cpu.plugin'"):
        manager.register_plugin(_ImpostorPlugin(), name="impostor")
    assert manager.backend("numpy") is before
    assert "impostor" not in {p.name for p in dlbatch.plugins()}
    assert not any("impostor" in line for p in dlbatch.plugins() for line in p.registered)
