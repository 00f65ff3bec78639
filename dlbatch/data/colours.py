"""Object colours: characteristic per class, but only partly.

Each class has its own colour (and grey level for one-channel images), yet about a third of the
objects take a random colour and every object is jittered, so that no per-pixel colour rule
separates the classes and a model has to learn shape as well. Objects are pushed away from
the background colour under them, so that they always stay visible.
"""
from __future__ import annotations

import math

import numpy as np

OWN_COLOUR_PROBABILITY = 0.65
JITTER = 12.0
MIN_CONTRAST = 35.0  # root mean square per channel between an object and its background
CAP_SHIFT = 110.0  # how far (per channel) a direction cap differs from the body


def class_colour(index: int, channels: int) -> np.ndarray:
    """Colour of the class at position `index` of class_ids: hues and grey levels spread by the
    golden ratio, so that neighbouring classes differ. Channels past the third see the grey."""
    grey = 50.0 + 160.0 * ((0.1 + index * 0.381966) % 1.0)
    if channels == 1:
        return np.array([grey])
    hue = (index * 0.618034) % 1.0
    rgb = np.clip(grey + 75.0 * np.cos(2 * math.pi * (hue - np.arange(3) / 3)), 20, 235)
    return np.concatenate([rgb, np.full(max(channels - 3, 0), grey)])[:channels]


def object_colour(rng: np.random.Generator, index: int, channels: int,
                  under: np.ndarray) -> np.ndarray:
    """One object's colour: its class's colour (or a random one), jittered, visible on `under`."""
    if rng.random() < OWN_COLOUR_PROBABILITY:
        base = class_colour(index, channels)
    else:
        base = rng.uniform(30, 225, channels)
    return stand_out(np.clip(base + rng.normal(0, JITTER, channels), 10, 245), under)


def stand_out(colour: np.ndarray, under: np.ndarray) -> np.ndarray:
    """`colour`, or if it is too close to `under` the nearer of the two colours at exactly
    MIN_CONTRAST from it along their difference (whichever survives clipping better)."""
    diff = colour - under
    rms = float(np.sqrt(np.mean(diff ** 2)))
    if rms >= MIN_CONTRAST:
        return colour
    step = MIN_CONTRAST * (diff / rms if rms > 1e-6 else np.ones_like(diff))
    candidates = [np.clip(under + step, 0, 255), np.clip(under - step, 0, 255)]
    return max(candidates, key=lambda c: float(np.mean((c - under) ** 2)))


def cap_colour(body: np.ndarray) -> np.ndarray:
    """The direction marker's colour: every channel CAP_SHIFT away from the body's."""
    return np.where(body < 128, body + CAP_SHIFT, body - CAP_SHIFT)
