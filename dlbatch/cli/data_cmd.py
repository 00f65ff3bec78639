"""`dlbatch data synth|info`: a dataset on disk in one command (the synthetic scenes, in the
formats `train` reads) and a look at what a dataset holds."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .dataset_io import SKIP_BAD_IMAGES_HELP, open_dataset

data_app = typer.Typer(help="Write a synthetic dataset to disk; show what a dataset holds.", no_args_is_help=True,
                       context_settings={"help_option_names": ["-h", "--help"]})


@data_app.command("synth", epilog="Example: dlbatch data synth detection data --num 200 --instance-type rectangle2 "
                                  "(then: dlbatch train m.onnx \"$(dlbatch data synth ... )\" --out run)")
def synth(model_type: str = typer.Argument(..., metavar="TYPE", help="classification, detection or segmentation"),
          out_dir: Path = typer.Argument(..., metavar="DIR", help="folder to write (created)"),
          num: int = typer.Option(100, "--num", "-n", help="number of images"),
          seed: int = typer.Option(42, help="random seed: the same seed writes the same images"),
          width: int = typer.Option(64, help="image width in pixels"),
          height: int = typer.Option(64, help="image height in pixels"),
          channels: int = typer.Option(3, help="1 (grey) or 3 (colour)"),
          num_classes: int = typer.Option(3, help="number of object classes"),
          instance_type: Optional[str] = typer.Option(None, help="detection: rectangle1 (default) or rectangle2"),
          halcon: bool = typer.Option(False, "--halcon", help="write a HALCON DLDataset .json (with "
                                                              "train/validation/test splits) instead")) -> None:
    """Write the synthetic scenes to disk as a dataset (folders per class, COCO JSON, images/ + labels/) and
    print the path to pass to `dlbatch train` and `dlbatch model create --dataset`."""
    from dlbatch.datasets import write_synthetic_dataset
    kwargs = {"instance_type": instance_type} if instance_type is not None else {}
    path = write_synthetic_dataset(model_type, out_dir, num_samples=num, seed=seed, width=width, height=height,
                                   channels=channels, num_classes=num_classes, format="halcon" if halcon else None,
                                   **kwargs)
    typer.echo(f"wrote {num} {model_type} samples; dataset path:", err=True)
    typer.echo(str(path))


@data_app.command("info", epilog="Example: dlbatch data info data/coco.json --json")
def info(path: str = typer.Argument(..., metavar="DATASET",
                                    help="a dataset: class folders, COCO .json, images/+labels/ folder or HALCON "
                                         "DLDataset .json"),
         as_json: bool = typer.Option(False, "--json", help="one JSON object"),
         skip_bad_images: bool = typer.Option(False, "--skip-bad-images", help=SKIP_BAD_IMAGES_HELP)) -> None:
    """Show a dataset's model type, instance type, classes, size and splits (images are not read, unless
    --skip-bad-images: then every image is checked and the skipped ones are counted and listed)."""
    ds = open_dataset(path, skip_bad_images)
    splits = {name: len(ds.split(name)) for name in ds.split_names()}
    facts = {"path": str(path), "model_type": ds.model_type, "instance_type": ds.instance_type,
             "num_samples": len(ds), "class_ids": list(ds.class_ids), "class_names": list(ds.class_names),
             "splits": splits}
    if skip_bad_images:
        facts["skipped"] = len(ds.skipped_samples)
        if as_json:
            facts["skipped_samples"] = [{"image": str(image), "reason": reason}
                                        for image, reason in ds.skipped_samples]
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
        return
    for key, value in facts.items():
        typer.echo(f"{key:14s} {value}")
