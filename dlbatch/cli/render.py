"""What the commands print: JSON-safe values and rich tables of evaluation measures, shared by
`train` (a table at each evaluation) and `evaluate`, so both show a summary the same way
whatever the model type put into it."""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
from rich.table import Table


def to_jsonable(value: Any) -> Any:
    """numpy arrays and scalars -> lists and Python numbers (NaN/inf -> None, which JSON lacks)."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "__fspath__"):
        return str(value)
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def scalar_measures(summary: Mapping[str, Any]) -> dict[str, float]:
    """The single-number measures of a summary (counts and confusion matrices are left out of
    the headline table)."""
    return {k: v for k, v in summary.items() if _is_number(v) and not k.startswith("num_")}


def per_class_measures(summary: Mapping[str, Any]) -> dict[str, list]:
    """Lists with one number per class id (e.g. class_ap, class_iou)."""
    ids = summary.get("class_ids")
    if not isinstance(ids, (list, tuple, np.ndarray)):
        return {}
    return {k: list(v) for k, v in summary.items()
            if k.startswith("class_") and k != "class_ids" and isinstance(v, (list, tuple, np.ndarray))
            and len(v) == len(ids) and all(_is_number(x) for x in v)}


def fmt(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return "nan" if value != value else f"{value:.4f}"
    return str(value)


def measures_table(summary: Mapping[str, Any], main_metric: str | None = None) -> Table:
    """Measure | value, the main metric first and bold."""
    table = Table()
    table.add_column("measure")
    table.add_column("value", justify="right")
    measures = scalar_measures(summary)
    order = sorted(measures, key=lambda k: (k != main_metric, k))
    for key in order:
        style = "bold" if key == main_metric else None
        table.add_row(key, fmt(measures[key]), style=style)
    counts = {k: v for k, v in summary.items() if k.startswith("num_") and _is_number(v)}
    for key, value in counts.items():
        table.add_row(key, fmt(value), style="dim")
    return table


def print_titled(console, title: str, table: Table | None) -> None:
    """The title as its own line (a rich table title would wrap to the table's width)."""
    if table is not None:
        console.print(title)
        console.print(table)


def class_table(summary: Mapping[str, Any], class_names: list[str] | None = None) -> Table | None:
    """One row per class with every per-class measure; None when the summary has none."""
    columns = per_class_measures(summary)
    if not columns:
        return None
    ids = list(summary["class_ids"])
    names = class_names if class_names and len(class_names) == len(ids) else [str(c) for c in ids]
    table = Table()
    table.add_column("class id", justify="right")
    table.add_column("name")
    for key in columns:
        table.add_column(key, justify="right")
    for i, cid in enumerate(ids):
        table.add_row(str(cid), names[i], *(fmt(columns[k][i]) for k in columns))
    return table


def confusion_table(summary: Mapping[str, Any], max_classes: int = 20) -> Table | None:
    """Rows: ground truth, columns: prediction (small class counts only)."""
    matrix = summary.get("confusion_matrix")
    ids = summary.get("class_ids")
    if matrix is None or ids is None or len(ids) > max_classes:
        return None
    matrix = np.asarray(matrix)
    if matrix.shape != (len(ids), len(ids)):
        return None
    table = Table()
    table.add_column("")
    for cid in ids:
        table.add_column(str(cid), justify="right")
    for cid, row in zip(ids, matrix):
        table.add_row(str(cid), *(fmt(x) for x in row.tolist()))
    return table
