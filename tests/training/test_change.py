"""Change strategies: the value a parameter has during each epoch, observed on the model while
it trains, against the HALCON rule written out by hand; and every malformed strategy refused
before the first step, the model untouched."""
from __future__ import annotations

import pytest

from dlbatch import DLParamError
from dlbatch.training import parse_change, train_dl_model

from .tiny import Recorder, classifier, striped_samples


def _param_per_epoch(change, epochs, name):
    model = classifier()
    rec = Recorder(model, watch=lambda m: m.get_param(name))
    train_dl_model(model, striped_samples(8), epochs=epochs, change=change, progress=rec)
    per_epoch = {}
    for epoch, value in rec.watched:
        per_epoch.setdefault(epoch, set()).add(value)
    assert all(len(v) == 1 for v in per_epoch.values()), "a value changed inside an epoch"
    return [per_epoch[e].pop() for e in range(1, epochs + 1)]


def test_learning_rate_follows_halcon_epochs_as_completed_epoch_counts():
    # epochs [2, 3]: the value applies once 2 (then 3) epochs are done, i.e. from the 3rd (4th) epoch
    change = {"model_param": "learning_rate", "initial_value": 0.05, "epochs": [2, 3], "values": [0.005, 0.0005]}
    assert _param_per_epoch(change, 5, "learning_rate") == [0.05, 0.05, 0.005, 0.0005, 0.0005]


def test_several_strategies_and_epoch_zero_replaces_the_initial_value():
    change = [{"model_param": "momentum", "initial_value": 0.5, "epochs": [0], "values": [0.8]},
              {"model_param": "learning_rate", "initial_value": 0.02, "epochs": [1], "values": [0.01]}]
    assert _param_per_epoch(change, 3, "momentum") == [0.8, 0.8, 0.8]
    assert _param_per_epoch(change, 3, "learning_rate") == [0.02, 0.01, 0.01]


def test_epoch_records_show_the_values_set():
    model = classifier()
    change = {"model_param": "weight_prior", "initial_value": 0.0, "epochs": [1], "values": [1e-4]}
    result = train_dl_model(model, striped_samples(8), epochs=2, change=change, progress=False)
    assert [r["params"]["weight_prior"] for r in result["history"]] == [0.0, 1e-4]
    assert model.get_param("weight_prior") == 1e-4


@pytest.mark.parametrize("change, message", [
    ({"model_param": "learning_rate", "initial_value": 0.1, "epochs": [1]}, "missing values"),
    ({"model_param": "learning_rate", "initial_value": 0.1, "epochs": [1], "values": [0.1], "x": 1}, "unknown x"),
    ({"model_param": "learning_rat", "initial_value": 0.1, "epochs": [1], "values": [0.1]}, "learning_rate"),
    ({"model_param": "batch_size", "initial_value": 2, "epochs": [1], "values": [4]}, "iterations per epoch"),
    ({"model_param": "num_classes", "initial_value": 2, "epochs": [1], "values": [4]}, "read-only"),
    ({"model_param": "learning_rate", "initial_value": 0.1, "epochs": [1, 2], "values": [0.1]}, "one value per"),
    ({"model_param": "learning_rate", "initial_value": 0.1, "epochs": [3, 2], "values": [0.1, 0.2]},
     "increase strictly"),
    ({"model_param": "learning_rate", "initial_value": 0.1, "epochs": [1.5], "values": [0.1]}, "whole numbers"),
    ({"model_param": "learning_rate", "initial_value": 0.1, "epochs": [1], "values": [-0.1]}, "must be > 0"),
    ({"model_param": "solver_type", "initial_value": "sgd", "epochs": [1], "values": ["rmsprop"]}, "allowed"),
    ([{"model_param": "momentum", "initial_value": 0.1, "epochs": [1], "values": [0.2]}] * 2, "already has"),
    ("learning_rate", "dict or a list"),
])
def test_malformed_strategies_are_refused_before_training(change, message):
    model = classifier()
    before = {n: model.get_param(n) for n in ("learning_rate", "momentum", "solver_type")}
    with pytest.raises(DLParamError, match=message):
        train_dl_model(model, striped_samples(8), epochs=1, change=change, progress=False)
    assert {n: model.get_param(n) for n in before} == before
    assert int(model.solver_state["step"]) == 0


def test_parse_keeps_the_model_as_it_was_after_trying_the_values():
    model = classifier(learning_rate=0.03)
    strategies = parse_change({"model_param": "learning_rate", "initial_value": 0.1, "epochs": [4, 8],
                               "values": [0.01, 0.001]}, model)
    assert model.get_param("learning_rate") == 0.03
    s = strategies[0]
    assert [s.value_after(d) for d in (0, 3, 4, 7, 8, 100)] == [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
