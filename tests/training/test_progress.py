"""What a run prints: nothing with progress=False, one line per epoch (with its evaluation)
with progress=True; and the one warning when matplotlib is missing."""
from __future__ import annotations

import re
import sys
import warnings

import pytest

from dlbatch.training import PlainTextProgress, TrainingListener, train_dl_model

from .tiny import classifier, striped_samples


def test_progress_false_prints_nothing(capsys, tmp_path):
    train_dl_model(classifier(), striped_samples(8), striped_samples(4), epochs=2, out_dir=tmp_path, progress=False)
    assert capsys.readouterr() == ("", "")


def test_plain_text_progress_prints_a_line_per_epoch(capsys):
    change = {"model_param": "learning_rate", "initial_value": 0.01, "epochs": [1], "values": [0.001]}
    result = train_dl_model(classifier(), striped_samples(8), striped_samples(4), epochs=3,
                            evaluation_interval_epochs=2, change=change)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4, lines
    metric = r"top1_error \d\.\d{4}( \(best\))?"
    assert re.fullmatch(r"epoch 1/3  loss \d+\.\d{4}  learning_rate 0\.01  \d+\.\d s", lines[0])
    assert re.fullmatch(rf"epoch 2/3  loss \d+\.\d{{4}}  learning_rate 0\.001  {metric}  \d+\.\d s", lines[1])
    assert re.fullmatch(rf"epoch 3/3  loss \d+\.\d{{4}}  learning_rate 0\.001  {metric}  \d+\.\d s", lines[2])
    assert lines[3] == (f"done after epoch 3: best top1_error {result['best_metric']:.4f} at epoch "
                        f"{result['best_epoch']}")
    for line, record in zip(lines, result["history"]):
        assert f"loss {record['losses']['total_loss']:.4f}" in line


def test_resumed_run_says_where_it_resumes(tmp_path):
    import io
    train_dl_model(classifier(), striped_samples(8), epochs=1, out_dir=tmp_path, progress=False)
    stream = io.StringIO()
    train_dl_model(classifier(), striped_samples(8), epochs=2, out_dir=tmp_path, resume=True,
                   progress=PlainTextProgress(stream))
    lines = stream.getvalue().splitlines()
    assert lines[0] == "resuming after epoch 1 of 2 (2 iterations per epoch)"
    assert lines[1].startswith("epoch 2/2  loss ") and len(lines) == 2


def test_listener_methods_all_default_to_nothing(tmp_path):
    class OnlyEnd(TrainingListener):
        result = None

        def on_train_end(self, result):
            OnlyEnd.result = result

    result = train_dl_model(classifier(), striped_samples(8), striped_samples(4), epochs=1, out_dir=tmp_path,
                            progress=OnlyEnd())
    assert OnlyEnd.result == result


def test_missing_matplotlib_gives_one_warning_and_no_curves(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib... raises ImportError
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train_dl_model(classifier(), striped_samples(8), epochs=1, out_dir=tmp_path, progress=False)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "matplotlib is not installed" in messages[0], messages
    assert not (tmp_path / "curves.png").exists() and result["paths"]["curves"] is None
    assert (tmp_path / "final.onnx").exists()


@pytest.mark.parametrize("progress", [1, "plain", object()])
def test_progress_must_be_a_bool_or_a_listener(progress):
    from dlbatch import DLParamError
    with pytest.raises(DLParamError, match="TrainingListener"):
        train_dl_model(classifier(), striped_samples(8), epochs=1, progress=progress)
