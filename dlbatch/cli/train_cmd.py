"""`dlbatch train`: train_dl_model on a dataset from disk, with a progress bar and the evaluation
table at each interval; checkpoints, resumable state, log and curves go to --out."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dlbatch.core.errors import DLParamError

from .dataset_io import check_dataset_fits
from .options import parse_assignments, parse_augment, parse_change

EPILOG = ("Example: dlbatch train m.onnx data --out run --epochs 20 --set learning_rate=0.01 "
          "--change '{\"model_param\": \"learning_rate\", \"initial_value\": 0.01, \"epochs\": [15], "
          "\"values\": [0.001]}' --augment '{\"augmentation_percentage\": 50, \"mirror\": \"rc\"}'  "
          "(after an interruption: the same command with --resume)")

TRAIN_PERCENT, VALIDATION_PERCENT = 80, 20


def train_and_validation(dataset, validation: Optional[str], seed: int):
    """(train, validation, how): --validation as given; else the dataset's own train/validation
    splits (a HALCON DLDataset); else an 80/20 split with the seed."""
    from dlbatch.datasets import read_dl_dataset, split_dl_dataset
    if validation is not None:
        return dataset, read_dl_dataset(validation), f"validation set {validation}"
    names = set(dataset.split_names())
    if {"train", "validation"} <= names:
        return dataset.split("train"), dataset.split("validation"), "the dataset's train/validation splits"
    split = split_dl_dataset(dataset, TRAIN_PERCENT, VALIDATION_PERCENT, seed)
    return split.split("train"), split.split("validation"), f"{TRAIN_PERCENT}/{VALIDATION_PERCENT} split, seed {seed}"


def train(model_file: Path = typer.Argument(..., metavar="FILE.onnx", help="the .onnx model to train (not modified)"),
          dataset: str = typer.Argument(..., metavar="DATASET",
                                        help="training dataset (class folders, COCO .json, images/+labels/ or "
                                             "HALCON .json)"),
          out: Path = typer.Option(..., "--out", "-o", metavar="DIR",
                                   help="folder for best.onnx, final.onnx, state, log.jsonl, curves.png"),
          validation: Optional[str] = typer.Option(None, help="validation dataset (default: the dataset's "
                                                               "validation split, or 20% of it chosen with --seed)"),
          epochs: int = typer.Option(10, help="number of epochs"),
          seed: int = typer.Option(42, help="seed of the split, shuffling and augmentation"),
          evaluation_interval: int = typer.Option(1, help="evaluate every this many epochs"),
          assignments: Optional[list[str]] = typer.Option(None, "--set", help="KEY=VALUE model parameter before "
                                                                             "training (JSON values); repeatable"),
          change: Optional[str] = typer.Option(None, help="change strategies: JSON object or list (or @file.json)"),
          augment: Optional[str] = typer.Option(None, help="augmentation parameters: JSON object (or @file.json)"),
          backend: Optional[str] = typer.Option(None, help="compute backend (see dlbatch backends)"),
          device: str = typer.Option("cpu", help="device of the backend, e.g. cpu or cuda:0"),
          resume: bool = typer.Option(False, "--resume", help="continue the run in --out from its last state"),
          ) -> None:
    """Train a model file on a dataset: shuffled epochs, evaluation at each interval, best/final checkpoints."""
    import dlbatch
    from dlbatch.datasets import read_dl_dataset
    from dlbatch.training import train_dl_model

    from .progress import RichTrainingProgress, describe_result
    if epochs < 1:
        raise DLParamError(f"--epochs must be >= 1, got {epochs}")
    values = parse_assignments(assignments or [])
    strategies, augmentation = parse_change(change), parse_augment(augment)
    model = dlbatch.read_dl_model(model_file, backend=backend, device=device)
    for name, value in values.items():
        model.set_param(name, value)
    data = read_dl_dataset(dataset)
    check_dataset_fits(model, data, dataset)
    train_set, validation_set, how = train_and_validation(data, validation, seed)
    if validation is not None:
        check_dataset_fits(model, validation_set, validation)
    typer.echo(f"{len(train_set)} training and {len(validation_set)} validation samples ({how})")
    if len(validation_set) == 0:
        typer.echo("no validation samples: training runs without evaluation and writes no best.onnx")
    listener = RichTrainingProgress()
    try:
        result = train_dl_model(model, train_set, validation_set if len(validation_set) else None, epochs=epochs,
                                evaluation_interval_epochs=evaluation_interval, change=strategies,
                                augment=augmentation, seed=seed, out_dir=out, resume=resume, progress=listener)
    finally:
        listener.close()
    for line in describe_result(result):
        typer.echo(line)
    typer.echo(f"files in {out}")
