"""Numerical faults (issue 17, item 2): a step whose loss, gradient, batch-norm statistics or
new weights become non-finite is refused with a DLNumericError that says what to lower, and
leaves weights, batch-norm statistics and solver state bit-identical; on every model type
and instance type, on both backends."""
from __future__ import annotations

import numpy as np
import pytest

import dlbatch
from dlbatch import DLNumericError

from .models import KINDS, assert_unchanged, make_model, snapshot, valid_batch

NEEDS_TORCH = pytest.mark.skipif(not dlbatch.core.plugins.manager.registry.backends.get("torch"),
                                 reason="torch backend not installed")
BACKENDS = ["numpy", pytest.param("torch", marks=NEEDS_TORCH)]
MAX_STEPS = 6  # a fault that takes longer to show is not the one under test


def train_until_refused(model, batch_for):
    """Train step after step until one is refused; that step must change nothing."""
    for step in range(MAX_STEPS):
        before = snapshot(model)
        try:
            model.train_batch(batch_for(step))
        except DLNumericError as err:
            assert_unchanged(before, model, f"the refused step {step}")
            return str(err)
    raise AssertionError(f"{MAX_STEPS} steps trained without a numerical fault")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
def test_a_huge_learning_rate_is_refused_and_says_to_lower_it(kind, backend):
    model = make_model(kind, backend=backend)
    model.train_batch(valid_batch(model, seed=1))  # non-empty solver state
    model.set_param("learning_rate", 1e30)
    message = train_until_refused(model, lambda step: valid_batch(model, seed=10 + step))
    assert "not applied" in message and "lower learning_rate" in message.lower(), message


@pytest.mark.parametrize("kind,backend", [(k, "numpy") for k in KINDS] + [
    pytest.param(k, "torch", marks=NEEDS_TORCH) for k in ("classification", "rectangle2")])
def test_float32_images_at_the_edge_of_the_range_are_refused(kind, backend):
    """3e38 is finite in float32 (so the sample checks accept it) but overflows in the first
    convolution: the step is refused, naming the images and the learning rate."""
    model = make_model(kind, backend=backend)
    model.train_batch(valid_batch(model, seed=1))

    def extreme(step):
        batch = valid_batch(model, seed=20 + step)
        batch[0]["image"] = np.full_like(batch[0]["image"], 3e38)
        return batch

    message = train_until_refused(model, extreme)
    assert "not applied" in message and "lower" in message.lower(), message
    assert "images" in message or "input data" in message, message


@pytest.mark.parametrize("kind", KINDS)
def test_a_weight_prior_that_overflows_is_refused(kind):
    model = make_model(kind)
    model.train_batch(valid_batch(model, seed=1))
    model.set_param("weight_prior", 1e300)
    message = train_until_refused(model, lambda step: valid_batch(model, seed=30 + step))
    assert "loss_regularization" in message and "weight_prior" in message, message


@pytest.mark.parametrize("kind", ["classification", "rectangle2"])
def test_adam_with_a_huge_learning_rate_is_refused(kind):
    model = make_model(kind, solver_type="adam")
    model.train_batch(valid_batch(model, seed=1))  # first and second moments exist
    model.set_param("learning_rate", 1e36)
    message = train_until_refused(model, lambda step: valid_batch(model, seed=40 + step))
    assert "lower learning_rate" in message.lower(), message


def test_after_a_refused_step_training_goes_on_from_the_old_state():
    """Training on after a refused step continues from the unchanged model: the step counter
    (Adam's bias correction) counts only applied steps, and the weights equal those of a
    twin model that never saw the refused batch."""
    model, twin = (make_model("classification", solver_type="adam") for _ in range(2))
    for m in (model, twin):
        m.train_batch(valid_batch(m, seed=1))
    bad = valid_batch(model, seed=3)
    bad[1]["image"] = np.full_like(bad[1]["image"], -3e38)
    with pytest.raises(DLNumericError):
        model.train_batch(bad)
    for m in (model, twin):
        m.train_batch(valid_batch(m, seed=2))
    assert int(model.solver_state_dict()["adam_step"]) == 2
    for name, value in twin.state_dict().items():
        assert model.state_dict()[name].tobytes() == value.tobytes(), name


def test_adam_moments_that_overflow_are_refused():
    model = make_model("classification", solver_type="adam", learning_rate=1e-30)
    model.train_batch(valid_batch(model, seed=1))
    model.set_param("weight_prior", 1e20)
    before = snapshot(model)
    with pytest.raises(DLNumericError):
        model.train_batch(valid_batch(model, seed=2))
    assert_unchanged(before, model, "the refused step")
