"""DLModel's public state API: read-only views, one commit, replace_params dropping the
replaced tensors' solver state."""
from __future__ import annotations

import numpy as np
import pytest

import dlbatch
from dlbatch.core.errors import DLParamError

from ..conftest import make_samples, tiny_model


def trained(**params):
    model = tiny_model(**params)
    model.train_batch(make_samples(4))
    return model


def test_views_are_read_only_and_follow_the_model():
    model = tiny_model()
    hp, values, state = model.hyperparameters, model.values, model.solver_state
    with pytest.raises(TypeError):
        hp["learning_rate"] = 1.0
    with pytest.raises(TypeError):
        values["fc.weight"] = None
    with pytest.raises(TypeError):
        state["velocity"]["fc.weight"] = None
    model.set_param("learning_rate", 0.5)
    assert model.hyperparameters["learning_rate"] == 0.5
    assert (model.backend_name, model.device, model.precision) == ("numpy", "cpu", "float32")
    assert set(model.values) == set(model.graph.initializer_names())


def test_commit_replaces_values_and_solver_state_together():
    model = trained()
    before = model.solver_state_dict()
    new = {"fc.bias": model.asarray(np.arange(3, dtype=np.float64))}
    model.commit(new, model.solver_state)
    np.testing.assert_array_equal(model.state_dict()["fc.bias"], np.arange(3, dtype=np.float32))
    assert model.values["fc.bias"].dtype == np.float32  # asarray takes the model's precision
    after = model.solver_state_dict()
    assert after.keys() == before.keys() and all(np.array_equal(after[k], before[k]) for k in after)


@pytest.mark.parametrize("bad,match", [({"nope": np.zeros(3)}, "not initializers"),
                                       ({"fc.bias": np.zeros(4)}, "change shape")])
def test_commit_refuses_unknown_names_and_new_shapes_and_changes_nothing(bad, match):
    model = trained()
    state = model.state_dict()
    with pytest.raises(DLParamError, match=match):
        model.commit({n: model.asarray(v) for n, v in bad.items()})
    after = model.state_dict()
    assert all(np.array_equal(after[k], state[k]) for k in state)


def test_replace_params_drops_only_the_replaced_tensors_solver_state():
    model = trained(solver_type="adam")
    flat = model.solver_state_dict()
    assert "adam_m/fc.weight" in flat and "adam_m/stem.conv.weight" in flat
    model.replace_params({"fc.weight": np.ones((5, 128)), "fc.bias": np.zeros(5)})
    flat_after = model.solver_state_dict()
    assert not any(k.endswith(("/fc.weight", "/fc.bias")) for k in flat_after)
    np.testing.assert_array_equal(flat_after["adam_m/stem.conv.weight"], flat["adam_m/stem.conv.weight"])
    assert model.values["fc.weight"].shape == (5, 128)
    with pytest.raises(DLParamError, match="not trainable"):
        model.replace_params({"stem.bn.running_mean": np.zeros(32)})


def test_class_count_change_goes_through_replace_params_and_keeps_training():
    model = trained()
    model.set_param("class_ids", [0, 1, 2, 3])
    assert model.values["fc.weight"].shape[0] == 4
    out = dlbatch.train_dl_model_batch(model, make_samples(4, class_ids=(0, 1, 2, 3)))
    assert np.isfinite(out["total_loss"])
