"""What train_dl_model tells the outside world while it runs: a listener interface with no-op
methods (the CLI plugs a rich progress bar into it) and the plain-text default, one line per
epoch and per evaluation, so a log file of a long run stays readable."""
from __future__ import annotations

import sys
from typing import TextIO


class TrainingListener:
    """What train_dl_model reports while it runs: pass an instance as its `progress`.

    Override any method; every one defaults to doing nothing. Exceptions raised here stop
    training (the state written at the last epoch end stays valid, so the run can resume).
    In a distributed run only rank 0's listener is called.

    Examples:
        >>> import dlbatch
        >>> from dlbatch.data import classification_samples
        >>> from dlbatch.training import TrainingListener, train_dl_model
        >>> class LossLog(TrainingListener):
        ...     def on_train_begin(self, info):
        ...         self.losses = []
        ...         print(info["epochs"], "epochs of", info["iterations_per_epoch"], "iterations")
        ...     def on_iteration(self, epoch, iteration, iterations_per_epoch, losses):
        ...         self.losses.append(losses["total_loss"])
        ...     def on_evaluation(self, epoch, summary, main_metric, value, is_best):
        ...         print("epoch", epoch, main_metric, "measured")
        ...     def on_epoch_end(self, epoch, record):
        ...         print("epoch", epoch, "done")
        ...     def on_train_end(self, result):
        ...         print("finished after epoch", result["final_epoch"])
        >>> model = dlbatch.create_dl_model("classification", class_ids=[0, 1, 2],
        ...                                 image_dimensions=[16, 16, 3], batch_size=4)
        >>> train = classification_samples(8, height=16, width=16)
        >>> listener = LossLog()
        >>> result = train_dl_model(model, train, train[:4], epochs=2, progress=listener)
        2 epochs of 2 iterations
        epoch 1 top1_error measured
        epoch 1 done
        epoch 2 top1_error measured
        epoch 2 done
        finished after epoch 2
        >>> len(listener.losses)
        4
    """

    def on_train_begin(self, info: dict) -> None:
        """Before the first step (of a fresh or a resumed run).

        Args:
            info: epochs, iterations_per_epoch, start_epoch (epochs already done, 0 for a
                fresh run), start_iteration, main_metric (name or None), batch_samples
                (samples per weight update, every rank's together), world_size (1 unless
                distributed), out_dir.
        """

    def on_iteration(self, epoch: int, iteration: int, iterations_per_epoch: int, losses: dict) -> None:
        """After each weight update.

        Args:
            epoch: the epoch, counted from 1.
            iteration: the iteration within the epoch, counted from 1.
            iterations_per_epoch: weight updates per epoch.
            losses: train_dl_model_batch's losses of this update (total_loss, loss_<name>).
        """

    def on_evaluation(self, epoch: int, summary: dict, main_metric: str | None, value: float | None,
                      is_best: bool) -> None:
        """After the validation set was measured at the end of `epoch`.

        Args:
            epoch: the epoch, counted from 1.
            summary: the model type's measures (as evaluate_dl_model's, without per-sample data).
            main_metric: the name of the measure that picks the best model, e.g. "top1_error".
            value: its value.
            is_best: whether this epoch's model is the best so far (written to best.onnx).
        """

    def on_epoch_end(self, epoch: int, record: dict) -> None:
        """After the epoch's record was logged and the resumable state written.

        Args:
            epoch: the epoch, counted from 1.
            record: the epoch's history record: epoch, step, losses (means), params (the
                change strategies' values), seconds, metric, is_best, evaluation.
        """

    def on_train_end(self, result: dict) -> None:
        """After the last epoch.

        Args:
            result: train_dl_model's return value.
        """


class PlainTextProgress(TrainingListener):
    """The listener of progress=True: one line per epoch, with the evaluation of that epoch
    when there was one, so that a log file of a long run stays readable.

    Args:
        stream: where the lines go (None: sys.stdout at the time of writing).

    Examples:
        >>> import io
        >>> from dlbatch.training import PlainTextProgress
        >>> log = io.StringIO()
        >>> result = train_dl_model(model, train, train[:4], epochs=1, progress=PlainTextProgress(log))
        >>> print(log.getvalue())
        epoch 1/1  loss ...  top1_error ... (best)  ... s
        done after epoch 1: best top1_error ... at epoch 1
    """

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
