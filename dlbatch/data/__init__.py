"""Synthetic data for tests, examples and benchmarks (pure numpy, seeded)."""
from __future__ import annotations

from .synthetic import detection_samples, segmentation_samples

__all__ = ["detection_samples", "segmentation_samples"]
