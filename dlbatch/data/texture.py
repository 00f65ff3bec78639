"""Background and camera: a smooth colour gradient with faint stripes and soft blobs, seen
under uneven illumination with sensor noise, so that neither a flat colour nor one global
threshold finds the objects."""
from __future__ import annotations

import math

import numpy as np


def _grid(height: int, width: int):
    return np.arange(height, dtype=float)[:, None], np.arange(width, dtype=float)[None, :]


def _along(rng, rows, cols):
    """Coordinate along a random direction."""
    angle = rng.uniform(0, 2 * math.pi)
    return rows * math.sin(angle) + cols * math.cos(angle)


def background(rng: np.random.Generator, height: int, width: int, channels: int) -> np.ndarray:
    """Reflectance (H x W x C, 0..255 scale) of an empty scene."""
    rows, cols = _grid(height, width)
    side = min(height, width)
    t = _along(rng, rows, cols)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-9)
    start, end = rng.uniform(40, 215, (2, channels))
    scene = start + (end - start) * t[..., None]

    period = rng.uniform(side / 8, side / 3)
    wave = np.sin(2 * math.pi * _along(rng, rows, cols) / period + rng.uniform(0, 2 * math.pi))
    scene = scene + rng.uniform(5, 12) * wave[..., None] * rng.uniform(0.5, 1.0, channels)

    count = int(rng.integers(2, 6))
    centres = rng.uniform(0, 1, (count, 2)) * [height, width]
    sigma = rng.uniform(side / 12, side / 5, count)
    d2 = (rows - centres[:, 0, None, None]) ** 2 + (cols - centres[:, 1, None, None]) ** 2
    blobs = np.exp(-d2 / (2 * sigma[:, None, None] ** 2))
    return scene + np.einsum("khw,kc->hwc", blobs, rng.normal(0, 20, (count, channels)))


def photograph(rng: np.random.Generator, reflectance: np.ndarray) -> np.ndarray:
    """What a camera gives: uneven illumination (+-15 % at most), noise, uint8."""
    height, width, _ = reflectance.shape
    rows, cols = _grid(height, width)
    t = _along(rng, rows - height / 2, cols - width / 2) / max(height, width)
    light = 1.0 + rng.uniform(0, 0.2) * t
    noisy = reflectance * light[..., None] + rng.normal(0, rng.uniform(3, 8), reflectance.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
