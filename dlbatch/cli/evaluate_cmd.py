"""`dlbatch evaluate`: measure a model file on a dataset from disk, streamed in batches (images are
read, preprocessed and measured one chunk at a time, never all in memory)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from .dataset_io import SKIP_BAD_IMAGES_HELP, check_dataset_fits, evaluate_dataset, open_dataset
from .render import class_table, confusion_table, measures_table, print_titled, to_jsonable

EPILOG = "Example: dlbatch evaluate run/best.onnx data --json   or   dlbatch evaluate m.onnx data --plots plots"


def evaluate(model_file: Path = typer.Argument(..., metavar="FILE.onnx", help="the .onnx model"),
             dataset: str = typer.Argument(..., metavar="DATASET", help="labelled dataset (any format dlbatch reads)"),
             as_json: bool = typer.Option(False, "--json", help="print one JSON object with every measure"),
             split: Optional[str] = typer.Option(None, help="only this split of the dataset (train, validation, "
                                                            "test)"),
             plots: Optional[Path] = typer.Option(None, help="write the model type's evaluation plots (e.g. the "
                                                             "confusion matrix) as PNGs into this folder"),
             backend: Optional[str] = typer.Option(None, help="compute backend (see dlbatch backends)"),
             device: str = typer.Option("cpu", help="device of the backend, e.g. cpu or cuda:0"),
             skip_bad_images: bool = typer.Option(False, "--skip-bad-images", help=SKIP_BAD_IMAGES_HELP)) -> None:
    """Measure a model on a labelled dataset: the model type's measures (top1_error, mean_ap, mean_iou, ...)."""
    import dlbatch

    model = dlbatch.read_dl_model(model_file, backend=backend, device=device)
    data = open_dataset(dataset, skip_bad_images)
    check_dataset_fits(model, data, dataset)
    if split is not None:
        names = list(data.split_names())
        if split not in names:
            raise dlbatch.DLParamError(f"{dataset} has no split {split!r}; its splits: "
                                       f"{', '.join(names) if names else 'none (leave out --split)'}")
        data = data.split(split)
    if len(data) == 0:
        raise dlbatch.DLParamError(f"{dataset}{f' split {split}' if split else ''} has no samples to evaluate")
    summary = evaluate_dataset(model, data)
    written = []
    if plots is not None:
        plots.mkdir(parents=True, exist_ok=True)
        written = [str(p) for p in model.model_type.evaluation_plots(summary, model.hyperparameters, plots)]
    if as_json:
        typer.echo(json.dumps(to_jsonable(summary)))
        for path in written:
            typer.echo(f"wrote {path}", err=True)
        return
    console = Console(highlight=False)
    metric = model.model_type.main_metric
    print_titled(console, f"{model_file} on {dataset} ({len(data)} samples)",
                 measures_table(summary, metric.name if metric else None))
    print_titled(console, "per class", class_table(summary, model.get_param("class_names")))
    print_titled(console, "confusion matrix (rows: ground truth, columns: predicted)", confusion_table(summary))
    for path in written:
        console.print(f"wrote {path}")
