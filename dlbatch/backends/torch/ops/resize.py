"""Resize (opset 10-19): nearest / linear / cubic, every coordinate_transformation_mode,
nearest_mode, cubic_coeff_a, exclude_outside, extrapolation_value, axes and
keep_aspect_ratio_policy. antialias=1 only where it changes nothing: mode linear with no
axis downsampled (ONNX scales the linear filter by min(scale, 1), so upsampling is plain linear).

Generic path: interpolation is separable, so the tensor is resized one axis at a time: for each
axis the source indices and weights are computed once on the host (cached per geometry) with
the ONNX formulas, then applied with `index_select` and a weighted sum, which autograd
differentiates.

Fast paths (4-D NCHW floating-point input, N and C left alone, no exclude_outside,
`FAST_PATHS` true): the cases where `F.interpolate` computes exactly the ONNX sampling, so the
ATen kernels (forward and backward) do the work instead of index_select + weighted sums
(forward+backward of a float32 16x64x64x64 bilinear x2 upsample on 2 busy CPU threads: median
0.26 s instead of 5.8 s, as fast as F.interpolate by hand):

* linear, half_pixel (pytorch_half_pixel when both output sizes > 1), keep_aspect_ratio_policy
  stretch -> bilinear, align_corners=False. ONNX maps output y to
  (y + 0.5) / scale - 0.5 with the *given* scale when scales are given, which is not
  in/out when scale * in is not an integer: those calls pass `scale_factor` with
  recompute_scale_factor=False (ATen then uses 1 / scale); sizes pass `size` (scale in/out).
  ATen clamps negative source coordinates to 0, which is what ONNX's edge padding gives.
* linear, align_corners, where every output size is 1 or equals scale * in (ONNX divides by
  scale * in - 1, ATen by out - 1) -> bilinear, align_corners=True.
* nearest, asymmetric + floor (opset 10's only rule) with integer upsampling factors k ->
  nearest with scale_factor k. ATen picks floor(float32(y) * float32(1 / k)), which is not
  y // k for every k (k = 41 maps y = 41 to 0), so the fast path is taken only where that
  float32 product floors to y // k for every output position of the axis (checked once per
  geometry; always true for powers of two).

ATen computes the source coordinates in the tensor's precision, the generic path in float64:
* float32 (and half) tensors: float32 coordinates are off by up to ~coordinate * 2^-23, which
  puts outputs off by ~1e-5 at 64 pixels and ~5e-4 at 1024 (scale 1.7, unit normal data,
  against ~5e-7 for the generic path); so these take the
  fast path only where every coordinate and scale ATen forms is exact in float32 (dyadic scales
  such as 2, 4, 0.5, 0.25, sizes such as 2 * in, align_corners with (in - 1) / (out - 1)
  dyadic), where the weights equal the generic path's and the outputs differ by float32
  rounding of the sums only. 1.5x, 1.7x, 7 -> 17 and the like keep the generic path.
* float64 tensors: ATen picks the left neighbour as floorf(coordinate), the coordinate rounded
  to float32 first, and clamps the weight to [0, 1]: a coordinate just below an integer n
  (within float32 rounding, e.g. scale float32(0.6)) takes pixel n alone where ONNX weighs
  n - 1 by ~1e-7; float64 tensors take the fast path where no output position does that.
Both are checked once per axis geometry (cached). Anything else takes the generic path.
"""
from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

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


# False sends every Resize through the generic path (the tests compare the two paths).
FAST_PATHS = True


def _unchanged(scale: float, size: int, out: int) -> bool:
    """The generic path leaves such an axis alone (roi only matters for tf_crop_and_resize)."""
    return math.isclose(scale, 1.0) and out == size


