"""examples/plugin as a real third-party package: pip builds and installs it (offline, with the
environment's setuptools) into a temporary site folder that only these tests put on the path,
so parallel test runs never see it. Then: `dlbatch plugins list` shows it, a model trains with
its loss and its backend, its model type trains, and `dlbatch plugins disable|enable example`
take effect."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dlbatch
from dlbatch.core.plugins import manager

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plugin"
EPS = 0.1  # the plugin's label smoothing


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """`pip install` of a copy of examples/plugin (pip writes build files next to the source)."""
    root = tmp_path_factory.mktemp("example_plugin")
    src = root / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = root / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                           "--no-index", "--disable-pip-version-check", "--target", str(target), str(src)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (target / "dlbatch_example_plugin-0.1.0.dist-info" / "entry_points.txt").is_file()
    return target


@pytest.fixture
def installed(site, fresh_plugins):
    """The installed plugin visible in this process (and to subprocesses through `env`); a copy
    another test imported from examples/plugin is forgotten first, so the installed one loads."""
    forget_plugin_modules()
    fresh_plugins.syspath_prepend(str(site))
    manager.reload()
    yield site
    forget_plugin_modules()


def forget_plugin_modules() -> None:
    for name in [m for m in sys.modules if m.startswith("dlbatch_example_plugin")]:
        del sys.modules[name]


def cli(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "dlbatch.cli.app", "plugins", *args],
                          capture_output=True, text=True, env=env)


def samples(n=4, seed=3):
    """float32-exact images, so a float32-precision model sees exactly the same inputs."""
    rng = np.random.default_rng(seed)
    return [{"image": (rng.standard_normal((8, 8, 1)) * 50).astype(np.float32), "image_label_id": i % 3}
            for i in range(n)]


def tiny(backend: str, precision: str):
    return dlbatch.create_dl_model("classification", backbone="compact", image_width=8, image_height=8,
                                   image_num_channels=1, class_ids=[0, 1, 2], batch_size=4, learning_rate=0.01,
                                   momentum=0.9, seed=0, backend=backend, precision=precision,
                                   losses={"classification": "label_smoothing_logistic"})


def smoothed_cross_entropy(z: np.ndarray, y: np.ndarray) -> float:
    """Mean over samples of -sum_k q_k log softmax(z)_k with q = (1 - eps) onehot + eps / K."""
    k = z.shape[1]
    q = np.full(z.shape, EPS / k)
    q[np.arange(len(y)), y] += 1 - EPS
    shifted = z - z.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(np.mean(-(q * log_p).sum(axis=1)))


def test_cli_lists_the_installed_package_with_what_it_registered(installed):
    listed = cli(installed, "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    head = lines.index("example  [entry point; dlbatch-example-plugin 0.1.0]")
    block = lines[head + 1:head + 6]
    assert "    backend: numpy64" in block and "    loss: label_smoothing_logistic, binary_logistic" in block
    assert "    model type: multi_label_classification" in block and "    ops for numpy: Softplus" in block
    as_json = json.loads(cli(installed, "list", "--json").stdout)
    info = next(p for p in as_json["plugins"] if p["name"] == "example")
    assert (info["source"], info["distribution"], info["version"]) == \
        ("entry point", "dlbatch-example-plugin", "0.1.0")
    numpy_ops = {r for r in next(p for p in as_json["plugins"]
                                 if p["name"] == "dlbatch.backends.numpy_cpu.plugin")["registered"] if r.startswith("op ")}
    assert {r.replace("numpy:", "numpy64:") for r in numpy_ops} <= set(info["registered"])
    assert {"model type multi_label_classification", "loss binary_logistic"} <= set(info["registered"])
    assert as_json["failed"] == []


def test_the_installed_model_type_trains_on_the_plugin_backend(installed):
    """The package's own model type, found through its entry point: created, one step with its
    loss against a numpy formula, applied (the model type's own suite is
    test_example_plugin_model_type.py)."""
    assert dlbatch.plugin_manager.model_type("multi_label_classification").__module__ == \
        "dlbatch_example_plugin.multi_label"
    assert str(installed) in sys.modules["dlbatch_example_plugin"].__file__  # the pip-installed copy
    model = dlbatch.create_dl_model("multi_label_classification", class_ids=[0, 1, 2], image_dimensions=[8, 8, 1],
                                    batch_size=4, seed=0, backend="numpy64")
    data = [{**s, "image_label_ids": [[], [0], [1, 2], [0, 1, 2]][i]} for i, s in enumerate(samples())]
    enc = model.model_type.encode(data, model.hyperparameters, model.meta, labels=True, dtype=model.precision)
    z = np.asarray(model.program().forward(model.values, {k: model.asarray(v) for k, v in enc.inputs.items()},
                                           training=True, wanted=(model.meta["logits"],)).outputs[model.meta["logits"]])
    y = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 1], [1, 1, 1]])
    expected = np.mean(np.logaddexp(0, z) - y * z)  # binary cross-entropy over samples x classes
    assert model.train_batch(data)["loss_binary_logistic"] == pytest.approx(expected, rel=1e-12)
    assert set(dlbatch.apply_dl_model(model, data)[0]) == \
        {"classification_class_ids", "classification_class_names", "classification_confidences"}


def test_one_step_with_the_plugin_loss_on_the_plugin_backend(installed):
    data = samples()
    a = tiny("numpy64", "float32")  # the backend computes in float64 whatever the precision says
    b = tiny("numpy", "float32")
    b.set_param("precision", "float64")  # the same float32-initialised weights, exactly, in float64
    c = tiny("numpy", "float32")
    assert a.get_param("backend") == "numpy64"
    assert {str(v.dtype) for v in a.values.values() if v.dtype.kind == "f"} == {"float64"}
    for name, value in b.numpy_values().items():
        np.testing.assert_array_equal(a.numpy_values()[name], value)

    # the loss the step reports, against the formula on the training forward's logits
    enc = a.model_type.encode(data, a.hyperparameters, a.meta, labels=True, dtype=a.precision)
    term = a.loss_terms()[0]
    logits = a.program().forward(a.values, {k: a.asarray(v) for k, v in enc.inputs.items()},
                                 training=True, wanted=(term.output,)).outputs[term.output]
    expected = smoothed_cross_entropy(np.asarray(logits), np.array([s["image_label_id"] for s in data]))

    out_a, out_b = a.train_batch(data), b.train_batch(data)
    c.train_batch(data)
    assert out_a["loss_label_smoothing_logistic"] == pytest.approx(expected, rel=1e-12)
    assert out_a["loss_label_smoothing_logistic"] == pytest.approx(out_b["loss_label_smoothing_logistic"], rel=1e-12)
    after_a, after_b, after_c = a.numpy_values(), b.numpy_values(), c.numpy_values()
    for name in a.graph.trainable:
        assert after_a[name].dtype == np.float64
        np.testing.assert_allclose(after_a[name], after_b[name], rtol=0, atol=1e-12)
    # and it really is not float32 arithmetic
    assert max(np.abs(after_a[n] - after_c[n].astype(np.float64)).max() for n in a.graph.trainable) > 1e-9


def test_disable_and_enable_take_effect(installed, tmp_path):
    toml = tmp_path / "user" / "plugins.toml"  # DLBATCH_PLUGINS points here (fresh_plugins)
    done = cli(installed, "disable", "example")
    assert done.returncode == 0 and f"disabled example in {toml}" in done.stdout, done.stderr

    listed = json.loads(cli(installed, "list", "--json").stdout)
    assert "example" not in {p["name"] for p in listed["plugins"]}
    assert {"name": "example", "source": "entry point", "distribution": "dlbatch-example-plugin"}.items() <= \
        next(d for d in listed["disabled"] if d["name"] == "example").items()
    manager.reload()
    with pytest.raises(dlbatch.DLError, match="unknown loss 'label_smoothing_logistic'.*Disabled plugins: example"):
        tiny("numpy", "float64")
    with pytest.raises(dlbatch.DLPluginError, match="unknown backend 'numpy64'"):
        manager.backend("numpy64")

    done = cli(installed, "enable", "example")
    assert done.returncode == 0 and "enabled example" in done.stdout, done.stderr
    manager.reload()
    assert tiny("numpy64", "float64").train_batch(samples())["loss_label_smoothing_logistic"] > 0
