"""What train_dl_model tells the outside world while it runs: a listener interface with no-op
methods (the CLI plugs a rich progress bar into it) and the plain-text default, one line per
epoch and per evaluation, so a log file of a long run stays readable."""
from __future__ import annotations

import sys
from typing import TextIO


class TrainingListener:
    """Override any method; every one defaults to doing nothing. Exceptions raised here stop
    training (the state written at the last epoch end stays valid, so the run can resume)."""

    def on_train_begin(self, info: dict) -> None:
        """`info`: epochs, iterations_per_epoch, start_epoch (epochs already done, 0 for a
        fresh run), start_iteration, main_metric (name or None), batch_samples (samples per
        weight update, every rank's together), world_size (1 unless distributed), out_dir.
        In a distributed run only rank 0's listener is called."""

    def on_iteration(self, epoch: int, iteration: int, iterations_per_epoch: int, losses: dict) -> None:
        """After each weight update; `epoch` and `iteration` count from 1."""

    def on_evaluation(self, epoch: int, summary: dict, main_metric: str | None, value: float | None,
                      is_best: bool) -> None:
        """After the validation set was measured at the end of `epoch`."""

    def on_epoch_end(self, epoch: int, record: dict) -> None:
        """After the epoch's record was logged and the resumable state written."""

    def on_train_end(self, result: dict) -> None:
        """With train_dl_model's return value."""


class PlainTextProgress(TrainingListener):
    """progress=True: one line per epoch on `stream` (stdout), with the evaluation of that
    epoch when there was one, e.g.
    `epoch 3/10  loss 0.4123  learning_rate 0.01  top1_error 0.1250 (best)  2.1 s`."""

    def __init__(self, stream: TextIO | None = None):
        self._stream = stream
        self._epochs = 0
        self._metric = None

    def _line(self, text: str) -> None:
        stream = self._stream or sys.stdout
        stream.write(text + "\n")
        stream.flush()

    def on_train_begin(self, info: dict) -> None:
        self._epochs = info["epochs"]
        if info["start_epoch"]:
            self._line(f"resuming after epoch {info['start_epoch']} of {info['epochs']} "
                       f"({info['iterations_per_epoch']} iterations per epoch)")

    def on_evaluation(self, epoch, summary, main_metric, value, is_best) -> None:
        self._metric = main_metric

    def on_epoch_end(self, epoch, record) -> None:
        """One line: loss, the parameters change strategies set, the evaluation if there was one."""
        loss = record["losses"].get("total_loss", float("nan"))
        parts = [f"epoch {epoch}/{self._epochs}", f"loss {loss:.4f}"]
        parts += [f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in record["params"].items()]
        if record.get("metric") is not None:
            parts.append(f"{self._metric} {record['metric']:.4f}{' (best)' if record.get('is_best') else ''}")
        parts.append(f"{record['seconds']:.1f} s")
        self._line("  ".join(parts))

    def on_train_end(self, result) -> None:
        if result["best_epoch"] is not None:
            self._line(f"done after epoch {result['final_epoch']}: best {result['main_metric']} "
                       f"{result['best_metric']:.4f} at epoch {result['best_epoch']}")


def as_listener(progress) -> TrainingListener:
    """progress=True -> PlainTextProgress, False/None -> silent, or a TrainingListener."""
    if progress is True:
        return PlainTextProgress()
    if progress is False or progress is None:
        return TrainingListener()
    if isinstance(progress, TrainingListener):
        return progress
    from ..core.errors import DLParamError
    raise DLParamError(f"progress must be True, False or a dlbatch.training.TrainingListener, got "
                       f"{type(progress).__name__}")
