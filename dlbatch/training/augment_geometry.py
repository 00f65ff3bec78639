"""Geometric augmentations as one affine map of pixel coordinates, applied alike to the image,
the label images and the boxes, so that labels cannot drift from the pixels they describe.

Coordinates are the SPEC's: continuous (row, col), the centre of the upper-left pixel at (0, 0),
an H x W image spanning rows [-0.5, H-0.5] and cols [-0.5, W-0.5]. A map sends an old point p
to new = A p + t. The images are resampled backwards (each new pixel centre looks up
A^-1 (new - t) in the old image): bilinear for `image`, nearest for `segmentation_image` and
`weight_image`. Where a map reads exactly the old pixel centres (mirrors, quarter turns) the
values are copied, not interpolated.

Pixels that come from outside the old image (only after rotate_range): the image and the
segmentation image repeat their border pixel (no class id is invented: an ignore class is not
always defined); a weight_image, when the sample has one, gets weight 0 there, so those pixels
do not count in the loss.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..models.detection.rectangle2 import normalize_phi

#: rectangle1 boxes thinner than this (pixels) after clipping to the image are dropped: no
#: whole pixel of the object is left in view
MIN_BOX_SIDE = 1.0
_EXACT = 1e-9  # a source coordinate this close to a pixel centre is that pixel centre


@dataclass(frozen=True)
class Affine:
    """new = a @ old + t, for (row, col) points; a is 2 x 2, t has 2 entries."""

    a: np.ndarray
    t: np.ndarray

    def points(self, rows, cols) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = np.asarray(rows, dtype=np.float64), np.asarray(cols, dtype=np.float64)
        return (self.a[0, 0] * rows + self.a[0, 1] * cols + self.t[0],
                self.a[1, 0] * rows + self.a[1, 1] * cols + self.t[1])

    def inverse(self) -> "Affine":
        inv = np.linalg.inv(self.a)
        return Affine(inv, -inv @ self.t)


def mirror_map(height: int, width: int, rows: bool, cols: bool) -> Affine:
    """Mirror the rows (r -> H-1-r, HALCON's 'r') and/or the columns (c -> W-1-c, 'c')."""
    a = np.diag([-1.0 if rows else 1.0, -1.0 if cols else 1.0])
    return Affine(a, np.array([height - 1.0 if rows else 0.0, width - 1.0 if cols else 0.0]))


def rotation_map(height: int, width: int, degrees: float) -> Affine:
    """Rotate about the image centre by `degrees`, counter-clockwise as seen on screen (HALCON's
    rotate_image sense, the same as phi's): relative to the centre, r' = r cos a - c sin a,
    c' = r sin a + c cos a, which turns d1(phi) = (-sin phi, cos phi) into d1(phi + a).
    Multiples of 90 degrees use exact cosines and sines."""
    quarter = degrees / 90.0
    if quarter == round(quarter):
        cos, sin = ((1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0))[int(round(quarter)) % 4]
    else:
        cos, sin = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    a = np.array([[cos, -sin], [sin, cos]])
    centre = np.array([(height - 1) / 2.0, (width - 1) / 2.0])
    return Affine(a, centre - a @ centre)


def crop_map(height: int, width: int, top: int, left: int, crop_h: int, crop_w: int) -> Affine:
    """The window of pixel rows top..top+crop_h-1 and cols left..left+crop_w-1 scaled back to
    H x W: its extent maps onto the image extent, x' = (x - first + 0.5) * scale - 0.5 (the
    half-pixel rule of preprocess_dl_samples' resize and of the boxes' scale)."""
    sr, sc = height / crop_h, width / crop_w
    return Affine(np.diag([sr, sc]), np.array([(0.5 - top) * sr - 0.5, (0.5 - left) * sc - 0.5]))


def _source_grid(m: Affine, height: int, width: int):
    """Old-image coordinates (rows, cols), each H x W, read by the new pixel centres."""
    rows, cols = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64),
                             indexing="ij")
    return m.inverse().points(rows, cols)


def _is_exact(src_r, src_c) -> bool:
    return bool(np.all(np.abs(src_r - np.round(src_r)) < _EXACT) and np.all(np.abs(src_c - np.round(src_c)) < _EXACT))


def _nearest_index(src, n):
    return np.clip(np.floor(src + 0.5).astype(np.int64), 0, n - 1)


