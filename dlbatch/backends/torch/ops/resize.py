"""Resize (opset 10-19): nearest / linear / cubic, every coordinate_transformation_mode,
nearest_mode, cubic_coeff_a, exclude_outside, extrapolation_value, axes and
keep_aspect_ratio_policy. antialias=1 is not supported.

Interpolation is separable, so the tensor is resized one axis at a time: for each axis the
source indices and weights are computed once on the host (cached per geometry) with the ONNX
formulas, then applied with `index_select` and a weighted sum, which autograd differentiates.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from ....core.onnx_attributes import resize_axes, resize_operands, resize_shape, source_coordinates, text
from ..kernel import TorchKernel
from ._util import unsupported


def _coeffs(mode: str, ratio: float, nearest_mode: str, a: float) -> list[float]:
    if mode == "nearest":
        if float(ratio).is_integer():
            return [0.0, 1.0]
        if nearest_mode == "round_prefer_floor":
            return [float(ratio <= 0.5), float(ratio > 0.5)]
        if nearest_mode == "round_prefer_ceil":
            return [float(ratio < 0.5), float(ratio >= 0.5)]
        return [1.0, 0.0] if nearest_mode == "floor" else [0.0, 1.0]
    if mode == "linear":
        return [1 - ratio, ratio]
    r = ratio
    return [((a * (r + 1) - 5 * a) * (r + 1) + 8 * a) * (r + 1) - 4 * a,
            ((a + 2) * r - (a + 3)) * r * r + 1,
            ((a + 2) * (1 - r) - (a + 3)) * (1 - r) * (1 - r) + 1,
            ((a * ((1 - r) + 1) - 5 * a) * ((1 - r) + 1) + 8 * a) * ((1 - r) + 1) - 4 * a]


@lru_cache(maxsize=256)
def _axis_plan(mode, ctm, nearest_mode, a, exclude_outside, scale, size, out, roi):
    """(indices [out, n], weights [out, n], extrapolated mask or None) for one axis."""
    y = np.arange(out, dtype=np.float64)
    x = source_coordinates(ctm, y, scale, size, out, roi)
    # tf_crop_and_resize: positions outside the input take extrapolation_value
    extrapolated = (x < 0) | (x > size - 1) if ctm == "tf_crop_and_resize" else None
    x_int = np.floor(x).astype(np.int64)
    ratios = np.where(x == x_int, 1.0, x - x_int)
    coeffs = np.array([_coeffs(mode, float(r), nearest_mode, a) for r in ratios], dtype=np.float64)
    coeffs = coeffs.reshape(out, -1)
    n = coeffs.shape[1]
    pad = int(math.ceil(n / 2))
    xp = x + pad
    p = np.floor(xp).astype(np.int64)
    frac = xp - p
    if n % 2 == 0:
        offset = np.where(frac == 0, -(n // 2), -(n // 2) + 1)
    else:
        base = -((n - 1) // 2)
        offset = np.where(frac <= 0.5, base, base + 1)
    idx = (p + offset)[:, None] + np.arange(n)[None, :] - pad
    if exclude_outside:
        coeffs = np.where((idx < 0) | (idx >= size), 0.0, coeffs)
        total = coeffs.sum(axis=1, keepdims=True)
        coeffs = coeffs / np.where(total == 0, 1.0, total)
    idx = np.clip(idx, 0, size - 1)
    if mode == "nearest":  # pick the chosen neighbour instead of weighting
        idx = idx[np.arange(out), coeffs.argmax(axis=1)][:, None]
        coeffs = np.ones((out, 1))
    return idx, coeffs, extrapolated


def _resize_axis(x, axis, plan, extrapolation_value):
    idx, coeffs, extrapolated = plan
    out, n = idx.shape
    index = torch.as_tensor(idx.reshape(-1), device=x.device)
    g = x.index_select(axis, index)
    if n > 1:
        shape = list(x.shape)
        shape[axis:axis + 1] = [out, n]
        w_shape = [1] * len(shape)
        w_shape[axis], w_shape[axis + 1] = out, n
        w = torch.as_tensor(coeffs, dtype=x.dtype, device=x.device).reshape(w_shape)
        g = (g.reshape(shape) * w).sum(dim=axis + 1)
    if extrapolated is not None and extrapolated.any():
        m_shape = [1] * g.dim()
        m_shape[axis] = out
        mask = torch.as_tensor(extrapolated, device=x.device).reshape(m_shape)
        g = torch.where(mask, torch.tensor(extrapolation_value, dtype=g.dtype, device=g.device), g)
    return g


class Resize(TorchKernel):
    op_type = "Resize"
    host_inputs = (1, 2, 3)

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        r = x.dim()
        mode = text(attrs.get("mode"), "nearest")
        if mode not in ("nearest", "linear", "cubic"):
            raise unsupported("Resize", f"mode={mode!r}", "nearest, linear, cubic")
        if int(attrs.get("antialias", 0)):
            raise unsupported("Resize", "antialias=1", "antialias=0")
        ctm, nearest_mode, roi, scales, sizes = resize_operands(ctx.opset, attrs, inputs)
        a = float(attrs.get("cubic_coeff_a", -0.75))
        exclude = bool(int(attrs.get("exclude_outside", 0)))
        extrapolation = float(attrs.get("extrapolation_value", 0.0))
        policy = text(attrs.get("keep_aspect_ratio_policy"), "stretch")
        axes = resize_axes(attrs, r)
        scale_f, out = resize_shape(list(x.shape), axes, scales, sizes, policy)
        full_roi = None
        if roi is not None:
            if len(roi) == 2 * len(axes) and len(axes) != r:
                tmp = [0.0] * r + [1.0] * r
                for i, ax in enumerate(axes):
                    tmp[ax], tmp[r + ax] = roi[i], roi[len(axes) + i]
                roi = tmp
            full_roi = roi
        y = x
        for ax in axes:
            axis_roi = (full_roi[ax], full_roi[ax + r]) if full_roi is not None else None
            if math.isclose(scale_f[ax], 1.0) and out[ax] == y.shape[ax] and (
                    axis_roi is None or (math.isclose(axis_roi[0], 0.0) and math.isclose(axis_roi[1], 1.0))):
                continue
            if ctm == "tf_crop_and_resize" and axis_roi is None:
                axis_roi = (0.0, 1.0)
            plan = _axis_plan(mode, ctm, nearest_mode, a, exclude, float(scale_f[ax]), int(y.shape[ax]),
                              int(out[ax]), axis_roi)
            y = _resize_axis(y, ax, plan, extrapolation)
        return [y]
