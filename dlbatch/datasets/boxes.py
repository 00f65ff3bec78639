"""Box conventions of the dataset formats and the checks every box gets when it is read.

dlbatch (SPEC, = HALCON): rows down, columns right, the centre of the upper-left pixel at
(0, 0), so an H x W image spans rows [-0.5, H - 0.5] and columns [-0.5, W - 0.5]; a box around
the pixel centres r0..r1 has bbox_row1 = r0 - 0.5 and bbox_row2 = r1 + 0.5.

COCO: the upper-left corner of the upper-left pixel at (0, 0), an image spans [0, W] x [0, H],
and `bbox` = [x, y, w, h] with (x, y) the upper-left corner. The same box in both:

    bbox_row1 = y - 0.5        bbox_col1 = x - 0.5
    bbox_row2 = y + h - 0.5    bbox_col2 = x + w - 0.5
    x = bbox_col1 + 0.5, y = bbox_row1 + 0.5, w = bbox_col2 - bbox_col1, h = bbox_row2 - bbox_row1

so the tight box of pixels c0..c1 is x = c0, w = c1 - c0 + 1 in COCO, as COCO tools expect.

Oriented boxes (rectangle2) are in dlbatch/HALCON coordinates wherever they are stored (the
COCO "rbox" extension field too): centre (row, col), phi in radians counter-clockwise from
the column axis, length1/length2 the half lengths along d1 = (-sin phi, cos phi) and
d2 = (cos phi, sin phi), both in (row, col).
"""
from __future__ import annotations

import numpy as np

from ..core.errors import DLSampleError

RECTANGLE1_KEYS = ("bbox_row1", "bbox_col1", "bbox_row2", "bbox_col2")
RECTANGLE2_KEYS = ("bbox_row", "bbox_col", "bbox_phi", "bbox_length1", "bbox_length2")
RBOX_FIELDS = ("row", "col", "phi", "length1", "length2")


def box_keys(instance_type: str) -> tuple[str, ...]:
    """The sample keys of one box coordinate each: bbox_row1 ... or bbox_row, bbox_col, bbox_phi ..."""
    return RECTANGLE1_KEYS if instance_type == "rectangle1" else RECTANGLE2_KEYS


def coco_to_rectangle1(bbox) -> tuple[float, float, float, float]:
    """COCO [x, y, w, h] -> (row1, col1, row2, col2)."""
    x, y, w, h = (float(v) for v in bbox)
    return y - 0.5, x - 0.5, y + h - 0.5, x + w - 0.5


def rectangle1_to_coco(row1, col1, row2, col2) -> list[float]:
    """(row1, col1, row2, col2) -> COCO [x, y, w, h]."""
    return [float(col1) + 0.5, float(row1) + 0.5, float(col2) - float(col1), float(row2) - float(row1)]


def rectangle2_extent(row, col, phi, length1, length2):
    """(row1, col1, row2, col2) of the axis-parallel box around oriented boxes (arrays or floats)."""
    s, c = np.abs(np.sin(phi)), np.abs(np.cos(phi))
    reach_row = length1 * s + length2 * c
    reach_col = length1 * c + length2 * s
    return row - reach_row, col - reach_col, row + reach_row, col + reach_col


def empty_boxes(instance_type: str) -> dict:
    """The box labels of an image without objects (empty arrays of the right types)."""
    keys = box_keys(instance_type)
    return {**{k: np.zeros(0, np.float64) for k in keys}, "bbox_label_id": np.zeros(0, np.int64)}


def check_boxes(labels: dict, instance_type: str, where: str, size=None, tolerance: float = 1.0,
                names=None) -> None:
    """Every box finite and not degenerate, and when `size` = (height, width) is known, inside
    the image up to `tolerance` pixels. `where` names the file (and sample) for the message,
    `names` optionally each box (e.g. "annotation 17")."""
    keys = box_keys(instance_type)
    values = np.stack([np.asarray(labels[k], np.float64).reshape(-1) for k in keys], axis=1)
    n = len(values)

    def fail(i, why):
        name = names[i] if names is not None else f"box {i}"
        box = ", ".join(f"{k}={v:g}" for k, v in zip(keys, values[i]))
        raise DLSampleError(f"{where}: {name} ({box}) {why}; fix or remove that annotation")

    for i in range(n):
        if not np.isfinite(values[i]).all():
            fail(i, "has a NaN or infinite value")
    if instance_type == "rectangle1":
        lo_r, lo_c, hi_r, hi_c = values.T if n else (np.zeros(0),) * 4
        bad = np.flatnonzero((hi_r <= lo_r) | (hi_c <= lo_c))
        if bad.size:
            fail(bad[0], "is empty: it needs bbox_row2 > bbox_row1 and bbox_col2 > bbox_col1")
    else:
        bad = np.flatnonzero((values[:, 3] <= 0) | (values[:, 4] <= 0)) if n else []
        if len(bad):
            fail(bad[0], "is empty: it needs bbox_length1 > 0 and bbox_length2 > 0")
        lo_r, lo_c, hi_r, hi_c = rectangle2_extent(*values.T) if n else (np.zeros(0),) * 4
    if size is None or n == 0:
        return
    height, width = size
    t = float(tolerance)
    outside = (lo_r < -0.5 - t) | (lo_c < -0.5 - t) | (hi_r > height - 0.5 + t) | (hi_c > width - 0.5 + t)
    bad = np.flatnonzero(outside)
    if bad.size:
        fail(bad[0], f"reaches outside the {height} x {width} image (rows {lo_r[bad[0]]:g}..{hi_r[bad[0]]:g}, "
                     f"cols {lo_c[bad[0]]:g}..{hi_c[bad[0]]:g}; the image spans -0.5..{height - 0.5:g} x "
                     f"-0.5..{width - 0.5:g} and {t:g} pixel(s) of tolerance)")


def rbox_values(rbox, where: str) -> tuple[float, ...]:
    """The (row, col, phi, length1, length2) of a COCO "rbox" extension field."""
    if not isinstance(rbox, dict) or not all(k in rbox for k in RBOX_FIELDS):
        raise DLSampleError(f"{where}: 'rbox' must be an object with the keys {', '.join(RBOX_FIELDS)} "
                            f"(HALCON rectangle2 in pixel-centre coordinates), got {rbox!r}")
    try:
        return tuple(float(rbox[k]) for k in RBOX_FIELDS)
    except (TypeError, ValueError):
        raise DLSampleError(f"{where}: 'rbox' values must be numbers, got {rbox!r}") from None


def rbox_field(row, col, phi, length1, length2) -> dict:
    """The COCO "rbox" extension field of a rectangle2 box, as rbox_values reads it."""
    return dict(zip(RBOX_FIELDS, (float(row), float(col), float(phi), float(length1), float(length2))))
