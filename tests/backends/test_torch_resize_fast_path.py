"""The torch Resize fast paths (F.interpolate) against the generic path (index_select and
weighted sums, forced with FAST_PATHS = False) and onnx.reference: forward and gradients over a
grid of shapes (odd/even, up/down), scales vs sizes, modes and coordinate modes; and the cases
that must stay on the generic path."""
from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
from onnx import helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from dlbatch.backends.torch.kernel import TorchOpContext  # noqa: E402
from dlbatch.backends.torch.ops import resize as R  # noqa: E402
from dlbatch.core.errors import DLPluginError  # noqa: E402
from dlbatch.core.onnx_attributes import source_coordinates  # noqa: E402

TOL = {torch.float32: 1e-6, torch.float64: 1e-12}
SHAPES = [(2, 3, 5, 4), (1, 2, 6, 7), (2, 1, 8, 8), (1, 2, 1, 3), (1, 1, 9, 2)]
# dyadic factors (exact float32 coordinates) and others (float64 fast path only)
LINEAR_SCALES = [(2.0, 2.0), (4.0, 0.5), (0.5, 0.5), (0.25, 2.0), (2.0, 1.0), (3.0, 1.5), (1.7, 2.5),
                 (0.6, 0.75), (1 / 3, 2.0), (1.0, 0.8)]
NEAREST_SCALES = [(2.0, 2.0), (3.0, 2.0), (1.0, 4.0), (5.0, 3.0), (7.0, 1.0)]


def _case(shape, *, scales=None, sizes=None, opset=13, **attrs):
    """Kernel inputs (host operands as CPU tensors) for a Resize of a tensor of `shape`."""
    if opset < 11:
        return [None, torch.tensor(scales, dtype=torch.float32)], attrs, opset
    roi = torch.zeros(0, dtype=torch.float32)
    sc = torch.tensor(scales, dtype=torch.float32) if scales is not None else torch.zeros(0, dtype=torch.float32)
    inputs = [None, roi, sc]
    if sizes is not None:
        inputs.append(torch.tensor(sizes, dtype=torch.int64))
    return inputs, attrs, opset


def _run(x, case, fast, monkeypatch, grad_seed=0):
    """(output, input gradient for a fixed random output gradient, F.interpolate calls)."""
    inputs, attrs, opset = case
    calls = []
    real = R.F.interpolate

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(R, "FAST_PATHS", fast)
        m.setattr(R.F, "interpolate", spy)
        xx = x.detach().clone().requires_grad_(True)
        ctx = TorchOpContext(training=True, bn_momentum=0.9, opset=opset, num_outputs=1, device="cpu")
        y = R.Resize().forward(ctx, [xx] + inputs[1:], dict(attrs))[0]
    g = torch.from_numpy(np.random.default_rng(grad_seed).standard_normal(tuple(y.shape))).to(y.dtype)
    y.backward(g)
    return y.detach(), xx.grad, calls


def _compare(shape, dtype, case, monkeypatch, expect_fast=True):
    x = torch.from_numpy(np.random.default_rng(zlib.crc32(repr(shape).encode())).standard_normal(shape)).to(dtype)
    y_fast, g_fast, calls = _run(x, case, True, monkeypatch)
    y_gen, g_gen, gen_calls = _run(x, case, False, monkeypatch)
    assert not gen_calls
    assert bool(calls) == expect_fast, (shape, case, calls)
    assert y_fast.shape == y_gen.shape
    tol = TOL[dtype]
    for got, want in ((y_fast, y_gen), (g_fast, g_gen)):
        # relative to the tensor's magnitude, as check() in test_torch_backend.py: a gradient
        # sums several products, in another order in ATen's backward
        scale = max(1.0, float(want.abs().max()))
        torch.testing.assert_close(got, want, rtol=tol, atol=tol * scale)
    return calls


