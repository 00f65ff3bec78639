"""The files of a run: best.onnx is the model at its best evaluation, final.onnx the model at
the end, state/ names one complete epoch file, log.jsonl and curves.png are readable."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import dlbatch
from dlbatch import DLParamError
from dlbatch.training import train_dl_model
from dlbatch.training.log import read_log

from .tiny import Recorder, classifier, striped_samples


class BestKeeper(Recorder):
    """Copies the weights whenever an evaluation is the best so far, judged here from the
    values (lower top1_error is better, ties keep the earlier one)."""

    def __init__(self, model):
        super().__init__(model)
        self.best_value, self.best_state, self.best_epoch = None, None, None

    def on_evaluation(self, epoch, summary, main_metric, value, is_best):
        super().on_evaluation(epoch, summary, main_metric, value, is_best)
        if self.best_value is None or summary["top1_error"] < self.best_value:
            self.best_value, self.best_epoch = summary["top1_error"], epoch
            self.best_state = (self.model.state_dict(), self.model.solver_state_dict())


def _same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    model = classifier(learning_rate=0.002, momentum=0.5)
    keeper = BestKeeper(model)
    result = train_dl_model(model, striped_samples(16), striped_samples(12, seed=9), epochs=5,
                            evaluation_interval_epochs=2, out_dir=out, progress=keeper)
    return out, model, keeper, result


def test_best_onnx_is_the_model_at_the_best_evaluation(run):
    out, model, keeper, result = run
    assert [e[0] for e in keeper.evaluations] == [2, 4, 5]  # every 2 epochs and after the last
    assert result["best_epoch"] == keeper.best_epoch and result["best_metric"] == keeper.best_value
    best = dlbatch.read_dl_model(out / "best.onnx")
    _same(best.state_dict(), keeper.best_state[0])
    _same(best.solver_state_dict(), keeper.best_state[1])
    assert [e[4] for e in keeper.evaluations].count(True) >= 1


def test_final_onnx_and_the_state_file_hold_the_final_model(run):
    out, model, keeper, result = run
    for path in (out / "final.onnx", out / "state" / "epoch_0005.onnx"):
        saved = dlbatch.read_dl_model(path)
        _same(saved.state_dict(), model.state_dict())
        _same(saved.solver_state_dict(), model.solver_state_dict())
    assert sorted(p.name for p in (out / "state").iterdir()) == ["epoch_0005.onnx", "state.json"]
    state = json.loads((out / "state" / "state.json").read_text())
    assert state["epoch"] == 5 and state["model_file"] == "epoch_0005.onnx"
    assert state["best_epoch"] == result["best_epoch"] and state["history"] == result["history"]
    assert state["log_bytes"] == (out / "log.jsonl").stat().st_size
    assert result["paths"] == {"best": str(out / "best.onnx"), "final": str(out / "final.onnx"),
                               "state": str(out / "state" / "state.json"), "log": str(out / "log.jsonl"),
                               "curves": str(out / "curves.png")}


def test_log_holds_iterations_evaluations_and_epochs(run):
    out, model, keeper, result = run
    records = read_log(out / "log.jsonl")
    epochs = [r for r in records if r["type"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2, 3, 4, 5]
    assert [r["epoch"] for r in records if r["type"] == "evaluation"] == [2, 4, 5]
    iterations = [r for r in records if r["type"] == "iterations"]
    # 16 samples / batch 4: every iteration is its own window; their mean is the epoch's loss
    expected = [(e, i) for e in range(1, 6) for i in range(1, 5)]
    assert [(r["epoch"], r["first_iteration"]) for r in iterations] == expected
    assert [r["step"] for r in iterations] == list(range(1, 21))
    per_epoch = {e: np.mean([r["losses"]["total_loss"] for r in iterations if r["epoch"] == e]) for e in range(1, 6)}
    for r in epochs:
        assert r["losses"]["total_loss"] == pytest.approx(per_epoch[r["epoch"]], rel=1e-12)
    logged = [(e[0], e[1]) for e in keeper.iterations]
    assert logged == [(r["epoch"], r["first_iteration"]) for r in iterations]
    losses = [e[3]["total_loss"] for e in keeper.iterations]
    assert losses == [r["losses"]["total_loss"] for r in iterations]


def test_curves_png_is_an_image(run):
    out = run[0]
    with Image.open(out / "curves.png") as im:
        im.verify()
    with Image.open(out / "curves.png") as im:
        assert im.format == "PNG" and im.size[0] > 200


def test_without_validation_there_is_no_evaluation_and_no_best(tmp_path):
    rec = Recorder()
    result = train_dl_model(classifier(), striped_samples(8), epochs=2, out_dir=tmp_path, progress=rec)
    assert rec.evaluations == [] and result["best_epoch"] is None and result["best_metric"] is None
    assert not (tmp_path / "best.onnx").exists() and (tmp_path / "final.onnx").exists()
    assert result["paths"]["best"] is None
    assert all(r["type"] != "evaluation" for r in read_log(tmp_path / "log.jsonl"))


def test_without_out_dir_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = train_dl_model(classifier(), striped_samples(8), striped_samples(4), epochs=1, progress=False)
    assert list(tmp_path.iterdir()) == [] and result["paths"]["final"] is None and result["best_epoch"] == 1
    with pytest.raises(DLParamError, match="out_dir"):
        train_dl_model(classifier(), striped_samples(8), epochs=1, resume=True, progress=False)


def test_a_finished_run_is_not_overwritten_without_resume(tmp_path):
    train_dl_model(classifier(), striped_samples(8), epochs=1, out_dir=tmp_path, progress=False)
    with pytest.raises(DLParamError, match="already holds a training run.*resume=True"):
        train_dl_model(classifier(), striped_samples(8), epochs=1, out_dir=tmp_path, progress=False)


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"epochs": 2, "evaluation_interval_epochs": 0},
                                 {"epochs": 2, "seed": -1}, {"epochs": 2, "progress": "yes"}])
def test_bad_arguments_are_clear_errors(bad):
    with pytest.raises(DLParamError, match=next(iter(k for k in bad if k != "epochs" or len(bad) == 1))):
        train_dl_model(classifier(), striped_samples(8), **bad)


def test_a_fresh_run_removes_what_an_unfinished_run_left(tmp_path):
    (tmp_path / "state").mkdir()
    for name in ("best.onnx", "final.onnx", "curves.png", "state/epoch_0001.onnx"):
        (tmp_path / name).write_bytes(b"left over")
    (tmp_path / "log.jsonl").write_text('{"type": "epoch", "epoch": 7}\n{"type": "iter')
    train_dl_model(classifier(), striped_samples(8), epochs=1, out_dir=tmp_path, progress=False)
    assert not (tmp_path / "best.onnx").exists()  # no validation set: this run has no best
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["epoch_0001.onnx", "state.json"]
    dlbatch.read_dl_model(tmp_path / "state" / "epoch_0001.onnx")
    assert [r["epoch"] for r in read_log(tmp_path / "log.jsonl") if r["type"] == "epoch"] == [1]
