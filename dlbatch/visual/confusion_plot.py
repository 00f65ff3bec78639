"""The confusion matrix of a classification evaluation as a PNG (`dlbatch evaluate --plots`).

Rows are the ground-truth classes, columns the predicted ones; each cell shows its count and
is shaded by the share of its row (the recall of that truth class), so that a rare class's
errors are as visible as a frequent one's. Drawn with matplotlib when it is installed (the
`plots` extra), else with Pillow alone, so the picture never depends on an optional package.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..core.errors import DLParamError

RENDERERS = ("auto", "matplotlib", "pillow")


def _check(confusion, class_names) -> tuple[np.ndarray, list[str]]:
    m = np.asarray(confusion)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 1:
        raise DLParamError(f"a confusion matrix must be K x K with K >= 1, got shape {m.shape}")
    if not np.issubdtype(m.dtype, np.number) or (m < 0).any():
        raise DLParamError("a confusion matrix must hold counts >= 0")
    names = [str(n) for n in class_names]
    if len(names) != m.shape[0]:
        raise DLParamError(f"{len(names)} class names for a {m.shape[0]} x {m.shape[0]} confusion matrix")
    return m, names


def row_shares(m: np.ndarray) -> np.ndarray:
    """Each cell's share of its row (0 for an empty row)."""
    totals = m.sum(axis=1, keepdims=True).astype(np.float64)
    return np.divide(m, totals, out=np.zeros(m.shape), where=totals > 0)


def _count_text(v) -> str:
    return f"{int(v)}" if float(v).is_integer() else f"{float(v):.3g}"


def _with_matplotlib(m: np.ndarray, names: list[str], path: Path, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    k = len(names)
    side = float(min(20.0, max(4.5, 2.5 + 0.55 * k)))
    fig = Figure(figsize=(side + 1.2, side), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    shares = row_shares(m)
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the ground-truth row")
    ax.set_xticks(range(k), names, rotation=45 if k > 3 else 0, ha="right" if k > 3 else "center")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("ground-truth class")
    ax.set_title(title)
    if k <= 40:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, _count_text(m[i, j]), ha="center", va="center", fontsize=8 if k > 12 else 10,
                        color="white" if shares[i, j] > 0.55 else "black")
    fig.savefig(path, format="png", bbox_inches="tight", pad_inches=0.2)


def _blue(share: float) -> tuple[int, int, int]:
    """White (share 0) to dark blue (share 1)."""
    lo, hi = np.array([247, 251, 255.0]), np.array([8, 48, 107.0])
    return tuple(int(v) for v in np.round(lo + (hi - lo) * share))


def _with_pillow(m: np.ndarray, names: list[str], path: Path, title: str) -> None:
    k = len(names)
    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def text_size(text):
        left, top, right, bottom = probe.textbbox((0, 0), text, font=font)
        return right - left, bottom - top

    cell = max(36, max(text_size(_count_text(v))[0] for v in m.flat) + 10)
    label_w = max(text_size(n)[0] for n in names) + 12
    line_h = text_size("Ag")[1] + 6
    top, left = 3 * line_h + label_w, label_w + line_h
    width, height = left + k * cell + 10, top + k * cell + line_h + 10
    img = Image.new("RGB", (max(width, text_size(title)[0] + 20), height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((10, 4), title, fill="black", font=font)
    draw.text((left, line_h + 4), "predicted class (columns)", fill="black", font=font)
    draw.text((4, top + k * cell + 4), "rows: ground-truth class", fill="black", font=font)
    shares = row_shares(m)
    for j, name in enumerate(names):  # column names, written upwards
        w, h = text_size(name)
        label = Image.new("RGB", (w + 2, h + 4), "white")
        ImageDraw.Draw(label).text((1, 0), name, fill="black", font=font)
        label = label.rotate(90, expand=True)
        img.paste(label, (left + j * cell + (cell - label.width) // 2, top - label.height - 4))
    for i, name in enumerate(names):
        draw.text((line_h, top + i * cell + (cell - text_size(name)[1]) // 2), name, fill="black", font=font)
        for j in range(k):
            x0, y0 = left + j * cell, top + i * cell
            fill = _blue(float(shares[i, j]))
            draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=fill, outline=(200, 200, 200))
            text = _count_text(m[i, j])
            tw, th = text_size(text)
            draw.text((x0 + (cell - tw) // 2, y0 + (cell - th) // 2), text,
                      fill="white" if shares[i, j] > 0.55 else "black", font=font)
    img.save(path, format="PNG")


def _matplotlib_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def write_confusion_matrix_png(confusion, class_names: Sequence, path, *, title: str = "confusion matrix",
                               renderer: str = "auto") -> Path:
    """Write a confusion matrix as a PNG, each cell shaded by its share of the row.

    Args:
        confusion: K x K counts, rows ground truth, columns predicted (e.g. the
            `confusion_matrix` of a classification evaluation).
        class_names: the K class names, in the matrix's order.
        path: the PNG file to write; parent folders are created.
        title: the picture's title.
        renderer: "auto" (matplotlib if installed, else Pillow), "matplotlib" or "pillow".

    Returns:
        `path` as a Path.

    Raises:
        DLParamError: not K x K counts >= 0, not K class names, an unknown renderer, or
            renderer="matplotlib" without matplotlib.

    Examples:
        >>> from PIL import Image
        >>> from dlbatch.visual import write_confusion_matrix_png
        >>> path = write_confusion_matrix_png([[5, 1], [0, 4]], ["cat", "dog"], "plots/confusion.png",
        ...                                   renderer="pillow")
        >>> path.as_posix(), Image.open(path).format
        ('plots/confusion.png', 'PNG')
    """
    if renderer not in RENDERERS:
        raise DLParamError(f"renderer must be one of {RENDERERS}, got {renderer!r}")
    m, names = _check(confusion, class_names)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    use_matplotlib = renderer == "matplotlib" or (renderer == "auto" and _matplotlib_available())
    if use_matplotlib:
        if not _matplotlib_available():
            raise DLParamError("renderer='matplotlib' needs matplotlib: pip install 'dlbatch[plots]'")
        _with_matplotlib(m, names, path, title)
    else:
        _with_pillow(m, names, path, title)
    return path
