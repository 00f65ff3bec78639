"""train_dl_model: HALCON's training procedure around train_dl_model_batch.

Per epoch: set the change strategies' values, shuffle, run every complete batch (fetched,
prepared, augmented), evaluate the validation set when due, keep best.onnx, write the
resumable state; after the last epoch write final.onnx and curves.png. Everything random
derives from (seed, epoch, iteration), and the state is written at each epoch end, so a run
killed at any moment resumes (resume=True) to weights bit-identical to an uninterrupted run
on the numpy backend.

Distributed (a torch.distributed process group initialised, e.g. by `dlbatch train --nproc`):
every rank runs this procedure on the same arguments; each trains on its slice of every global
batch (batches.rank_slice; the train step all-reduces gradients and losses), rank 0 alone
reads and writes out_dir, evaluates the validation set (the others wait for its summary, so
every rank takes the same "best" decision) and calls the listener; weights and state reach the
other ranks by broadcast, so out_dir need not be on a shared file system.
"""
from __future__ import annotations

import time
from pathlib import Path

from ..core import errors
from ..core.errors import DLError, DLParamError, DLSampleError
from . import ranks
from .batches import (augmentation, batch_samples, check_sequence, epoch_order, iterations_per_epoch, rank_slice,
                      training_batch)
from .change import apply_change, parse_change
from .checkpoints import RunFiles, load_state_model, read_state, write_model, write_state
from .curves import write_curves
from .evaluation import evaluate_validation, is_due, main_value
from .log import TrainingLog, json_safe, window_size
from .progress import TrainingListener, as_listener
from .resume import check_resume, run_arguments

CURVES_EVERY_S = 60.0  # curves.png is redrawn at an epoch end at most this often, and at the end


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DLParamError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def train_dl_model(model, train, validation=None, *, epochs: int, evaluation_interval_epochs: int = 1,
                   change=None, augment=None, seed: int = 42, out_dir=None, resume: bool = False,
                   progress=True) -> dict:
    """HALCON's training procedure: shuffled epochs of train_dl_model_batch, change
    strategies, augmentation, evaluation, best/final checkpoints and exact resume.

    A sample whose image is floating point in the model's size counts as prepared and is used
    as it is; anything else goes through preprocess_dl_samples. Everything random derives from
    (seed, epoch, iteration), so a killed run resumed with resume=True reaches the weights of
    an uninterrupted one. In a torch.distributed job (see the module docstring) batch_size is
    per rank, every rank returns rank 0's result, and only rank 0 writes files and calls
    `progress`.

    Args:
        model: the model, trained in place.
        train: a sequence of raw or prepared sample dicts (a list, or a DLDataset split).
        validation: samples evaluated every `evaluation_interval_epochs` epochs and after the
            last one; None: no evaluation and no best.onnx.
        epochs: number of epochs (>= 1); each runs every complete batch of `train` once.
        evaluation_interval_epochs: evaluate every this many epochs (>= 1).
        change: HALCON change strategies, a dict or a list of dicts (see `parse_change`).
        augment: a dict of HALCON's augmentation names (augmentation_percentage, mirror,
            rotate, rotate_range, brightness_variation, brightness_variation_spot,
            crop_percentage; see dlbatch.training.augment), or None.
        seed: seed of the shuffling and the augmentation (>= 0).
        out_dir: where best.onnx, final.onnx, state/, log.jsonl and curves.png go (None:
            nothing is written and the run cannot resume).
        resume: True continues the run in out_dir from its last epoch end (or starts it when
            out_dir holds no state yet); False refuses an out_dir that holds a run's state.
        progress: True (a line per epoch on stdout, `PlainTextProgress`), False, or a
            `TrainingListener`.

    Returns:
        best_metric, best_epoch (None without validation), final_epoch, main_metric (e.g.
        "top1_error"), history (one record per epoch: epoch, step, losses, params, seconds,
        metric, is_best, evaluation), out_dir and paths (best, final, state, log, curves).

    Raises:
        DLParamError: bad epochs, evaluation_interval_epochs, seed, change strategies,
            augmentation or progress; resume without out_dir; an out_dir that holds another
            run (resume=False) or a run with other arguments (resume=True).
        DLSampleError: a sample the model cannot train on (naming its epoch and iteration).
        DLNumericError: a non-finite loss or gradient; the state of the last epoch end stays
            valid, so the run can resume (e.g. with a smaller learning_rate).

    Examples:
        >>> import dlbatch
        >>> from dlbatch.data import classification_samples
        >>> from dlbatch.training import train_dl_model
        >>> model = dlbatch.create_dl_model("classification", class_ids=[0, 1, 2],
        ...                                 image_dimensions=[16, 16, 3], batch_size=4)
        >>> train = classification_samples(8, height=16, width=16)
        >>> validation = classification_samples(4, height=16, width=16, seed=1)
        >>> lr = {"model_param": "learning_rate", "initial_value": 0.01, "epochs": [1], "values": [0.001]}
        >>> result = train_dl_model(model, train, validation, epochs=2, change=lr, out_dir="run")
        epoch 1/2  loss ...  learning_rate 0.01  top1_error ... (best)  ... s
        epoch 2/2  loss ...  learning_rate 0.001  top1_error ...
        done after epoch 2: best top1_error ... at epoch ...
        >>> result["final_epoch"], result["main_metric"], sorted(result["paths"])
        (2, 'top1_error', ['best', 'curves', 'final', 'log', 'state'])

        Two more epochs, continuing the run in out_dir:

        >>> train_dl_model(model, train, validation, epochs=4, change=lr, out_dir="run", resume=True,
        ...                progress=False)["final_epoch"]
        4
    """
    epochs = _positive_int("epochs", epochs)
    interval = _positive_int("evaluation_interval_epochs", evaluation_interval_epochs)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DLParamError(f"seed must be an integer >= 0, got {seed!r}")
    listener = as_listener(progress)
    check_sequence(train, "train")
    if validation is not None:
        check_sequence(validation, "validation")
    strategies = parse_change(change, model)
    params = augmentation(augment, model)
    world = ranks.world_size()
    iterations_per_epoch(len(train), batch_samples(model), world)
    arguments = run_arguments(model, seed=seed, evaluation_interval_epochs=interval, strategies=strategies,
                              params=params, train=train, validation=validation, world_size=world)
    files = None if out_dir is None else RunFiles(Path(out_dir))
    if world == 1:
        saved = _saved_state(files, resume, arguments, epochs)
        if saved is not None:
            load_state_model(files, saved, model)
    else:
        saved = _shared_start(files, resume, arguments, epochs, model)
        if not ranks.is_main():
            files, listener = None, TrainingListener()
    run = _Run(model, train, validation, epochs, interval, strategies, params, seed, files, listener, saved,
               arguments)
    try:
        return run.run()
    finally:
        run.log.close()


