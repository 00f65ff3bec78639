"""Synthetic data for tests, examples and benchmarks (pure numpy, seeded)."""
from __future__ import annotations

from .classification import classification_samples
from .synthetic import detection_samples, segmentation_samples

__all__ = ["classification_samples", "detection_samples", "segmentation_samples"]
