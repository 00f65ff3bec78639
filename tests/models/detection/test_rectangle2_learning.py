"""An oriented detection model learns the synthetic elongated objects: held-out ap_50 >= 0.8
with rotated IoU within a short run (64x64, one class, direction ignored). Longer runs, several
classes and directed objects: examples/detection_synthetic.py --instance-type rectangle2."""
from __future__ import annotations

import numpy as np
import pytest

import dlbatch
from dlbatch.data import detection_samples

from ..training_loop import train_for

SIDE, STEPS, BATCH = 64, 400, 8


@pytest.mark.slow
def test_compact_rectangle2_detection_reaches_ap_50_of_0_8_on_held_out_scenes():
    model = dlbatch.create_dl_model("detection", backbone="compact", class_ids=[1], image_dimensions=[SIDE, SIDE, 3],
                                    batch_size=BATCH, solver_type="adam", learning_rate=1e-3, weight_prior=1e-5,
                                    seed=0, instance_type="rectangle2", ignore_direction=True,
                                    anchor_angles=[-np.pi / 4, 0.0, np.pi / 4, np.pi / 2], anchor_aspect_ratios=[2.5],
                                    anchor_num_subscales=2, min_confidence=0.05)
    make = lambda n, seed: dlbatch.preprocess_dl_samples(  # noqa: E731
        detection_samples(n, height=SIDE, width=SIDE, class_ids=(1,), seed=seed, instance_type="rectangle2"), model)
    train, held_out = make(1000, 1), make(100, 2)
    train_for(model, train, STEPS, final_learning_rate=1e-4, drop_at=0.8)
    measures = dlbatch.evaluate_dl_model(model, held_out)
    assert measures["ap_50"] >= 0.8, measures
