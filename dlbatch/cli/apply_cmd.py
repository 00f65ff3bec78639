"""`dlbatch apply`: run a model file on image files, one JSON line per image; with --overlay the
model type draws its result over each image (boxes, oriented boxes, masks) into PNGs.

A result's image-like arrays (a segmentation's class-id image and confidences) would make
unreadable JSON lines, so they are summarised: integer images as pixel counts per value (the
class histogram) and, with --overlay, written as a PNG next to the overlay; float images as
mean, min and max."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import numpy as np
import typer

from .render import to_jsonable

EPILOG = "Example: dlbatch apply run/best.onnx a.png b.jpg --overlay overlays"


def _output_stems(paths: list[Path]) -> list[str]:
    """File stems for the overlay PNGs, numbered where two inputs share a stem."""
    stems = [p.stem for p in paths]
    return [f"{i}_{s}" if stems.count(s) > 1 else s for i, s in enumerate(stems)]


def _write_label_png(array: np.ndarray, path: Path) -> None:
    from PIL import Image
    if array.min() >= 0 and array.max() < 256:
        Image.fromarray(array.astype(np.uint8)).save(path)
    elif array.min() >= 0 and array.max() < 65536:
        Image.fromarray(array.astype(np.uint16)).save(path)
    else:
        Image.fromarray(array.astype(np.int32)).save(path)


def summarise_result(result: dict[str, Any], label_png_base: Optional[Path]) -> dict[str, Any]:
    """A result as JSON-ready values, image-like arrays summarised (see the module docstring)."""
    out: dict[str, Any] = {}
    for key, value in result.items():
        arr = value if isinstance(value, np.ndarray) else None
        if arr is None or arr.ndim < 2:
            out[key] = to_jsonable(value)
            continue
        if arr.dtype.kind in "iub":
            ids, counts = np.unique(arr, return_counts=True)
            entry: dict[str, Any] = {"shape": list(arr.shape), "pixels_per_value":
                                     {str(int(i)): int(n) for i, n in zip(ids, counts)}}
            if label_png_base is not None and arr.ndim == 2:
                path = label_png_base.with_name(f"{label_png_base.name}.{key}.png")
                _write_label_png(arr, path)
                entry["file"] = str(path)
        else:
            entry = {"shape": list(arr.shape), "mean": float(arr.mean()), "min": float(arr.min()),
                     "max": float(arr.max())}
        out[key] = entry
    return out


def apply(model_file: Path = typer.Argument(..., metavar="FILE.onnx", help="the .onnx model"),
          images: list[Path] = typer.Argument(..., metavar="IMAGE", help="image files (any format Pillow reads)"),
          overlay: Optional[Path] = typer.Option(None, metavar="DIR",
                                                 help="write <image>.overlay.png with the result drawn, and label "
                                                      "images as PNG, into this folder"),
          backend: Optional[str] = typer.Option(None, help="compute backend (see dlbatch backends)"),
          device: str = typer.Option("cpu", help="device of the backend, e.g. cpu or cuda:0")) -> None:
    """Apply a model to images: one JSON line per image with the result (classes, boxes, class pixels)."""
    import dlbatch
    from dlbatch.datasets.images import read_image
    from PIL import Image
    model = dlbatch.read_dl_model(model_file, backend=backend, device=device)
    hp = model.hyperparameters
    if overlay is not None:
        overlay.mkdir(parents=True, exist_ok=True)
    stems = _output_stems(images)
    chunk = max(1, int(model.get_param("batch_size")))
    for start in range(0, len(images), chunk):
        paths = images[start:start + chunk]
        raws = [read_image(p) for p in paths]
        results = dlbatch.apply_dl_model(model, dlbatch.preprocess_dl_samples([{"image": r} for r in raws], model))
        for offset, (path, raw, result) in enumerate(zip(paths, raws, results)):
            base = overlay / stems[start + offset] if overlay is not None else None
            record: dict[str, Any] = {"image": str(path)}
            record.update(summarise_result(result, base))
            if base is not None:
                picture = model.model_type.draw_overlay(raw, result, hp)
                overlay_path = base.with_name(base.name + ".overlay.png")
                Image.fromarray(np.asarray(picture, dtype=np.uint8)).save(overlay_path)
                record["overlay"] = str(overlay_path)
            typer.echo(json.dumps(record))
