"""A segmentation model learns the synthetic scenes: held-out mean IoU >= 0.9 within a short
run (small images, one shape class on textured backgrounds). The longer multi-class runs and
both built-in backbones are in examples/segmentation_synthetic.py, numbers in the README."""
from __future__ import annotations

import pytest

import dlbatch
from dlbatch.data import segmentation_samples

from .training_loop import train_for

SIDE, STEPS, BATCH = 32, 400, 16


@pytest.mark.slow
def test_compact_segmentation_reaches_mean_iou_0_9_on_held_out_scenes():
    model = dlbatch.create_dl_model("segmentation", backbone="compact", class_ids=[0, 1],
                                    image_dimensions=[SIDE, SIDE, 3], batch_size=BATCH, learning_rate=0.05,
                                    momentum=0.9, weight_prior=1e-5, seed=0)
    make = lambda n, seed: dlbatch.preprocess_dl_samples(  # noqa: E731
        segmentation_samples(n, height=SIDE, width=SIDE, class_ids=(1,), seed=seed), model)
    train, held_out = make(2000, 1), make(64, 2)
    before = dlbatch.evaluate_dl_model(model, held_out)["mean_iou"]
    train_for(model, train, STEPS, final_learning_rate=0.005, drop_at=0.75)
    measures = dlbatch.evaluate_dl_model(model, held_out)
    assert before < 0.6
    assert measures["mean_iou"] >= 0.9, measures
