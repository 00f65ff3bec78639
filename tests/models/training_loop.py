"""The short training loop the learning tests share: random batches from a fixed training set,
one step-down of the learning rate for the last part of the run (HALCON's change strategy)."""
from __future__ import annotations

import numpy as np

import dlbatch


def train_for(model, samples, steps: int, *, final_learning_rate: float, drop_at: float, seed: int = 0) -> None:
    batch = model.get_param("batch_size")
    rng = np.random.default_rng(seed)
    for step in range(steps):
        if step == int(steps * drop_at):
            model.set_param("learning_rate", final_learning_rate)
        dlbatch.train_dl_model_batch(model, [samples[i] for i in rng.choice(len(samples), batch, replace=False)])