def _shared_start(files: RunFiles | None, resume: bool, arguments: dict, epochs: int, model) -> dict | None:
    """Rank 0 reads (or refuses) the saved state and loads it; every rank then gets its decision
    and rank 0's weights and solver state, so all start bit-identical."""
    outcome, failure = None, None
    if ranks.is_main():
        try:
            saved = _saved_state(files, resume, arguments, epochs)
            if saved is not None:
                load_state_model(files, saved, model)
            outcome = (None, None, saved, model.state_dict(), model.solver_state_dict())
        except Exception as e:  # noqa: BLE001 - told to the other ranks, then raised here
            failure = e
            same = isinstance(e, DLError) and getattr(errors, type(e).__name__, None) is type(e)
            outcome = (type(e) if same else DLError, f"rank 0 could not start the run: {e}", None, None, None)
    kind, message, saved, weights, solver = ranks.broadcast_object(outcome)
    if failure is not None:
        raise failure
    if kind is not None:
        raise kind(message)
    if not ranks.is_main():
        model.load_state_dict(weights)
        model.load_solver_state_dict(solver)
    return saved


def _saved_state(files: RunFiles | None, resume: bool, arguments: dict, epochs: int) -> dict | None:
    if files is None:
        if resume:
            raise DLParamError("resume=True needs the out_dir of the run to resume")
        return None
    files.make()
    saved = read_state(files)
    if saved is None:  # a fresh run; resume=True with nothing saved yet starts from the beginning too
        files.clear()
        return None
    if not resume:
        raise DLParamError(f"{files.out_dir} already holds a training run (state after epoch {saved['epoch']} "
                           f"of {saved.get('epochs')}); pass resume=True (CLI: --resume) to continue it, or "
                           "train into a new or empty out_dir")
    check_resume(saved, arguments, epochs, files.state_json)
    return saved


