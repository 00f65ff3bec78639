"""Attributes of the normalisation ops PyTorch exports for LayerNorm and GroupNorm:
LayerNormalization (opset 17: `axis`, `epsilon`, `stash_type`) and InstanceNormalization
(`epsilon`; GroupNorm is exported as Reshape -> InstanceNormalization -> Reshape -> Mul -> Add).

stash_type names the precision of the statistics (mean and inverse standard deviation). Every
exporter writes 1 (float32). The kernels compute the statistics in the input's own precision,
which for the float32 and float64 models dlbatch trains is at least float32 (the torch kernel
computes them in float32 for half-precision inputs, as torch's layer_norm does); a request for
anything else is refused rather than silently ignored.
"""
from __future__ import annotations

from typing import NamedTuple

from .values import normalize_axis, unsupported

# TensorProto codes of the float types a stash_type may name, and what each means here
STASH_TYPES = {1: "float32"}


class LayerNormSpec(NamedTuple):
    """LayerNormalization's first normalised axis (non-negative; the statistics run over
    axes axis..rank-1) and epsilon."""

    axis: int
    epsilon: float


def layer_norm_spec(attrs: dict, rank: int) -> LayerNormSpec:
    """axis (default -1, may be negative), epsilon (default 1e-5), stash_type (default 1)."""
    stash = int(attrs.get("stash_type", 1))
    if stash not in STASH_TYPES:
        raise unsupported("LayerNormalization", f"stash_type={stash}",
                          ", ".join(f"{k} ({v})" for k, v in STASH_TYPES.items()))
    axis = normalize_axis("LayerNormalization", int(attrs.get("axis", -1)), rank)
    return LayerNormSpec(axis, float(attrs.get("epsilon", 1e-5)))


def instance_norm_epsilon(attrs: dict, rank: int) -> float:
    """InstanceNormalization's epsilon (default 1e-5); the input must be (N, C, ...) with at
    least one spatial axis (statistics per sample and channel over the spatial axes)."""
    if rank < 3:
        raise unsupported("InstanceNormalization", f"a rank-{rank} input", "inputs (N, C, D1, ...) of rank >= 3")
    return float(attrs.get("epsilon", 1e-5))
