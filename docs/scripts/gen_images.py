"""Render the pictures of the docs from real data and real predictions.

The tour's overlays need trained models (minutes), so they are rendered by hand and committed;
the box-geometry drawing takes a second and is rendered by every `mkdocs build` (mkdocs-gen-files
runs this file; it is not committed):

    python docs/scripts/gen_images.py            # the full tour + the geometry drawing, on disk
    python docs/scripts/gen_images.py --geometry # only the box-geometry drawing, on disk
    python docs/scripts/gen_images.py --only detection_rectangle1   # one lesson again

- `images/tour/<lesson>.png`: overlays of held-out predictions of the briefly trained models of
  `dlbatch.tour` (the same code as `python -m dlbatch.tour`), and `images/tour/summary.json`
  with what each learned.
- `images/box_geometry.png`: a rectangle1 and a rectangle2 box of `dlbatch.data.detection_samples`
  drawn over their images with their parameters (pixel centres, corners, d1, d2, phi).
"""
from __future__ import annotations

import argparse
import io
import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np

IMAGES = Path(__file__).resolve().parent.parent / "images"


def tour_images(only: tuple[str, ...] = ()) -> dict:
    from dlbatch.tour import run_tour
    with tempfile.TemporaryDirectory() as tmp:
        summary = run_tour(tmp, only=only)
        out = IMAGES / "tour"
        out.mkdir(parents=True, exist_ok=True)
        for name in summary:
            shutil.copyfile(Path(tmp) / f"{name}.png", out / f"{name}.png")
    path = IMAGES / "tour" / "summary.json"
    kept = json.loads(path.read_text()) if only and path.exists() else {}
    kept.update({name: {"measures": s["measures"], "steps": s["steps"], "seconds": s["seconds"]}
                 for name, s in summary.items()})
    path.write_text(json.dumps(kept, indent=2) + "\n")
    return kept


def _first_with_box(instance_type: str, side: int):
    from dlbatch.data import detection_samples
    keys = ("bbox_row1", "bbox_col1") if instance_type == "rectangle1" else ("bbox_row", "bbox_col")
    for seed in range(500):
        s = detection_samples(1, height=side, width=side, class_ids=(1,), seed=seed, min_objects=1,
                              max_objects=1, instance_type=instance_type)[0]
        if len(s["bbox_label_id"]) == 1 and all(0.3 * side < s[k][0] < 0.5 * side for k in keys):
            return s
    raise RuntimeError("no sample with one box")


def _rectangle1_panel(ax, side: int) -> None:
    s = _first_with_box("rectangle1", side)
    r1, c1, r2, c2 = (float(s[k][0]) for k in ("bbox_row1", "bbox_col1", "bbox_row2", "bbox_col2"))
    ax.imshow(s["image"], extent=(-0.5, side - 0.5, side - 0.5, -0.5), interpolation="nearest")
    ax.plot([c1, c2, c2, c1, c1], [r1, r1, r2, r2, r1], color="yellow", lw=2)
    for (r, c), name in (((r1, c1), "(bbox_row1, bbox_col1)"), ((r2, c2), "(bbox_row2, bbox_col2)")):
        ax.plot(c, r, "o", color="red")
        ax.annotate(f"{name}\n= ({r:g}, {c:g})", (c, r), xytext=(-150, -30) if r == r1 else (10, 12),
                    textcoords="offset points", color="white", fontsize=8,
                    bbox=dict(facecolor="black", alpha=0.6, lw=0))
    ax.plot(0, 0, "s", color="cyan", ms=4)
    ax.annotate("centre of pixel (0, 0)", (0, 0), xytext=(8, -16), textcoords="offset points", color="cyan", fontsize=8,
                bbox=dict(facecolor="black", alpha=0.6, lw=0))
    ax.set_title("rectangle1: corners on pixel borders (x.5)", fontsize=10)
    ax.set_xlabel("column")
    ax.set_ylabel("row")


def _rectangle2_panel(ax, side: int) -> None:
    s = _first_with_box("rectangle2", side)
    r, c, phi, l1, l2 = (float(s[k][0]) for k in ("bbox_row", "bbox_col", "bbox_phi", "bbox_length1", "bbox_length2"))
    d1 = np.array([-math.sin(phi), math.cos(phi)])   # (row, col) along length1
    d2 = np.array([math.cos(phi), math.sin(phi)])    # (row, col) across
    centre = np.array([r, c])
    corners = [centre + a * l1 * d1 + b * l2 * d2 for a, b in ((1, 1), (1, -1), (-1, -1), (-1, 1), (1, 1))]
    ax.imshow(s["image"], extent=(-0.5, side - 0.5, side - 0.5, -0.5), interpolation="nearest")
    ax.plot([p[1] for p in corners], [p[0] for p in corners], color="yellow", lw=2)
    for vec, length, name, colour in ((d1, l1, "length1", "red"), (d2, l2, "length2", "lime")):
        tip = centre + length * vec
        ax.annotate("", xy=(tip[1], tip[0]), xytext=(c, r), arrowprops=dict(arrowstyle="->", color=colour, lw=2))
        ax.annotate(f"{name} = {length:.1f}", (tip[1], tip[0]), xytext=(4, 4), textcoords="offset points",
                    color=colour, fontsize=8, bbox=dict(facecolor="black", alpha=0.6, lw=0))
    ax.plot([c, c + 0.6 * l1], [r, r], color="white", lw=1, ls="--")
    arc = np.linspace(0, phi, 30)
    ax.plot(c + 0.45 * l1 * np.cos(arc), r - 0.45 * l1 * np.sin(arc), color="white", lw=1)
    ax.annotate(f"phi = {phi:.2f} rad", (c + 0.5 * l1, r), xytext=(6, 10), textcoords="offset points",
                color="white", fontsize=8, bbox=dict(facecolor="black", alpha=0.6, lw=0))
    ax.plot(c, r, "o", color="red")
    ax.annotate(f"(bbox_row, bbox_col)\n= ({r:.1f}, {c:.1f})", (c, r), xytext=(-40, 40), textcoords="offset points",
                color="white", fontsize=8, bbox=dict(facecolor="black", alpha=0.6, lw=0))
    ax.set_title("rectangle2: centre, phi (counter-clockwise), half lengths", fontsize=10)
    ax.set_xlabel("column")
    ax.set_ylabel("row")


def geometry_png(side: int = 48) -> bytes:
    """The box-geometry drawing (a rectangle1 and a rectangle2 box of real samples) as PNG bytes."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 5.2))
    _rectangle1_panel(a, side)
    _rectangle2_panel(b, side)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def geometry_image() -> Path:
    IMAGES.mkdir(parents=True, exist_ok=True)
    path = IMAGES / "box_geometry.png"
    path.write_bytes(geometry_png())
    return path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--geometry", action="store_true", help="only the box-geometry drawing")
    ap.add_argument("--only", nargs="*", default=(), help="tour lessons to render again (default: all)")
    args = ap.parse_args(argv)
    print(geometry_image())
    if not args.geometry:
        print(json.dumps(tour_images(tuple(args.only)), indent=2))


if __name__ == "__main__":
    main()
else:  # loaded by mkdocs-gen-files
    import mkdocs_gen_files
    with mkdocs_gen_files.open("images/box_geometry.png", "wb") as f:
        f.write(geometry_png())