DTYPES = [torch.float32, torch.float64]
# output size rules per spatial axis (up, down, odd, even, 2n - 1 for align_corners) and pairs
SIZE_RULES = [lambda n: 2 * n, lambda n: 2 * n - 1, lambda n: max(1, round(1.5 * n)), lambda n: max(1, round(0.7 * n)),
              lambda n: max(1, n // 2), lambda n: n, lambda n: 4 * n]
SIZE_PAIRS = [(0, 0), (1, 1), (2, 4), (3, 0), (4, 5), (5, 2), (6, 4), (0, 6)]


def _expect_linear_fast(dtype, align_corners, shape, out, scales=None):
    """Where the fast path must be taken: see test_float32_guard_matches_aten and
    test_float64_guard_matches_aten for the guards themselves."""
    axes = []
    for i, (n, o) in enumerate(zip(shape[2:], out)):
        scale = None if scales is None else (1.0 if o == n else float(np.float32(scales[i])))
        axes.append(R._linear_axis_ok(dtype == torch.float64, align_corners, scale, n, o))
    return all(axes)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("ctm", ["half_pixel", "pytorch_half_pixel"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_linear_half_pixel_scales(shape, ctm, dtype, monkeypatch):
    taken = 0
    for factors in LINEAR_SCALES:
        out = [int(np.floor(np.float32(f) * s)) for f, s in zip(factors, shape[2:])]
        if min(out) < 1:
            continue
        fast = (ctm == "half_pixel" or min(out) > 1) and _expect_linear_fast(dtype, False, shape, out, factors)
        calls = _compare(shape, dtype, _case(shape, scales=[1, 1, *factors], mode="linear",
                                             coordinate_transformation_mode=ctm), monkeypatch, fast)
        if fast:  # the given scale, not in/out, picks the source coordinate
            assert calls[0]["recompute_scale_factor"] is False and "scale_factor" in calls[0]
            taken += 1
    assert taken >= 1


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("ctm", ["half_pixel", "pytorch_half_pixel", "align_corners"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_linear_sizes(shape, ctm, dtype, monkeypatch):
    taken = 0
    for i, j in SIZE_PAIRS:
        out = [SIZE_RULES[i](shape[2]), SIZE_RULES[j](shape[3])]
        if out == list(shape[2:]):
            continue
        fast = ((ctm != "pytorch_half_pixel" or min(out) > 1)
                and _expect_linear_fast(dtype, ctm == "align_corners", shape, out))
        calls = _compare(shape, dtype, _case(shape, sizes=[*shape[:2], *out], mode="linear",
                                             coordinate_transformation_mode=ctm), monkeypatch, fast)
        if fast:
            assert calls[0]["size"] == tuple(out)
            taken += 1
    assert taken >= 1


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_linear_align_corners_scales(shape, dtype, monkeypatch):
    """Fast only where scale * in is the output size (ONNX divides by scale * in - 1)."""
    for factors in [(2.0, 2.0), (3.0, 1.0), (0.5, 2.0), (1.5, 2.5), (1.7, 0.6), (4.0, 0.25)]:
        width = [np.float32(f) * np.float64(s) for f, s in zip(factors, shape[2:])]
        out = [int(np.floor(w)) for w in width]
        if min(out) < 1:
            continue
        fast = all(o == 1 or w == o for w, o in zip(width, out)) and _expect_linear_fast(dtype, True, shape, out)
        _compare(shape, dtype, _case(shape, scales=[1, 1, *factors], mode="linear",
                                     coordinate_transformation_mode="align_corners"), monkeypatch, fast)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_nearest_asymmetric_floor_integer_upsampling(shape, dtype, monkeypatch):
    for factors in NEAREST_SCALES:
        attrs = dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        _compare(shape, dtype, _case(shape, scales=[1, 1, *factors], **attrs), monkeypatch)
        sizes = [shape[0], shape[1]] + [int(f) * s for f, s in zip(factors, shape[2:])]
        _compare(shape, dtype, _case(shape, sizes=sizes, **attrs), monkeypatch)
    # opset 10 Resize: asymmetric + floor is its only rule
    _compare(shape, dtype, _case(shape, scales=[1, 1, 2, 2], opset=10, mode="nearest"), monkeypatch)


def test_nearest_factor_where_aten_rounds_differently_stays_generic(monkeypatch):
    """ATen's float32 floor(41 * float32(1/41)) is 0, ONNX's 41 // 41 is 1."""
    assert not R._aten_nearest_exact(41, 82) and R._aten_nearest_exact(41, 41)
    assert all(R._aten_nearest_exact(2 ** j, 4096) for j in range(6))
    attrs = dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    for dtype in DTYPES:
        _compare((1, 2, 3, 2), dtype, _case((1, 2, 3, 2), scales=[1, 1, 1, 41], **attrs), monkeypatch,
                 expect_fast=False)
        _compare((1, 2, 3, 2), dtype, _case((1, 2, 3, 2), sizes=[1, 2, 123, 2], **attrs), monkeypatch,
                 expect_fast=False)
        _compare((1, 2, 1, 2), dtype, _case((1, 2, 1, 2), scales=[1, 1, 41, 1], **attrs), monkeypatch)


@pytest.mark.parametrize("case", [
    _case((2, 3, 5, 4), scales=[1, 1, 2, 2], mode="linear", exclude_outside=1),
    _case((2, 3, 5, 4), scales=[1, 2, 2, 2], mode="linear"),
    _case((2, 3, 5, 4), scales=[2, 1, 2, 2], mode="nearest", coordinate_transformation_mode="asymmetric",
          nearest_mode="floor"),
    _case((2, 3, 5, 4), scales=[1, 1, 2, 2], mode="linear", coordinate_transformation_mode="asymmetric"),
    _case((2, 3, 5, 4), scales=[1, 1, 2, 2], mode="linear", coordinate_transformation_mode="half_pixel_symmetric"),
    _case((2, 3, 5, 4), sizes=[2, 3, 1, 8], mode="linear", coordinate_transformation_mode="pytorch_half_pixel"),
    _case((2, 3, 5, 4), scales=[1, 1, 1.5, 2.5], mode="linear", coordinate_transformation_mode="align_corners"),
    _case((2, 3, 5, 4), scales=[1, 1, 2, 2], mode="nearest"),
    _case((2, 3, 5, 4), scales=[1, 1, 2, 2], mode="nearest", coordinate_transformation_mode="asymmetric"),
    _case((2, 3, 5, 4), scales=[1, 1, 2, 2], mode="nearest", coordinate_transformation_mode="asymmetric",
          nearest_mode="ceil"),
    _case((2, 3, 5, 4), scales=[1, 1, 2.5, 2], mode="nearest", coordinate_transformation_mode="asymmetric",
          nearest_mode="floor"),
    _case((2, 3, 5, 4), scales=[1, 1, 0.5, 1], mode="nearest", coordinate_transformation_mode="asymmetric",
          nearest_mode="floor"),
    _case((2, 3, 5, 4), scales=[1, 1, 2, 2], mode="cubic"),
    _case((2, 3, 5, 4), sizes=[9, 9], opset=18, mode="linear", axes=[2, 3], keep_aspect_ratio_policy="not_larger"),
    _case((2, 3, 5), scales=[1, 1, 2], mode="linear"),
    _case((1, 2, 3, 4, 5), scales=[1, 1, 2, 2, 2], mode="linear"),
], ids=lambda c: str(c[1]))
def test_other_cases_stay_on_generic_path(case, monkeypatch):
    scales = case[0][2]
    rank = scales.numel() if scales.numel() and "axes" not in case[1] else 4
    shape = {3: (2, 3, 5), 4: (2, 3, 5, 4), 5: (1, 2, 3, 4, 5)}[rank]
    _compare(shape, torch.float64, case, monkeypatch, expect_fast=False)


def test_axes_attribute_and_sizes_take_fast_path(monkeypatch):
    shape = (2, 3, 5, 4)
    _compare(shape, torch.float64, _case(shape, sizes=[9, 7], opset=18, mode="linear", axes=[2, 3]), monkeypatch)
    _compare(shape, torch.float64, _case(shape, scales=[2.5, 1.5], opset=18, mode="linear", axes=[3, 2]), monkeypatch)


def _exact_linear_1d(data, ctm, scale, out):
    """ONNX linear along one axis in float64: the source coordinate of every output position
    (source_coordinates, the rule the generic path uses), clamped to the edge pixels."""
    x = source_coordinates(ctm, np.arange(out, dtype=np.float64), scale, len(data), out)
    return np.interp(x, np.arange(len(data)), data)


def _aten_error_1d(size, out, align_corners, scale):
    """max |F.interpolate - ONNX linear| along one float64 axis (H), data x**2."""
    data = np.arange(size, dtype=np.float64) ** 2
    x = torch.from_numpy(data).reshape(1, 1, size, 1)
    if scale is None:
        y = R.F.interpolate(x, size=(out, 1), mode="bilinear", align_corners=align_corners)
    else:
        y = R.F.interpolate(x, scale_factor=(scale, 1.0), mode="bilinear", align_corners=False,
                            recompute_scale_factor=False)
    s = out / size if scale is None else scale
    want = _exact_linear_1d(data, "align_corners" if align_corners else "half_pixel", s, out)
    return float(np.abs(y.numpy().reshape(-1) - want).max())


def test_float64_guard_matches_aten():
    """ATen's float64 bilinear picks floorf(coordinate): the guard predicts exactly where that
    parts from ONNX (by ~1e-7) and where it agrees to rounding."""
    seen = set()
    for size in [2, 3, 5, 7, 9, 10, 13, 31, 100]:
        for f in [1 / 3, 0.6, 0.7, 1.7, 2.5, 3.0, 1 / 7, 2 / 3, 0.9]:
            scale = float(np.float32(f))
            out = int(np.floor(scale * size))
            if out < 1:
                continue
            for args in [(False, scale), (False, None), (True, None)]:
                exact = R._aten_linear_float64_exact(args[0], args[1], size, out)
                err = _aten_error_1d(size, out, *args)
                assert (err < 1e-12 * size ** 2) == exact, (size, out, args, err)
                seen.add(exact)
    assert seen == {True, False}


def _aten_float32_error_1d(size, out, align_corners, scale):
    """max |F.interpolate(float32) - ONNX linear (float64)| along one axis, random data."""
    data = np.random.default_rng(size).standard_normal(size).astype(np.float32)
    x = torch.from_numpy(data).reshape(1, 1, size, 1)
    if scale is None:
        y = R.F.interpolate(x, size=(out, 1), mode="bilinear", align_corners=align_corners)
    else:
        y = R.F.interpolate(x, scale_factor=(scale, 1.0), mode="bilinear", align_corners=False,
                            recompute_scale_factor=False)
    s = out / size if scale is None else scale
    want = _exact_linear_1d(data.astype(np.float64), "align_corners" if align_corners else "half_pixel", s, out)
    return float(np.abs(y.numpy().reshape(-1).astype(np.float64) - want).max() / np.abs(data).max())


def test_float32_guard_matches_aten():
    """float32: ATen's coordinates are float32; where the guard says they are exact the output
    is the float64 ONNX value to float32 rounding at any size; elsewhere it drifts with the
    coordinate's magnitude (the reason for the guard)."""
    exact = [(False, 2.0), (False, 4.0), (False, 0.5), (False, 0.25), (False, 1.0)]
    for size in [3, 64, 1000, 4096]:
        for align_corners, scale in exact:
            out = int(np.floor(scale * size))
            if out < 1:
                continue
            assert R._aten_linear_float32_exact(align_corners, scale, size, out)
            assert _aten_float32_error_1d(size, out, align_corners, scale) < 3e-7
        for align_corners, out in [(False, 2 * size), (False, 4 * size), (True, 2 * size - 1)]:
            assert R._aten_linear_float32_exact(align_corners, None, size, out)
            assert _aten_float32_error_1d(size, out, align_corners, None) < 3e-7
    for align_corners, scale, size, out in [(False, 1.5, 64, 96), (False, float(np.float32(1.7)), 64, 108),
                                            (False, None, 7, 17), (True, None, 64, 128), (False, None, 64, 96)]:
        assert not R._aten_linear_float32_exact(align_corners, scale, size, out)
    assert _aten_float32_error_1d(1024, 1740, False, float(np.float32(1.7))) > 1e-5


def test_fast_path_takes_the_pixels_the_coordinate_names(monkeypatch):
    """7 -> 17 by sizes, half_pixel: output 8 samples (8.5) * 7 / 17 - 0.5 = 3 (3.0000000000000004
    in float64), i.e. pixel 3. The generic path, like onnx.reference, finds the neighbours from
    coordinate + 1 (which rounds to 4.0) but the weights from the coordinate, and returns pixel 2
    there; the float64 fast path returns pixel 3 (float32 keeps the generic path: 7 / 17 is not
    a float32 number)."""
    data = np.arange(7, dtype=np.float64) ** 2
    case = _case((1, 1, 7, 1), sizes=[1, 1, 17, 1], mode="linear")
    y, _, calls = _run(torch.from_numpy(data).reshape(1, 1, 7, 1), case, True, monkeypatch)
    assert calls
    np.testing.assert_allclose(y.numpy().reshape(-1), _exact_linear_1d(data, "half_pixel", 17 / 7, 17),
                               rtol=1e-12, atol=1e-12 * 36)
    assert y.reshape(-1)[8] == pytest.approx(9.0, abs=1e-12)


# -- against onnx.reference, antialias=1 when upsampling included ------------------------------
def _reference(x, case):
    inputs, attrs, opset = case
    names = ["x", "roi", "scales", "sizes"][:len(inputs)] if opset >= 11 else ["x", "scales"]
    consts = {n: v.numpy() for n, v in zip(names[1:], inputs[1:])}
    node = helper.make_node("Resize", names, ["y"], **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.DOUBLE, x.shape)],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.DOUBLE, None)],
                              initializer=[numpy_helper.from_array(v, n) for n, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return ReferenceEvaluator(model).run(None, {"x": x})[0]


REFERENCE_CASES = [
    _case((2, 3, 5, 4), scales=[1, 1, 1.7, 2.5], mode="linear"),
    _case((2, 3, 5, 4), scales=[1, 1, 0.6, 0.75], mode="linear"),
    _case((2, 3, 5, 4), sizes=[2, 3, 9, 3], mode="linear"),
    _case((2, 3, 5, 4), sizes=[2, 3, 9, 3], mode="linear", coordinate_transformation_mode="pytorch_half_pixel"),
    _case((2, 3, 5, 4), sizes=[2, 3, 9, 3], mode="linear", coordinate_transformation_mode="align_corners"),
    _case((2, 3, 5, 4), scales=[1, 1, 3, 2], mode="nearest", coordinate_transformation_mode="asymmetric",
          nearest_mode="floor"),
    _case((2, 3, 5, 4), scales=[1, 1, 2, 1.5], opset=18, mode="linear", antialias=1),
    _case((2, 3, 5, 4), sizes=[2, 3, 5, 9], opset=18, mode="linear", antialias=1),
]


@pytest.mark.parametrize("case", REFERENCE_CASES, ids=lambda c: str(c[1]))
def test_fast_path_matches_onnx_reference(case, monkeypatch):
    x = np.random.default_rng(5).standard_normal((2, 3, 5, 4))
    y, _, calls = _run(torch.from_numpy(x), case, True, monkeypatch)
    assert calls
    np.testing.assert_allclose(y.numpy(), _reference(x, case), rtol=1e-12, atol=1e-12)


def test_antialias_when_upsampling_equals_plain_linear_and_downsampling_is_refused(monkeypatch):
    x = torch.from_numpy(np.random.default_rng(3).standard_normal((2, 3, 5, 4)))
    plain, aa = (_run(x, _case((2, 3, 5, 4), scales=[1, 1, 2, 1.5], mode="linear", **a), fast, monkeypatch)
                 for a, fast in [({}, True), ({"antialias": 1}, False)])
    torch.testing.assert_close(aa[0], plain[0], rtol=1e-12, atol=1e-12)
    for scales, mode in [([1, 1, 2, 0.5], "linear"), ([1, 1, 2, 2], "cubic"), ([1, 1, 2, 2], "nearest")]:
        with pytest.raises(DLPluginError, match="antialias"):
            _run(x, _case((2, 3, 5, 4), scales=scales, mode=mode, antialias=1), True, monkeypatch)


def test_grid_covers_up_and_down_odd_and_even():
    ups = [f for f in itertools.chain(*LINEAR_SCALES) if f > 1]
    downs = [f for f in itertools.chain(*LINEAR_SCALES) if f < 1]
    assert ups and downs
    assert {s % 2 for shape in SHAPES for s in shape[2:]} == {0, 1}
