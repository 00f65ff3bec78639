"""The rich training listener: plain lines when not a terminal, a live bar on one, the
evaluation table at each evaluation in both."""
import io
import re

from rich.console import Console

from dlbatch.cli.progress import RichTrainingProgress, describe_result
from dlbatch.training import TrainingListener

INFO = {"epochs": 2, "iterations_per_epoch": 3, "start_epoch": 0, "start_iteration": 0, "main_metric": "mean_iou",
        "batch_samples": 4}
LOSSES = [[0.9, 0.6, 0.3], [0.5, 0.4, 0.3]]
SUMMARY = {"mean_iou": 0.625, "pixel_accuracy": 0.9, "num_pixels": 4096, "class_iou": [0.5, 0.75],
           "class_ids": [0, 1]}


def drive(listener, info=INFO):
    listener.on_train_begin(info)
    for epoch in range(info["start_epoch"] + 1, info["epochs"] + 1):
        for i, loss in enumerate(LOSSES[epoch - 1], start=1):
            listener.on_iteration(epoch, i, 3, {"total_loss": loss, "loss_x": loss})
        listener.on_evaluation(epoch, SUMMARY, "mean_iou", SUMMARY["mean_iou"], epoch == 1)
        listener.on_epoch_end(epoch, {"losses": {"total_loss": sum(LOSSES[epoch - 1]) / 3},
                                      "params": {"learning_rate": 0.01}, "seconds": 0.5})
    listener.on_train_end({"best_epoch": 1, "final_epoch": 2})


def test_plain_lines_when_not_a_terminal():
    stream = io.StringIO()
    listener = RichTrainingProgress(Console(file=stream, width=100))
    assert isinstance(listener, TrainingListener) and not listener.live
    drive(listener)
    out = stream.getvalue()
    assert "training 2 epochs x 3 iterations (4 samples each), main metric mean_iou" in out
    # one line at each epoch's end with the epoch's mean loss
    lines = re.findall(r"epoch (\d)/2  iteration 3/3  loss ([0-9.]+)  elapsed \S+  ETA \S+", out)
    assert [(int(e), float(v)) for e, v in lines] == [(e + 1, round(sum(ls) / 3, 4)) for e, ls in enumerate(LOSSES)]
    assert "evaluation after epoch 1/2: mean_iou 0.6250 (best so far)" in out
    assert "evaluation after epoch 2/2: mean_iou 0.6250\n" in out
    assert re.search(r"│ mean_iou\s+│\s+0\.6250 │", out)
    assert re.search(r"│ pixel_accuracy\s+│\s+0\.9000 │", out)
    assert "epoch 1/2 done: loss 0.6000  learning_rate 0.0100  0.5 s" in out
    assert "\x1b[" not in out  # no terminal escape codes in a log


def test_a_live_bar_on_a_terminal():
    stream = io.StringIO()
    listener = RichTrainingProgress(Console(file=stream, width=140, force_terminal=True, color_system=None))
    assert listener.live
    drive(listener, dict(INFO, start_epoch=1))  # resumed after epoch 1
    out = stream.getvalue()
    assert "resuming after epoch 1" in out
    assert re.search(r"epoch 2/2 .*iteration 3/3 loss 0\.4000 .*ETA", out), out
    assert "evaluation after epoch 2/2" in out and "mean_iou" in out
    assert not listener.running  # stopped at the end


def test_describe_result_names_every_file():
    lines = describe_result({"best_epoch": 3, "best_metric": 0.25, "main_metric": "top1_error", "final_epoch": 4,
                             "paths": {"best": "run/best.onnx", "final": "run/final.onnx", "curves": None}})
    assert lines[0] == "best top1_error 0.2500 at epoch 3" and "trained to epoch 4" in lines
    assert any("run/best.onnx" in line for line in lines) and not any("curves" in line for line in lines)