@lru_cache(maxsize=256)
def _aten_nearest_exact(k: int, out: int) -> bool:
    """Whether ATen's nearest index floor(float32(y) * float32(1 / k)) is y // k for every
    output position y < out (scale_factor=k, recompute_scale_factor=False)."""
    y = np.arange(out, dtype=np.int64)
    picked = np.floor(y.astype(np.float32) * np.float32(1.0 / k)).astype(np.int64)
    return bool(np.array_equal(picked, y // k))


@lru_cache(maxsize=256)
def _aten_linear_float64_exact(align_corners: bool, scale, size: int, out: int) -> bool:
    """Whether ATen's float64 bilinear left neighbour, min(floorf(real), size - 1), is
    floor(real) for every output position of an axis (`scale` the scale_factor passed, None
    when `size=` is passed)."""
    y = np.arange(out, dtype=np.float64)
    if align_corners:
        real = y * ((size - 1) / (out - 1) if out > 1 else 0.0)
    else:
        real = np.maximum((1.0 / scale if scale is not None else size / out) * (y + 0.5) - 0.5, 0.0)
    inner = real[real < size - 1]  # at or past the last pixel both pick it alone
    moved = np.floor(inner.astype(np.float32)) != np.floor(inner)
    # an integer coordinate that float64 rounding put a few ulp below it costs only those ulp
    gap = np.ceil(inner) - inner
    return not bool(np.any(moved & (gap > 16 * np.spacing(np.maximum(inner, 1.0)))))


def _exact_in_float32(values) -> bool:
    values = np.asarray(values, dtype=np.float64)
    return bool(np.array_equal(values.astype(np.float32).astype(np.float64), values))


@lru_cache(maxsize=256)
def _aten_linear_float32_exact(align_corners: bool, scale, size: int, out: int) -> bool:
    """Whether every value ATen's float32 bilinear forms for an axis' source coordinates (the
    scale it uses, y + 0.5, the product, the coordinate) is the exact ONNX value and a float32
    number, so float32 arithmetic (with or without fused multiply-add) makes no rounding and
    the weights are the generic path's. `scale` is the scale_factor passed, None for `size=`."""
    if out >= 2 ** 22:
        return False
    y = np.arange(out, dtype=np.float64)
    if align_corners:
        if out == 1:
            return True
        step, t = Fraction(size - 1, out - 1), y
    else:
        step, t = (1 / Fraction(scale) if scale is not None else Fraction(size, out)), y + 0.5
    c = float(step)
    if Fraction(c) != step or not _exact_in_float32([c]):
        return False
    # c * t, a product of two float32 numbers, is exact in float64: check it (and the
    # coordinate) need no float32 rounding
    product = c * t
    return _exact_in_float32(t) and _exact_in_float32(product) and _exact_in_float32(
        product if align_corners else product - 0.5)


def _linear_axis_ok(f64: bool, align_corners: bool, scale, size: int, out: int) -> bool:
    if f64:
        return _aten_linear_float64_exact(align_corners, scale, size, out)
    return _aten_linear_float32_exact(align_corners, scale, size, out)


def _fast_resize(x, mode, ctm, nearest_mode, exclude, policy, sizes, scale_f, out):
    """The resized tensor through F.interpolate where that is exactly the ONNX Resize, else
    None (see the module docstring for the cases)."""
    if not FAST_PATHS or x.dim() != 4 or not x.is_floating_point() or exclude:
        return None
    shape = list(x.shape)
    if not (_unchanged(scale_f[0], shape[0], out[0]) and _unchanged(scale_f[1], shape[1], out[1])):
        return None
    spatial = (2, 3)
    if any(out[a] < 1 or not scale_f[a] > 0 for a in spatial):
        return None
    if mode == "linear":
        if sizes and policy != "stretch":
            return None
        f64 = x.dtype == torch.float64
        if ctm == "half_pixel" or (ctm == "pytorch_half_pixel" and all(out[a] > 1 for a in spatial)):
            if sizes:
                if not all(_linear_axis_ok(f64, False, None, shape[a], out[a]) for a in spatial):
                    return None
                return F.interpolate(x, size=(out[2], out[3]), mode="bilinear", align_corners=False)
            factors = tuple(1.0 if _unchanged(scale_f[a], shape[a], out[a]) else float(scale_f[a])
                            for a in spatial)
            if not all(_linear_axis_ok(f64, False, f, shape[a], out[a]) for f, a in zip(factors, spatial)):
                return None
            return F.interpolate(x, scale_factor=factors, mode="bilinear", align_corners=False,
                                 recompute_scale_factor=False)
        if ctm == "align_corners":
            width = [scale_f[a] * shape[a] for a in spatial]
            if not all(out[a] == 1 or abs(w - out[a]) <= 1e-12 * out[a] for w, a in zip(width, spatial)):
                return None
            if not all(_linear_axis_ok(f64, True, None, shape[a], out[a]) for a in spatial):
                return None
            return F.interpolate(x, size=(out[2], out[3]), mode="bilinear", align_corners=True)
        return None
    if mode == "nearest" and ctm == "asymmetric" and nearest_mode == "floor":
        factors = []
        for a in spatial:
            if _unchanged(scale_f[a], shape[a], out[a]):
                factors.append(1)
                continue
            k = scale_f[a]
            if not float(k).is_integer() or out[a] != int(k) * shape[a] or not _aten_nearest_exact(int(k), out[a]):
                return None
            factors.append(int(k))
        return F.interpolate(x, scale_factor=tuple(float(k) for k in factors), mode="nearest",
                             recompute_scale_factor=False)
    return None


class Resize(TorchKernel):
    op_type = "Resize"
    host_inputs = (1, 2, 3)

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        r = x.dim()
        mode = text(attrs.get("mode"), "nearest")
        if mode not in ("nearest", "linear", "cubic"):
            raise unsupported("Resize", f"mode={mode!r}", "nearest, linear, cubic")
        ctm, nearest_mode, roi, scales, sizes = resize_operands(ctx.opset, attrs, inputs)
        a = float(attrs.get("cubic_coeff_a", -0.75))
        exclude = bool(int(attrs.get("exclude_outside", 0)))
        extrapolation = float(attrs.get("extrapolation_value", 0.0))
        policy = text(attrs.get("keep_aspect_ratio_policy"), "stretch")
        axes = resize_axes(attrs, r)
        scale_f, out = resize_shape(list(x.shape), axes, scales, sizes, policy)
        if int(attrs.get("antialias", 0)) and not (mode == "linear" and all(scale_f[ax] >= 1 for ax in axes)):
            # ONNX antialias scales the filter by min(scale, 1): upsampling is plain linear
            raise unsupported("Resize", "antialias=1", "antialias=0, or antialias=1 with mode linear "
                              "and no axis downsampled")
        fast = _fast_resize(x, mode, ctm, nearest_mode, exclude, policy, sizes, scale_f, out)
        if fast is not None:
            return [fast]
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
