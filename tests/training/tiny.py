"""Small models and learnable raw samples shared by the training-procedure tests."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

import dlbatch
from dlbatch.training import TrainingListener

SIDE = 8


def classifier(**params):
    args = dict(class_ids=[0, 1], image_dimensions=[SIDE, SIDE, 1], batch_size=4, learning_rate=0.01,
                momentum=0.9, seed=0)
    args.update(params)
    return dlbatch.create_dl_model("classification", backbone="compact", **args)


def striped_samples(n: int, seed: int = 0) -> list[dict]:
    """Raw uint8 images (not the model's type, so they get preprocessed): class 1 has a bright
    left half, class 0 a dark one, over noise."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = i % 2
        image = rng.integers(0, 120, (SIDE, SIDE, 1)).astype(np.uint8)
        image[:, :SIDE // 2] = 230 if label else 10
        out.append({"image": image, "image_label_id": label})
    return out


class Recorder(TrainingListener):
    """Keeps every call, and anything `watch(model)` returns at each iteration."""

    def __init__(self, model=None, watch=None):
        self.model, self.watch = model, watch
        self.begin, self.iterations, self.evaluations, self.epochs, self.end = None, [], [], [], None
        self.watched = []

    def on_train_begin(self, info):
        self.begin = info

    def on_iteration(self, epoch, iteration, iterations_per_epoch, losses):
        self.iterations.append((epoch, iteration, iterations_per_epoch, dict(losses)))
        if self.watch is not None:
            self.watched.append((epoch, self.watch(self.model)))

    def on_evaluation(self, epoch, summary, main_metric, value, is_best):
        self.evaluations.append((epoch, summary, main_metric, value, is_best))

    def on_epoch_end(self, epoch, record):
        self.epochs.append((epoch, record))

    def on_train_end(self, result):
        self.end = result


class CountingSequence:
    """A Sequence of samples that records which indices were fetched, in order."""

    def __init__(self, samples):
        self.samples, self.fetched = samples, []

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        if isinstance(i, slice):
            raise TypeError("the training procedure fetches one sample at a time")
        self.fetched.append(i)
        return self.samples[i]


Sequence.register(CountingSequence)
