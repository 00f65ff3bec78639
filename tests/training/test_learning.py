"""A short train_dl_model run learns on every model type: the epoch-mean loss drops and the
validation metric moves the right way from the untrained model's, with augmentation on."""
from __future__ import annotations

import dlbatch
from dlbatch.data import detection_samples, segmentation_samples
from dlbatch.training import train_dl_model
from dlbatch.training.batches import augmentation

from .tiny import classifier, striped_samples


def _learns(model, train, validation, epochs, **args):
    before = dlbatch.evaluate_dl_model(model, dlbatch.preprocess_dl_samples(validation, model))
    result = train_dl_model(model, train, validation, epochs=epochs, evaluation_interval_epochs=epochs,
                            progress=False, **args)  # one evaluation, after the last epoch
    losses = [r["losses"]["total_loss"] for r in result["history"]]
    assert losses[-1] < 0.7 * losses[0], losses
    metric = model.model_type.main_metric
    first = before[metric.name]
    assert metric.better(result["best_metric"], first), (first, result["best_metric"])
    return before, result


def test_classification_learns():
    before, result = _learns(classifier(), striped_samples(32), striped_samples(16, seed=7), 5,
                             augment={"augmentation_percentage": 50, "mirror": "r"})
    assert result["best_metric"] <= 0.1


def test_segmentation_learns():
    model = dlbatch.create_dl_model("segmentation", backbone="compact", class_ids=[0, 1], image_dimensions=[32, 32, 3],
                                    batch_size=8, learning_rate=0.05, momentum=0.9, seed=0)
    make = lambda n, seed: segmentation_samples(n, height=32, width=32, class_ids=(1,), seed=seed)  # noqa: E731
    _learns(model, make(48, 1), make(8, 2), 4, augment={"augmentation_percentage": 50, "mirror": "rc"})


def test_detection_learns():
    model = dlbatch.create_dl_model("detection", backbone="compact", class_ids=[1], image_dimensions=[64, 64, 3],
                                    batch_size=8, solver_type="adam", learning_rate=2e-3, seed=0, min_confidence=0.05)
    make = lambda n, seed: detection_samples(n, height=64, width=64, class_ids=(1,), seed=seed,  # noqa: E731
                                             min_objects=1)
    _learns(model, make(32, 1), make(8, 2), 4, augment={"augmentation_percentage": 50, "mirror": "rc"})


def test_rectangle2_augmentation_takes_the_models_orientation_convention():
    model = dlbatch.create_dl_model("detection", backbone="compact", class_ids=[1, 2], image_dimensions=[64, 64, 3],
                                    instance_type="rectangle2", ignore_direction=True, class_ids_no_orientation=[2])
    params = augmentation({"mirror": "c"}, model)
    assert params.ignore_direction is True and tuple(params.class_ids_no_orientation) == (2,)
    assert augmentation({"mirror": "c", "ignore_direction": False}, model).ignore_direction is False
    assert augmentation({"mirror": "c"}, classifier()).ignore_direction is False
