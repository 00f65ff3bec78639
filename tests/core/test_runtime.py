"""HALCON's `runtime` parameter: gpu selects the torch backend on CUDA, cpu stays on the CPU."""
from __future__ import annotations

import numpy as np
import pytest

import dlbatch
from tests.conftest import assert_same_snapshot, has_cuda, make_samples, snapshot, tiny_model


@pytest.mark.skipif(has_cuda(), reason="checks the no-GPU error")
def test_runtime_gpu_without_cuda_is_a_clear_error_and_changes_nothing():
    model = tiny_model()
    model.train_batch(make_samples(4))
    before = snapshot(model)
    with pytest.raises(dlbatch.DLBackendError, match="cuda"):
        model.set_param("runtime", "gpu")
    assert (model.get_param("backend"), model.get_param("device"), model.get_param("runtime")) == \
        ("numpy", "cpu", "cpu")
    assert_same_snapshot(before, snapshot(model))


@pytest.mark.cuda
def test_runtime_gpu_moves_to_torch_on_cuda_and_back():
    model = tiny_model()
    model.train_batch(make_samples(4, seed=1))
    before = model.state_dict()
    model.set_param("runtime", "gpu")
    assert model.get_param("backend") == "torch" and model.get_param("device").startswith("cuda")
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])
    model.train_batch(make_samples(4, seed=2))
    model.set_param("runtime", "cpu")
    assert model.get_param("device") == "cpu"


def test_runtime_cpu_keeps_a_cpu_backend():
    model = tiny_model(backend="torch")
    model.set_param("runtime", "cpu")
    assert (model.get_param("backend"), model.get_param("device")) == ("torch", "cpu")
    model = tiny_model()
    model.set_param("runtime", "cpu")
    assert model.get_param("backend") == "numpy"


def test_runtime_and_device_are_not_written_to_files(tmp_path):
    model = tiny_model(backend="torch")
    path = tmp_path / "m.onnx"
    dlbatch.write_dl_model(model, path)
    back = dlbatch.read_dl_model(path)
    assert back.get_param("backend") == "numpy"  # the default backend, not the writer's
    import onnx
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    stored = props["dlbatch.hyperparameters"]
    assert '"backend"' not in stored and '"device"' not in stored and '"runtime"' not in stored
