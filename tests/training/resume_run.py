"""A training run for the resume tests, as a script: `python resume_run.py OUT fresh|resume
[SLEEP]`. It trains a small classifier (numpy backend, Adam, a change strategy, augmentation,
a validation set), sleeping SLEEP seconds per iteration from epoch 2 on so a test can kill it
mid-epoch, then writes OUT/weights.npz (every weight and the solver state) and
OUT/result.json."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dlbatch.training import TrainingListener, train_dl_model  # noqa: E402
from tests.training.tiny import classifier, striped_samples  # noqa: E402

EPOCHS = 3
ARGS = dict(epochs=EPOCHS, seed=11, evaluation_interval_epochs=1,
            change={"model_param": "learning_rate", "initial_value": 0.003, "epochs": [1], "values": [0.001]},
            augment={"augmentation_percentage": 70, "mirror": "rc", "rotate": 90, "brightness_variation": 20})


def make_model():
    return classifier(backend="numpy", solver_type="adam", batch_size=2, batch_size_multiplier=2)


def data():
    return striped_samples(24, seed=1), striped_samples(6, seed=2)


class Begin(TrainingListener):
    def __init__(self, sleep: float):
        self.sleep, self.info = sleep, None

    def on_train_begin(self, info):
        self.info = info

    def on_iteration(self, epoch, iteration, iterations_per_epoch, losses):
        if epoch >= 2:
            time.sleep(self.sleep)


def weights(model) -> dict:
    return {**{f"w/{k}": v for k, v in model.state_dict().items()},
            **{f"s/{k}": v for k, v in model.solver_state_dict().items()}}


def main(out: str, mode: str, sleep: float) -> None:
    model = make_model()
    train, validation = data()
    listener = Begin(sleep)
    result = train_dl_model(model, train, validation, out_dir=out, resume=mode == "resume", progress=listener,
                            **ARGS)
    np.savez(Path(out) / "weights.npz", **weights(model))
    (Path(out) / "result.json").write_text(json.dumps({"start_epoch": listener.info["start_epoch"],
                                                       "history": result["history"],
                                                       "best_epoch": result["best_epoch"]}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 0.0)