class _Run:
    """The state of one call: what happened so far and where it goes."""

    def __init__(self, model, train, validation, epochs, interval, strategies, params, seed, files, listener,
                 saved, arguments):
        self.model, self.train, self.validation = model, train, validation
        self.epochs, self.interval, self.strategies, self.params, self.seed = epochs, interval, strategies, params, seed
        self.files, self.listener, self.arguments = files, listener, arguments
        self.batch = batch_samples(model)
        self.rank, self.world = ranks.rank(), ranks.world_size()
        self.iterations = iterations_per_epoch(len(train), self.batch, self.world)
        metric = model.model_type.main_metric
        self.metric = metric if validation is not None else None
        self.start = 0 if saved is None else int(saved["epoch"])
        self.history = [] if saved is None else list(saved["history"])
        self.best_metric = None if saved is None else saved["best_metric"]
        self.best_epoch = None if saved is None else saved["best_epoch"]
        self.log = TrainingLog(None if files is None else files.log, None if saved is None else saved["log_bytes"])
        self.curves_at = time.monotonic()

    def run(self) -> dict:
        self.listener.on_train_begin({
            "epochs": self.epochs, "iterations_per_epoch": self.iterations, "start_epoch": self.start,
            "start_iteration": self.start * self.iterations, "main_metric": self.metric and self.metric.name,
            "batch_samples": self.batch * self.world, "world_size": self.world, "out_dir": None if self.files is None else str(self.files.out_dir)})
        for epoch in range(self.start + 1, self.epochs + 1):
            self.run_epoch(epoch)
        if self.files is not None:
            write_model(self.model, self.files.final)
            self.draw_curves()
        result = self.result() if self.world == 1 else ranks.broadcast_object(self.result())
        self.listener.on_train_end(result)
        return result

    def run_epoch(self, epoch: int) -> None:
        began = time.perf_counter()
        changed = apply_change(self.strategies, self.model, epoch - 1)
        order = epoch_order(self.seed, epoch, len(self.train))
        window = window_size(self.iterations)
        totals: dict[str, float] = {}
        sums: dict[str, float] = {}
        first = 1
        for it in range(1, self.iterations + 1):
            start, stop = rank_slice(it, self.batch, self.rank, self.world)
            indices = order[start:stop]
            losses = self.step(epoch, it, indices)
            for k, v in losses.items():
                totals[k] = totals.get(k, 0.0) + v
                sums[k] = sums.get(k, 0.0) + v
            self.listener.on_iteration(epoch, it, self.iterations, losses)
            if it % window == 0 or it == self.iterations:
                self.log.write({"type": "iterations", "epoch": epoch, "first_iteration": first, "last_iteration": it,
                                "iterations_per_epoch": self.iterations, "step": self.step_count(),
                                "losses": {k: v / (it - first + 1) for k, v in sums.items()}})
                sums, first = {}, it + 1
        record = {"epoch": epoch, "step": self.step_count(),
                  "losses": {k: v / self.iterations for k, v in totals.items()},
                  "params": json_safe({"learning_rate": self.model.get_param("learning_rate"), **changed}),
                  "seconds": time.perf_counter() - began, "metric": None, "is_best": False, "evaluation": None}
        if self.validation is not None and is_due(epoch, self.epochs, self.interval):
            self.evaluate(epoch, record)
        record = json_safe(record)
        self.history.append(record)
        self.log.write({"type": "epoch", **record})
        if self.files is not None:
            write_state(self.model, self.files, epoch, {
                "epochs": self.epochs, "best_metric": self.best_metric, "best_epoch": self.best_epoch,
                "main_metric": self.metric and self.metric.name, "log_bytes": self.log.size(),
                "history": self.history, "arguments": self.arguments})
        if self.world > 1:
            ranks.barrier()  # the state of this epoch is complete before any rank goes on
        if self.files is not None:
            if epoch < self.epochs and time.monotonic() - self.curves_at >= CURVES_EVERY_S:
                self.draw_curves()
        self.listener.on_epoch_end(epoch, record)

    def step(self, epoch: int, iteration: int, indices) -> dict:
        samples = training_batch(self.train, indices, self.model, self.params, self.seed, epoch, iteration,
                                 self.rank * self.batch)
        try:
            return self.model.train_batch(samples)
        except DLSampleError as e:
            where = f" on rank {self.rank}" if self.world > 1 else ""
            raise DLSampleError(f"{e} (in epoch {epoch}, iteration {iteration}{where}, whose samples are training "
                                f"samples {[int(i) for i in indices]} in this order)") from None

    def step_count(self) -> int:
        return int(self.model.solver_state["step"])

    def evaluate(self, epoch: int, record: dict) -> None:
        began = time.perf_counter()
        if self.world == 1:
            summary = evaluate_validation(self.model, self.validation)
        else:  # rank 0 measures the whole set, the others wait for its summary
            summary = ranks.broadcast_object(evaluate_validation(self.model, self.validation)
                                             if self.rank == 0 else None)
        value = main_value(self.model, summary)
        is_best = value is not None and self.metric is not None and self.metric.better(value, self.best_metric)
        if is_best:
            self.best_metric, self.best_epoch = value, epoch
            if self.files is not None:
                write_model(self.model, self.files.best)
        name = self.metric and self.metric.name
        self.log.write({"type": "evaluation", "epoch": epoch, "main_metric": name, "value": value,
                        "is_best": is_best, "seconds": time.perf_counter() - began, "summary": summary})
        record.update(metric=value, is_best=is_best,
                      evaluation={k: v for k, v in json_safe(summary).items()
                                  if isinstance(v, (int, float)) and not isinstance(v, bool)})
        self.listener.on_evaluation(epoch, summary, name, value, is_best)

    def draw_curves(self) -> None:
        write_curves(self.history, self.metric and self.metric.name, self.files.curves)
        self.curves_at = time.monotonic()

    def result(self) -> dict:
        files = self.files
        paths = {"best": None, "final": None, "state": None, "log": None, "curves": None}
        if files is not None:
            paths = {"best": str(files.best) if self.best_epoch is not None else None, "final": str(files.final),
                     "state": str(files.state_json), "log": str(files.log),
                     "curves": str(files.curves) if files.curves.exists() else None}
        return {"best_metric": self.best_metric, "best_epoch": self.best_epoch, "final_epoch": self.epochs,
                "main_metric": self.metric and self.metric.name, "history": list(self.history),
                "out_dir": None if files is None else str(files.out_dir), "paths": paths}
