"""curves.png: the mean training loss per epoch and the main metric at each evaluation.
Drawn with matplotlib's object API on the Agg canvas (no pyplot, so the caller's matplotlib
backend is left alone); without matplotlib one warning says what to install."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

from ..core.atomic_file import atomic_write


def write_curves(history: list[dict], main_metric: str | None, path: Path) -> bool:
    """Write the plot atomically; False (after one warning) when matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        warnings.warn(f"matplotlib is not installed, so {os.fspath(path)} is not drawn; "
                      "pip install matplotlib (or dlbatch[plots]) to get it", RuntimeWarning, stacklevel=3)
        return False
    fig = Figure(figsize=(9, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    loss_ax, metric_ax = fig.subplots(1, 2)
    epochs = [r["epoch"] for r in history]
    loss_ax.plot(epochs, [r["losses"].get("total_loss") for r in history], marker="o", markersize=3)
    loss_ax.set(title="training loss (epoch mean)", xlabel="epoch", ylabel="total_loss")
    evaluated = [r for r in history if r.get("metric") is not None]
    if main_metric and evaluated:
        metric_ax.plot([r["epoch"] for r in evaluated], [r["metric"] for r in evaluated], marker="o",
                       markersize=3, color="tab:orange")
        best = [r for r in evaluated if r.get("is_best")]
        if best:
            metric_ax.scatter([best[-1]["epoch"]], [best[-1]["metric"]], s=60, facecolors="none",
                              edgecolors="tab:red", label="best")
            metric_ax.legend()
        metric_ax.set(title=f"validation {main_metric}", xlabel="epoch", ylabel=main_metric)
    else:
        metric_ax.set(title="no validation set" if not main_metric else "not evaluated yet", xlabel="epoch")
    for ax in (loss_ax, metric_ax):
        ax.grid(alpha=0.3)
    fig.tight_layout()

    def png() -> bytes:
        import io
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        return buffer.getvalue()

    atomic_write(path, png)
    return True
