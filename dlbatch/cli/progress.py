"""The progress `dlbatch train` shows: on a terminal a rich progress bar (epoch, iteration, mean
loss of the epoch, elapsed time, ETA) with the evaluation table printed above it at each
interval; in a pipe or log file (not a terminal) the same facts as plain lines, so logs stay
readable and tests can read them."""
from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from dlbatch.training import TrainingListener

from .render import fmt, measures_table, print_titled

PLAIN_EVERY_S = 10.0  # plain mode: a line at each epoch end and at most this often in between


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=int(round(max(0.0, seconds)))))


class RichTrainingProgress(TrainingListener):
    """A TrainingListener that draws on `console` (default: stdout). `live=None` draws a bar
    only when the console is a terminal."""

    def __init__(self, console: Console | None = None, live: bool | None = None):
        self.console = console or Console(highlight=False)
        self.live = self.console.is_terminal if live is None else live
        self._progress: Progress | None = None
        self._task = None
        self._epochs = self._per_epoch = 0
        self._loss_sum, self._loss_n = 0.0, 0
        self._begin = self._last_line = 0.0
        self._done_at_begin = 0

    # -- listener --------------------------------------------------------------------------------
    def on_train_begin(self, info: dict) -> None:
        self._epochs, self._per_epoch = int(info["epochs"]), int(info["iterations_per_epoch"])
        self._done_at_begin = int(info.get("start_epoch", 0)) * self._per_epoch
        self._begin = self._last_line = time.monotonic()
        metric = info.get("main_metric") or "none"
        resumed = f", resuming after epoch {info['start_epoch']}" if info.get("start_epoch") else ""
        self.console.print(f"training {self._epochs} epochs x {self._per_epoch} iterations "
                           f"({info.get('batch_samples', '?')} samples each), main metric {metric}{resumed}")
        if self.live:
            self._progress = Progress(
                TextColumn("epoch {task.fields[epoch]}/" + str(self._epochs)), BarColumn(),
                TextColumn("iteration {task.fields[iteration]}/" + str(self._per_epoch)),
                TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), TextColumn("ETA"),
                TimeRemainingColumn(), console=self.console, transient=False)
            self._progress.start()
            self._task = self._progress.add_task("train", total=self._epochs * self._per_epoch,
                                                 completed=self._done_at_begin,
                                                 epoch=int(info.get("start_epoch", 0)) + 1, iteration=0, loss="-")

    def on_iteration(self, epoch: int, iteration: int, iterations_per_epoch: int, losses: dict) -> None:
        if iteration == 1:
            self._loss_sum, self._loss_n = 0.0, 0
        loss = losses.get("total_loss")
        if loss is None:
            loss = sum(v for v in losses.values() if isinstance(v, (int, float)))
        self._loss_sum, self._loss_n = self._loss_sum + float(loss), self._loss_n + 1
        mean = self._loss_sum / self._loss_n
        done = (epoch - 1) * iterations_per_epoch + iteration
        if self._progress is not None:
            self._progress.update(self._task, completed=done, epoch=epoch, iteration=iteration, loss=f"{mean:.4f}")
            return
        now = time.monotonic()
        if iteration == iterations_per_epoch or now - self._last_line >= PLAIN_EVERY_S:
            self._last_line = now
            self.console.print(f"epoch {epoch}/{self._epochs}  iteration {iteration}/{iterations_per_epoch}  "
                               f"loss {mean:.4f}  elapsed {_duration(now - self._begin)}  "
                               f"ETA {self._eta(done, now)}")

    def on_evaluation(self, epoch: int, summary: dict, main_metric: str | None, value: float | None,
                      is_best: bool) -> None:
        title = f"evaluation after epoch {epoch}/{self._epochs}"
        if main_metric is not None and value is not None:
            title += f": {main_metric} {fmt(value)}{' (best so far)' if is_best else ''}"
        print_titled(self.console, title, measures_table(summary, main_metric))

    def on_epoch_end(self, epoch: int, record: dict) -> None:
        loss = record.get("losses", {}).get("total_loss")
        params = "  ".join(f"{k} {fmt(v)}" for k, v in (record.get("params") or {}).items())
        seconds = record.get("seconds")
        self.console.print(f"epoch {epoch}/{self._epochs} done: loss {fmt(loss) if loss is not None else '-'}"
                           f"{'  ' + params if params else ''}"
                           f"{f'  {seconds:.1f} s' if isinstance(seconds, (int, float)) else ''}")

    def on_train_end(self, result: dict) -> None:
        self.close()

    # -- helpers -----------------------------------------------------------------------------
    def _eta(self, done: int, now: float) -> str:
        total = self._epochs * self._per_epoch
        this_run = done - self._done_at_begin
        if this_run <= 0:
            return "-"
        return _duration((now - self._begin) / this_run * (total - done))

    @property
    def running(self) -> bool:
        """Whether the live bar is on screen."""
        return self._progress is not None

    def close(self) -> None:
        """Stop the live bar (also after an error, so the terminal is left clean)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def describe_result(result: dict[str, Any]) -> list[str]:
    """The closing lines: best and final checkpoints and where everything is."""
    lines = []
    metric = result.get("main_metric")
    if result.get("best_epoch") is not None:
        lines.append(f"best {metric} {fmt(result.get('best_metric'))} at epoch {result['best_epoch']}")
    lines.append(f"trained to epoch {result.get('final_epoch')}")
    for name, path in (result.get("paths") or {}).items():
        if path:
            lines.append(f"{name:8s} {path}")
    return lines
