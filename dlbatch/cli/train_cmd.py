"""`dlbatch train`: train_dl_model on a dataset from disk, with a progress bar and the evaluation
table at each interval; checkpoints, resumable state, log and curves go to --out. With --nproc
(and --nnodes) it runs as a torchrun job (launch.py); a worker of such a job (or of a torchrun
command a user wrote) joins the process group first, and only rank 0 prints and writes."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dlbatch.core.errors import DLParamError

from .dataset_io import SKIP_BAD_IMAGES_HELP, check_dataset_fits, open_dataset
from .options import parse_assignments, parse_augment, parse_change

EPILOG = ("Example: dlbatch train m.onnx data --out run --epochs 20 --set learning_rate=0.01 "
          "--change '{\"model_param\": \"learning_rate\", \"initial_value\": 0.01, \"epochs\": [15], "
          "\"values\": [0.001]}' --augment '{\"augmentation_percentage\": 50, \"mirror\": \"rc\"}'  "
          "(after an interruption: the same command with --resume). On 8 GPUs: dlbatch train m.onnx data "
          "--out run --backend torch --device cuda --nproc 8")

TRAIN_PERCENT, VALIDATION_PERCENT = 80, 20


def train_and_validation(dataset, validation: Optional[str], seed: int, skip_bad_images: bool = False,
                         report: bool = True):
    """The training and validation samples of `dlbatch train`.

    Args:
        dataset: the training DLDataset.
        validation: the --validation dataset path, or None.
        seed: the seed of an 80/20 split.
        skip_bad_images: skip unreadable samples of the --validation dataset (with a warning).
        report: print that warning (False in the other workers of a distributed run).

    Returns:
        (train, validation, how): --validation as given; else the dataset's own train and
        validation splits (a HALCON DLDataset); else an 80/20 split with the seed. `how`
        says which, for the command's output.

    Raises:
        DLError: the --validation dataset cannot be read.
    """
    from dlbatch.datasets import split_dl_dataset
    if validation is not None:
        return dataset, open_dataset(validation, skip_bad_images, report), f"validation set {validation}"
    names = set(dataset.split_names())
    if {"train", "validation"} <= names:
        return dataset.split("train"), dataset.split("validation"), "the dataset's train/validation splits"
    split = split_dl_dataset(dataset, TRAIN_PERCENT, VALIDATION_PERCENT, seed)
    return split.split("train"), split.split("validation"), f"{TRAIN_PERCENT}/{VALIDATION_PERCENT} split, seed {seed}"


def worker_args(model_file, dataset, out, validation, epochs, seed, evaluation_interval, assignments, change,
                augment, backend, device, resume, skip_bad_images: bool = False) -> list[str]:
    """The `train` command line each torchrun worker runs: these options, without --nproc.

    Args:
        model_file, dataset, out, validation, epochs, seed, evaluation_interval, assignments,
            change, augment, backend, device, resume, skip_bad_images: the options of train.

    Returns:
        The arguments after `dlbatch`.

    Examples:
        >>> worker_args("m.onnx", "data", "run", None, 2, 42, 1, None, None, None, None, "cpu", False, True)[-2:]
        ['cpu', '--skip-bad-images']
    """
    args = ["train", str(model_file), dataset, "--out", str(out), "--epochs", str(epochs), "--seed", str(seed),
            "--evaluation-interval", str(evaluation_interval), "--device", device]
    for flag, value in (("--validation", validation), ("--change", change), ("--augment", augment),
                        ("--backend", backend)):
        if value is not None:
            args += [flag, value]
    for item in assignments or []:
        args += ["--set", item]
    return args + (["--resume"] if resume else []) + (["--skip-bad-images"] if skip_bad_images else [])


def train(ctx: typer.Context,
          model_file: Path = typer.Argument(..., metavar="FILE.onnx", help="the .onnx model to train (not modified)"),
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
          nproc: Optional[int] = typer.Option(None, "--nproc", help="train with this many processes on this machine "
                                                                   "(one per GPU; batch_size is per process), "
                                                                   "started through torchrun"),
          nnodes: int = typer.Option(1, "--nnodes", help="machines taking part (run the command on each)"),
          node_rank: int = typer.Option(0, "--node-rank", help="this machine's number, 0..nnodes-1"),
          rdzv_endpoint: Optional[str] = typer.Option(None, "--rdzv-endpoint", metavar="HOST:PORT",
                                                      help="where the machines meet: node 0's address and a free "
                                                           "port (needed with --nnodes > 1)"),
          skip_bad_images: bool = typer.Option(False, "--skip-bad-images", help=SKIP_BAD_IMAGES_HELP),
          ) -> None:
    """Train a model file on a dataset: shuffled epochs, evaluation at each interval, best/final checkpoints."""
    import dlbatch
    from dlbatch.training import train_dl_model

    from dlbatch.training import ranks

    from . import launch
    from .progress import RichTrainingProgress, describe_result
    if epochs < 1:
        raise DLParamError(f"--epochs must be >= 1, got {epochs}")
    worker = ranks.launched_by_torchrun()
    if not worker and (nproc is not None or nnodes > 1):
        per_node = launch.check_layout(nproc, nnodes, node_rank, rdzv_endpoint)
        from .app import DEBUG_KEY
        args = worker_args(model_file, dataset, out, validation, epochs, seed, evaluation_interval, assignments,
                           change, augment, backend, device, resume, skip_bad_images)
        status = launch.launch(args, per_node, nnodes, node_rank, rdzv_endpoint, bool(ctx.meta.get(DEBUG_KEY)))
        if status != 0:
            typer.echo(f"error: the distributed run failed (torchrun exit status {status}); the failing "
                       "process's message is above", err=True)
            raise typer.Exit(status)
        return
    if worker:
        device = ranks.init_from_environment(device)
    main = ranks.is_main()
    values = parse_assignments(assignments or [])
    strategies, augmentation = parse_change(change), parse_augment(augment)
    model = dlbatch.read_dl_model(model_file, backend=backend, device=device)
    for name, value in values.items():
        model.set_param(name, value)
    data = open_dataset(dataset, skip_bad_images, report=main)
    check_dataset_fits(model, data, dataset)
    train_set, validation_set, how = train_and_validation(data, validation, seed, skip_bad_images, report=main)
    if validation is not None:
        check_dataset_fits(model, validation_set, validation)
    if main:
        count = ranks.world_size()
        processes = f", {count} process{'es' if count > 1 else ''}" if worker else ""
        typer.echo(f"{len(train_set)} training and {len(validation_set)} validation samples ({how}{processes})")
        if len(validation_set) == 0:
            typer.echo("no validation samples: training runs without evaluation and writes no best.onnx")
    listener = RichTrainingProgress() if main else False
    try:
        result = train_dl_model(model, train_set, validation_set if len(validation_set) else None, epochs=epochs,
                                evaluation_interval_epochs=evaluation_interval, change=strategies,
                                augment=augmentation, seed=seed, out_dir=out, resume=resume, progress=listener)
    finally:
        if main:
            listener.close()
    if worker:
        ranks.shutdown()
    if not main:
        return
    for line in describe_result(result):
        typer.echo(line)
    typer.echo(f"files in {out}")