def warp_image(image: np.ndarray, m: Affine) -> np.ndarray:
    """The float image (H x W or H x W x C) under the map, same shape and dtype: bilinear,
    border pixels repeated outside, values copied where the map hits pixel centres."""
    height, width = image.shape[:2]
    src_r, src_c = _source_grid(m, height, width)
    if _is_exact(src_r, src_c):
        return image[_nearest_index(src_r, height), _nearest_index(src_c, width)].copy()
    r = np.clip(src_r, 0.0, height - 1.0)
    c = np.clip(src_c, 0.0, width - 1.0)
    r0, c0 = np.floor(r).astype(np.int64), np.floor(c).astype(np.int64)
    r1, c1 = np.minimum(r0 + 1, height - 1), np.minimum(c0 + 1, width - 1)
    fr, fc = r - r0, c - c0
    if image.ndim == 3:
        fr, fc = fr[..., None], fc[..., None]
    img = image.astype(np.float64)
    top = img[r0, c0] * (1 - fc) + img[r0, c1] * fc
    bottom = img[r1, c0] * (1 - fc) + img[r1, c1] * fc
    return as_dtype(top * (1 - fr) + bottom * fr, image.dtype)


def as_dtype(values: np.ndarray, dtype) -> np.ndarray:
    """Float results in the image's dtype; integer images (raw uint8, say) are rounded and
    saturated instead of truncated and wrapped."""
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    return values.astype(dtype)


def warp_labels(label: np.ndarray, m: Affine, outside_value=None) -> np.ndarray:
    """A label image (H x W) under the map, nearest neighbour (values never blended); pixels
    from outside the old image take `outside_value`, or repeat the border when it is None."""
    label = np.asarray(label)
    height, width = label.shape[:2]
    src_r, src_c = _source_grid(m, height, width)
    out = label[_nearest_index(src_r, height), _nearest_index(src_c, width)]
    if outside_value is not None:
        outside = (src_r < -0.5 - _EXACT) | (src_r > height - 0.5 + _EXACT) | \
                  (src_c < -0.5 - _EXACT) | (src_c > width - 0.5 + _EXACT)
        out[outside] = outside_value
    return out


def map_rectangle1(boxes: np.ndarray, m: Affine, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(boxes (n, 4), kept (N,) bool): each box (row1, col1, row2, col2) becomes the axis-parallel
    box enclosing its four mapped corners (exact for mirrors, quarter turns and crops), cut to
    the image; boxes that the cut leaves empty or thinner than MIN_BOX_SIDE pixels are dropped
    (a box that was that thin before keeps its size)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    corner_r = b[:, [0, 0, 2, 2]]
    corner_c = b[:, [1, 3, 1, 3]]
    r, c = m.points(corner_r, corner_c)
    whole = np.stack([r.min(axis=1), c.min(axis=1), r.max(axis=1), c.max(axis=1)], axis=1)
    out = whole.copy()
    out[:, 0::2] = np.clip(out[:, 0::2], -0.5, height - 0.5)
    out[:, 1::2] = np.clip(out[:, 1::2], -0.5, width - 0.5)
    kept = np.ones(len(out), dtype=bool)
    for lo, hi in ((0, 2), (1, 3)):
        side, before = out[:, hi] - out[:, lo], whole[:, hi] - whole[:, lo]
        kept &= (side > 0) & ((side >= MIN_BOX_SIDE) | (side >= before))
    return out[kept], kept


def map_rectangle2(boxes: np.ndarray, m: Affine, height: int, width: int,
                   undirected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(boxes (n, 5), kept (N,) bool) for (row, col, phi, length1, length2) boxes.

    The centre moves as a point. phi follows the box's front: the new length axis is
    v = A d1 with d1 = (-sin phi, cos phi), and since d1(phi') = v / |v|, phi' = atan2(-v_row,
    v_col). For a row mirror (A = diag(-1, 1)) this gives phi' = -phi, for a column mirror
    (diag(1, -1)) pi - phi, for both phi + pi, for a rotation by a phi + a: a mirror reverses
    the handedness of (d1, d2), but the front (+d1) stays on the same end of the object.
    length1' = length1 |A d1| and length2' = length2 |det A| / |A d1| (area-preserving; exact
    for mirrors, rotations and uniform scaling, and for crops with slightly unequal row and
    column scales the rule of Rectangle2.scale). phi' is normalised to (-pi, pi], or to
    (-pi/2, pi/2] where `undirected` (N,) is true. Boxes whose centre leaves the image are
    dropped (rectangle2 boxes are never clipped; corners may stick out, as in the samples)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
    row, col = m.points(b[:, 0], b[:, 1])
    d1_r, d1_c = -np.sin(b[:, 2]), np.cos(b[:, 2])
    v_r = m.a[0, 0] * d1_r + m.a[0, 1] * d1_c
    v_c = m.a[1, 0] * d1_r + m.a[1, 1] * d1_c
    stretch = np.hypot(v_r, v_c)
    phi = np.arctan2(-v_r, v_c)
    undirected = np.asarray(undirected, dtype=bool).reshape(-1)
    phi = np.where(undirected, normalize_phi(phi, True), normalize_phi(phi, False))
    det = abs(float(np.linalg.det(m.a)))
    out = np.stack([row, col, phi, b[:, 3] * stretch, b[:, 4] * det / stretch], axis=1)
    kept = (row >= -0.5) & (row <= height - 0.5) & (col >= -0.5) & (col <= width - 0.5)
    return out[kept], kept
