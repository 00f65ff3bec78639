"""A broken third-party plugin is skipped and reported; built-ins and plugins.toml modules
failing are still errors."""
from __future__ import annotations

import warnings

import pytest

import dlbatch
from dlbatch.core import plugins as plugins_module
from dlbatch.core.plugins import DLPluginWarning, PluginManager, manager
from tests.plugins.conftest import fake_distribution

GOOD = """
    from dlbatch.core.hookspecs import hookimpl
    from dlbatch.losses.multinomial_logistic import MultinomialLogistic

    class Good(MultinomialLogistic):
        name = "good_logistic"

    @hookimpl
    def dlbatch_register_losses(register):
        register(Good())
"""
RAISES_ON_IMPORT = """
    raise RuntimeError("this plugin needs a licence server")
"""
HALF_REGISTERED = """
    from dlbatch.core.hookspecs import hookimpl
    from dlbatch.losses.multinomial_logistic import MultinomialLogistic

    class Half(MultinomialLogistic):
        name = "half_logistic"

    @hookimpl
    def dlbatch_register_losses(register):
        register(Half())

    @hookimpl
    def dlbatch_register_ops(register):
        raise ValueError("no kernels for you")
"""
BAD_SIGNATURE = """
    from dlbatch.core.hookspecs import hookimpl

    @hookimpl
    def dlbatch_register_losses(register, surprise):
        pass
"""


def install_fakes(fresh_plugins, tmp_path):
    site = tmp_path / "site"
    fake_distribution(site, "dlbatch-good", "1.2.3", {"good": "fake_good"}, {"fake_good": GOOD})
    fake_distribution(site, "dlbatch-broken", "0.0.1", {"broken": "fake_broken"},
                      {"fake_broken": RAISES_ON_IMPORT})
    fake_distribution(site, "dlbatch-half", "2.0", {"half": "fake_half"}, {"fake_half": HALF_REGISTERED})
    fake_distribution(site, "dlbatch-badsig", "3.0", {"badsig": "fake_badsig"}, {"fake_badsig": BAD_SIGNATURE})
    fake_distribution(site, "dlbatch-missing", "4.0", {"missing": "no_such_module_anywhere"}, {})
    fresh_plugins.syspath_prepend(str(site))


def test_failing_entry_points_are_recorded_and_the_rest_loads(fresh_plugins, tmp_path):
    install_fakes(fresh_plugins, tmp_path)
    fresh = PluginManager()  # warnings are once per manager and failure: a new one warns
    with pytest.warns(DLPluginWarning) as caught:
        fresh.reload()
    assert len(caught) == 1  # one warning for all of them
    message = str(caught[0].message)
    for name in ("broken", "half", "badsig", "missing"):
        assert name in message

    failed = {f.name: f for f in fresh.failed_plugins()}
    assert set(failed) == {"broken", "half", "badsig", "missing"}
    assert "licence server" in failed["broken"].reason and "RuntimeError" in failed["broken"].reason
    assert (failed["broken"].distribution, failed["broken"].version) == ("dlbatch-broken", "0.0.1")
    assert "dlbatch_register_ops" in failed["half"].reason and "no kernels for you" in failed["half"].reason
    assert "surprise" in failed["badsig"].reason
    assert "no_such_module_anywhere" in failed["missing"].reason
    name, reason = fresh.failed_plugins()[0]  # unpacks as (name, reason)
    assert name in failed and reason == failed[name].reason

    loaded = {p.name: p for p in fresh.plugins()}
    assert not set(failed) & set(loaded)
    assert loaded["good"].distribution == "dlbatch-good" and loaded["good"].registered == ["loss good_logistic"]
    assert fresh.loss("good_logistic").name == "good_logistic"
    assert "dlbatch.backends.numpy_cpu.plugin" in loaded
    # the half-registered plugin contributed nothing, not even the loss it registered first
    with pytest.raises(dlbatch.DLPluginError, match="failed to load: .*half"):
        fresh.loss("half_logistic")


def test_the_same_failure_is_warned_once_per_process(fresh_plugins, tmp_path):
    install_fakes(fresh_plugins, tmp_path)
    fresh = PluginManager()
    with pytest.warns(DLPluginWarning):
        fresh.reload()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DLPluginWarning)
        fresh.reload()  # same failures: no second warning
    assert {f.name for f in fresh.failed_plugins()} == {"broken", "half", "badsig", "missing"}


def test_a_disabled_broken_plugin_is_not_loaded_and_not_reported(fresh_plugins, tmp_path):
    install_fakes(fresh_plugins, tmp_path)
    toml = tmp_path / "user" / "plugins.toml"
    toml.write_text('[plugins]\ndisable = ["broken", "half", "badsig", "missing"]\n')
    with warnings.catch_warnings():
        warnings.simplefilter("error", DLPluginWarning)
        manager.reload()
    assert manager.failed_plugins() == []
    disabled = {d.name: d for d in manager.disabled_plugins()}
    assert set(disabled) == {"broken", "half", "badsig", "missing"}
    assert (disabled["broken"].source, disabled["broken"].distribution) == ("entry point", "dlbatch-broken")


def test_a_failing_builtin_module_is_still_an_error(fresh_plugins):
    real = plugins_module.builtin_config()
    modules = real["plugins"]["modules"] + ["dlbatch.no_such_builtin"]
    fresh_plugins.setattr(plugins_module, "builtin_config",
                          lambda: {**real, "plugins": {**real["plugins"], "modules": modules}})
    with pytest.raises(dlbatch.DLPluginError, match="dlbatch.no_such_builtin.*builtin"):
        manager.reload()


def test_a_failing_user_plugins_toml_module_is_still_an_error(fresh_plugins, tmp_path):
    (tmp_path / "user" / "plugins.toml").write_text('[plugins]\nmodules = ["no_such_user_module"]\n')
    with pytest.raises(dlbatch.DLPluginError, match="no_such_user_module.*plugins.toml"):
        manager.reload()
