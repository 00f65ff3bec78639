"""Resuming: a training process SIGKILLed in the middle of an epoch and resumed, a run stopped
at an epoch boundary and resumed, and a finished run extended, all end with weights and solver
state bit-identical to an uninterrupted run (numpy backend), shuffling, augmentation and change
strategies included. Resuming with other arguments is refused."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import dlbatch
from dlbatch import DLParamError
from dlbatch.training import TrainingListener, train_dl_model
from dlbatch.training.log import read_log

from . import resume_run
from .tiny import classifier, striped_samples

SCRIPT = Path(resume_run.__file__)


def _run(out: Path, mode: str, sleep: float = 0.0) -> dict:
    done = subprocess.run([sys.executable, str(SCRIPT), str(out), mode, str(sleep)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads((out / "result.json").read_text())


def _assert_identical(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


def _npz(path: Path) -> dict:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _without_times(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def _wait_for_epoch_2(proc, log: Path) -> list[dict]:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed"
        if log.exists():
            records = read_log(log)
            if any(r["type"] == "iterations" and r["epoch"] == 2 for r in records):
                return records
        time.sleep(0.01)
    raise AssertionError("the run never reached epoch 2")


def test_sigkill_mid_epoch_then_resume_gives_bit_identical_weights(tmp_path):
    reference = _run(tmp_path / "reference", "fresh")
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(killed), "fresh", "0.2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for_epoch_2(proc, killed / "log.jsonl")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    records = read_log(killed / "log.jsonl")
    assert [r["epoch"] for r in records if r["type"] == "epoch"] == [1]  # killed inside epoch 2
    assert any(r["type"] == "iterations" and r["epoch"] == 2 for r in records)
    assert json.loads((killed / "state" / "state.json").read_text())["epoch"] == 1
    assert not (killed / "final.onnx").exists()

    resumed = _run(killed, "resume")
    assert resumed["start_epoch"] == 1 and reference["start_epoch"] == 0
    _assert_identical(_npz(killed / "weights.npz"), _npz(tmp_path / "reference" / "weights.npz"))
    for name in ("final.onnx", "best.onnx"):
        a, b = (dlbatch.read_dl_model(d / name) for d in (killed, tmp_path / "reference"))
        _assert_identical(a.state_dict(), b.state_dict())
        _assert_identical(a.solver_state_dict(), b.solver_state_dict())
    assert resumed["best_epoch"] == reference["best_epoch"]
    assert _without_times(resumed["history"]) == _without_times(reference["history"])
    # the log holds each record once, the killed partial epoch cut away, losses equal bit for bit
    reference_log = read_log(tmp_path / "reference" / "log.jsonl")
    assert _without_times(read_log(killed / "log.jsonl")) == _without_times(reference_log)


class StopAfter(TrainingListener):
    class Stop(Exception):
        pass

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, epoch, record):
        if epoch == self.epoch:
            raise self.Stop()


ARGS = dict(seed=3, change={"model_param": "learning_rate", "initial_value": 0.02, "epochs": [2], "values": [0.005]},
            augment={"augmentation_percentage": 60, "mirror": "rc", "brightness_variation_spot": 30})


def _state(model):
    return {**model.state_dict(), **{f"solver/{k}": v for k, v in model.solver_state_dict().items()}}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    model = classifier()
    out = tmp_path_factory.mktemp("whole")
    train_dl_model(model, striped_samples(12), striped_samples(4, seed=5), epochs=4, out_dir=out, progress=False,
                   **ARGS)
    return _state(model), read_log(out / "log.jsonl")


def test_clean_stop_at_an_epoch_boundary_then_resume_in_the_same_process(tmp_path, uninterrupted):
    model = classifier()
    with pytest.raises(StopAfter.Stop):
        train_dl_model(model, striped_samples(12), striped_samples(4, seed=5), epochs=4, out_dir=tmp_path,
                       progress=StopAfter(2), **ARGS)
    # the same model object, whose learning rate the change strategy has moved meanwhile
    train_dl_model(model, striped_samples(12), striped_samples(4, seed=5), epochs=4, out_dir=tmp_path, resume=True,
                   progress=False, **ARGS)
    _assert_identical(_state(model), uninterrupted[0])
    assert _without_times(read_log(tmp_path / "log.jsonl")) == _without_times(uninterrupted[1])


def test_a_finished_run_resumed_with_more_epochs_equals_the_longer_run(tmp_path, uninterrupted):
    model = classifier()
    train_dl_model(model, striped_samples(12), striped_samples(4, seed=5), epochs=2, out_dir=tmp_path,
                   progress=False, **ARGS)
    fresh = classifier()  # a new process would start from a new model, as the CLI does
    result = train_dl_model(fresh, striped_samples(12), striped_samples(4, seed=5), epochs=4, out_dir=tmp_path,
                            resume=True, progress=False, **ARGS)
    _assert_identical(_state(fresh), uninterrupted[0])
    assert [r["epoch"] for r in result["history"]] == [1, 2, 3, 4]
    saved = dlbatch.read_dl_model(tmp_path / "final.onnx")
    _assert_identical(saved.state_dict(), fresh.state_dict())


def test_resume_without_a_state_starts_the_run(tmp_path, uninterrupted):
    model = classifier()
    train_dl_model(model, striped_samples(12), striped_samples(4, seed=5), epochs=4, out_dir=tmp_path, resume=True,
                   progress=False, **ARGS)
    _assert_identical(_state(model), uninterrupted[0])


@pytest.mark.parametrize("change, message", [
    (dict(seed=4), "seed was 3, now 4"),
    (dict(augment=None), "augment was"),
    (dict(evaluation_interval_epochs=2), "evaluation_interval_epochs was 1, now 2"),
    (dict(train=striped_samples(16)), "train_samples was 12, now 16"),
    (dict(validation=None), "validation_samples was 4, now None"),
    (dict(model=classifier(momentum=0.5)), "model parameter momentum was 0.9, now 0.5"),
    (dict(epochs=1), "already trained 2 epochs; pass epochs >= 2"),
])
def test_resume_with_other_arguments_is_refused(tmp_path, change, message):
    args = dict(train=striped_samples(12), validation=striped_samples(4, seed=5), epochs=4, **ARGS)
    train_dl_model(classifier(), out_dir=tmp_path, progress=False, **{**args, "epochs": 2})
    state_before = (tmp_path / "state" / "state.json").read_text()
    args.update(change)
    model = args.pop("model", None) or classifier()
    with pytest.raises(DLParamError, match=message):
        train_dl_model(model, args.pop("train"), args.pop("validation"), out_dir=tmp_path, resume=True,
                       progress=False, **args)
    assert (tmp_path / "state" / "state.json").read_text() == state_before
    assert int(model.solver_state["step"]) == 0  # refused before anything was loaded or trained
