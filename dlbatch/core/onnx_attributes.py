"""ONNX attribute semantics, written once for every backend.

What a node's attributes mean does not depend on what computes the node: the padding that
`auto_pad` asks for, how many windows a convolution or pooling slides, which operands moved
from an attribute to an input at which opset. Each backend used to spell these rules out on
its own and the copies drifted apart (the numpy pools kept a window that starts past the end of
a VALID input in ceil mode; the torch ones dropped it). Here each rule lives once, as a small
function of Python numbers and sequences, so every backend gets the same answer and one test
(tests/core/test_onnx_attributes.py) checks the rules against the ONNX reference.

Nothing here imports a backend or an array library: values that may be arrays or tensors
(constant inputs) are read through `.tolist()`. Errors are DLPluginError naming the op, like
the kernels' own.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple, Sequence

from .errors import DLPluginError

AUTO_PAD_MODES = ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")
PAD_MODES = ("constant", "reflect", "edge", "wrap")


def unsupported(op: str, what: str, supported: str) -> DLPluginError:
    """The error for an attribute value a rule does not cover, naming the allowed ones."""
    return DLPluginError(f"{op}: {what} is not supported; supported: {supported}")


# -- reading values ------------------------------------------------------------------------------

def text(value: Any, default: str = "") -> str:
    """A string attribute: ONNX stores strings as bytes."""
    if value is None:
        return default
    return value.decode() if isinstance(value, (bytes, bytearray)) else str(value)


def _flat(value: Any) -> list:
    """Numbers of a scalar, sequence, array or tensor (read with .tolist()), flattened."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        return [value]
    out: list = []
    for v in value:
        out.extend(_flat(v))
    return out


def int_list(value: Any) -> list[int] | None:
    """An int-list attribute or constant input as Python ints; None stays None."""
    return None if value is None else [int(v) for v in _flat(value)]


def float_list(value: Any) -> list[float] | None:
    """A float-list attribute or constant input as Python floats; None stays None."""
    return None if value is None else [float(v) for v in _flat(value)]


def is_given(value: Any) -> bool:
    """Whether an optional operand is present: not None and not an empty tensor."""
    if value is None:
        return False
    numel = getattr(value, "numel", None)
    if callable(numel):  # a torch tensor
        return numel() > 0
    size = getattr(value, "size", None)
    if isinstance(size, int):  # a numpy array
        return size > 0
    return len(value) > 0 if isinstance(value, (list, tuple)) else True


def normalize_axis(op: str, axis: int, rank: int) -> int:
    """A possibly negative axis in [0, rank); raises when out of range."""
    if not -rank <= axis < rank:
        raise DLPluginError(f"{op}: axis {axis} is out of range for a rank-{rank} input")
    return axis + rank if axis < 0 else axis


# -- kernels, strides, pads and window counts (Conv, ConvTranspose, pools) ------------------------

def spatial_ints(op: str, attrs: dict, name: str, rank: int, default: int) -> list[int]:
    """A per-spatial-axis attribute (strides, dilations, output_padding); absent or empty
    means `default` on every axis."""
    values = int_list(attrs.get(name))
    if not values:
        return [default] * rank
    if len(values) != rank:
        raise DLPluginError(f"{op}: {name} needs {rank} values for {rank} spatial axes, got {values}")
    return values


def conv_kernel_shape(op: str, attrs: dict, weight_spatial: Sequence[int]) -> list[int]:
    """Conv/ConvTranspose kernel size: the weight's spatial shape, which kernel_shape (optional)
    must repeat."""
    kernel = [int(k) for k in weight_spatial]
    given = int_list(attrs.get("kernel_shape"))
    if given and given != kernel:
        raise unsupported(op, f"kernel_shape={given}", f"the weight's spatial shape {kernel}")
    return kernel


def pool_kernel_shape(op: str, attrs: dict) -> list[int]:
    """Pooling window size: kernel_shape is required."""
    kernel = int_list(attrs.get("kernel_shape"))
    if not kernel:
        raise unsupported(op, "a node without kernel_shape", "kernel_shape is required")
    return kernel


def effective_kernel(kernel: int, dilation: int) -> int:
    """Extent of a dilated kernel along one axis."""
    return (kernel - 1) * dilation + 1


def auto_pad(op: str, attrs: dict) -> str:
    """The auto_pad mode, validated ('' is an old spelling of NOTSET)."""
    mode = text(attrs.get("auto_pad"), "NOTSET") or "NOTSET"
    if mode not in AUTO_PAD_MODES:
        raise unsupported(op, f"auto_pad={mode!r}", ", ".join(AUTO_PAD_MODES))
    return mode


def explicit_pads(op: str, attrs: dict, rank: int) -> tuple[list[int], list[int]]:
    """(begins, ends) from the pads attribute [x1_begin, x2_begin, ..., x1_end, ...];
    absent or empty means no padding."""
    pads = int_list(attrs.get("pads"))
    if not pads:
        return [0] * rank, [0] * rank
    if len(pads) != 2 * rank:
        raise DLPluginError(f"{op}: pads needs {2 * rank} values for {rank} spatial axes, got {pads}")
    return pads[:rank], pads[rank:]


def split_padding(total: int, upper: bool) -> tuple[int, int]:
    """(begin, end) of `total` padding split almost evenly; the odd one goes at the end for
    SAME_UPPER, at the beginning otherwise (SAME_LOWER, and ConvTranspose's output_shape)."""
    small = total // 2
    return (small, total - small) if upper else (total - small, small)


def window_count(size: int, k_eff: int, stride: int, begin: int, end: int, ceil_mode: bool) -> int:
    """Number of windows along one axis of the padded input. In ceil mode a partial last
    window counts, but not one that would start in the end padding (ONNX shape inference and
    PyTorch agree on this)."""
    span = size + begin + end - k_eff
    if not ceil_mode:
        return span // stride + 1
    count = -(-span // stride) + 1
    if (count - 1) * stride >= size + begin:
        count -= 1
    return count


class Windows(NamedTuple):
    """Where a Conv or pooling window slides: pads before and after each spatial axis, and the
    number of windows (the output size) along it."""

    begins: list[int]
    ends: list[int]
    out: list[int]


def sliding_windows(op: str, attrs: dict, in_spatial: Sequence[int], kernel: Sequence[int],
                    strides: Sequence[int], dilations: Sequence[int], ceil_mode: bool = False) -> Windows:
    """Pads and output sizes of Conv and the pools from pads/auto_pad (and ceil_mode).

    SAME_* pad so that the output has ceil(size / stride) windows whatever ceil_mode says;
    VALID is no padding; NOTSET uses the pads attribute."""
    rank = len(in_spatial)
    mode = auto_pad(op, attrs)
    k_eff = [effective_kernel(k, d) for k, d in zip(kernel, dilations)]
    if mode in ("SAME_UPPER", "SAME_LOWER"):
        begins, ends, out = [], [], []
        for size, ke, s in zip(in_spatial, k_eff, strides):
            count = -(-size // s)
            begin, end = split_padding(max(0, (count - 1) * s + ke - size), mode == "SAME_UPPER")
            begins.append(begin)
            ends.append(end)
            out.append(count)
        return Windows(begins, ends, out)
    if mode == "VALID":
        begins, ends = [0] * rank, [0] * rank
    else:
        begins, ends = explicit_pads(op, attrs, rank)
    out = [window_count(size, ke, s, b, e, ceil_mode)
           for size, ke, s, b, e in zip(in_spatial, k_eff, strides, begins, ends)]
    return Windows(list(begins), list(ends), out)


class TransposedWindows(NamedTuple):
    """ConvTranspose's crop of the full (scattered) output: pads removed before and after each
    spatial axis, the output size and output_padding (extra size at the end)."""

    begins: list[int]
    ends: list[int]
    out: list[int]
    output_padding: list[int]


def conv_transpose_windows(op: str, attrs: dict, in_spatial: Sequence[int], kernel: Sequence[int],
                           strides: Sequence[int], dilations: Sequence[int]) -> TransposedWindows:
    """ConvTranspose pads and output size: from output_shape (its last `rank` entries) or
    SAME_* (output = input * stride), the needed padding is split as SAME_UPPER asks or
    otherwise with the odd one at the beginning; else from pads (NOTSET) or none (VALID).
    Pads may come out negative where output_shape asks for more than the full output."""
    rank = len(in_spatial)
    mode = auto_pad(op, attrs)
    opad = spatial_ints(op, attrs, "output_padding", rank, 0)
    full = [s * (size - 1) + op_ + effective_kernel(k, d)
            for size, k, s, d, op_ in zip(in_spatial, kernel, strides, dilations, opad)]
    target = int_list(attrs.get("output_shape"))
    if target is None and mode in ("SAME_UPPER", "SAME_LOWER"):
        target = [size * s for size, s in zip(in_spatial, strides)]
    if target is not None:
        if len(target) < rank:
            raise DLPluginError(f"{op}: output_shape needs {rank} spatial sizes, got {target}")
        pairs = [split_padding(f - t, mode == "SAME_UPPER") for f, t in zip(full, target[-rank:])]
        begins, ends = [p[0] for p in pairs], [p[1] for p in pairs]
    elif mode == "VALID":
        begins, ends = [0] * rank, [0] * rank
    else:
        begins, ends = explicit_pads(op, attrs, rank)
    out = [f - b - e for f, b, e in zip(full, begins, ends)]
    return TransposedWindows(list(begins), list(ends), out, opad)


# -- operands that moved from an attribute to an input ---------------------------------------------

# (op type, operand) -> (input index, first opset where it is an input rather than an attribute)
MOVED_TO_INPUT: dict[tuple[str, str], tuple[int, int]] = {
    ("Clip", "min"): (1, 11),
    ("Clip", "max"): (2, 11),
    ("Dropout", "ratio"): (1, 12),
    ("Pad", "pads"): (1, 11),
    ("Pad", "value"): (2, 11),
    ("Reshape", "shape"): (1, 5),
    ("Squeeze", "axes"): (1, 13),
    ("Unsqueeze", "axes"): (1, 13),
    ("Split", "split"): (1, 13),
    ("ReduceSum", "axes"): (1, 13),
    ("ReduceMean", "axes"): (1, 18),
    ("ReduceMax", "axes"): (1, 18),
    ("ReduceMin", "axes"): (1, 18),
    ("ReduceProd", "axes"): (1, 18),
    ("ReduceL1", "axes"): (1, 18),
    ("ReduceL2", "axes"): (1, 18),
    ("ReduceLogSum", "axes"): (1, 18),
    ("ReduceLogSumExp", "axes"): (1, 18),
    ("ReduceSumSquare", "axes"): (1, 18),
    ("Upsample", "scales"): (1, 9),
}


def operand(op: str, name: str, opset: int, attrs: dict, inputs: Sequence, default: Any = None) -> Any:
    """An operand that is an attribute before some opset and an (optional) input from it on
    (see MOVED_TO_INPUT); `default` when absent. Input values are returned as given (array or
    tensor), attribute values as stored."""
    index, since = MOVED_TO_INPUT[(op, name)]
    if opset >= since:
        value = inputs[index] if index < len(inputs) else None
        return default if value is None else value
    return attrs.get(name, default)


def clip_bounds(opset: int, attrs: dict, inputs: Sequence) -> tuple[Any, Any]:
    """Clip's (min, max), None where absent (an empty input counts as absent)."""
    lo = operand("Clip", "min", opset, attrs, inputs)
    hi = operand("Clip", "max", opset, attrs, inputs)
    return (lo if is_given(lo) else None), (hi if is_given(hi) else None)


def dropout_ratio(opset: int, attrs: dict, inputs: Sequence) -> float:
    """Dropout's drop probability, 0.5 unless given."""
    ratio = operand("Dropout", "ratio", opset, attrs, inputs)
    return float_list(ratio)[0] if is_given(ratio) else 0.5


def reshape_target(opset: int, attrs: dict, inputs: Sequence, in_shape: Sequence[int]) -> list[int]:
    """Reshape's target shape with 0 copied from the input (unless allowzero=1); -1 is left
    for the array library to infer."""
    shape = int_list(operand("Reshape", "shape", opset, attrs, inputs)) or []
    if int(attrs.get("allowzero", 0)):
        return shape
    return [int(in_shape[i]) if s == 0 else s for i, s in enumerate(shape)]


def squeeze_axes(opset: int, attrs: dict, inputs: Sequence, in_shape: Sequence[int]) -> list[int]:
    """Squeeze's axes, sorted and non-negative; absent means every size-1 axis."""
    axes = int_list(operand("Squeeze", "axes", opset, attrs, inputs))
    rank = len(in_shape)
    if axes is None:
        return [i for i, s in enumerate(in_shape) if s == 1]
    axes = sorted({normalize_axis("Squeeze", a, rank) for a in axes})
    for a in axes:
        if in_shape[a] != 1:
            raise unsupported("Squeeze", f"axis {a} of size {in_shape[a]}", "axes of size 1")
    return axes


def unsqueeze_axes(opset: int, attrs: dict, inputs: Sequence, rank: int) -> list[int]:
    """Unsqueeze's axes in the output (rank + len(axes)), sorted and non-negative."""
    axes = int_list(operand("Unsqueeze", "axes", opset, attrs, inputs))
    if not axes:
        raise unsupported("Unsqueeze", "a node without axes", "a non-empty list of axes")
    out_rank = rank + len(axes)
    return sorted(normalize_axis("Unsqueeze", a, out_rank) for a in axes)


def reduce_axes(op: str, opset: int, attrs: dict, inputs: Sequence, rank: int) -> tuple[int, ...] | None:
    """The axes a Reduce* op reduces, sorted and non-negative: all of them when none are
    given, or None (the op is the identity) when noop_with_empty_axes=1 says so."""
    axes = int_list(operand(op, "axes", opset, attrs, inputs))
    if not axes:
        _, since = MOVED_TO_INPUT[(op, "axes")]
        if opset >= since and int(attrs.get("noop_with_empty_axes", 0)):
            return None
        return tuple(range(rank))
    return tuple(sorted({normalize_axis(op, a, rank) for a in axes}))


class PadSpec(NamedTuple):
    """Pad's mode, per-axis (begin, end) counts (negative crops) and constant value."""

    mode: str
    begins: list[int]
    ends: list[int]
    value: float


def pad_spec(opset: int, attrs: dict, inputs: Sequence, rank: int) -> PadSpec:
    """Pad: pads (opset 1: `paddings`) and value are attributes before opset 11, inputs 1 and
    2 from then on, with optional `axes` (input 3, opset 18) naming the padded axes."""
    mode = text(attrs.get("mode"), "constant")
    if mode not in PAD_MODES:
        raise unsupported("Pad", f"mode={mode!r}", ", ".join(PAD_MODES))
    if opset < MOVED_TO_INPUT[("Pad", "pads")][1]:
        pads = int_list(attrs.get("pads", attrs.get("paddings"))) or []
        value = float(attrs.get("value", 0.0))
        axes = list(range(rank))
    else:
        pads = int_list(inputs[1]) or []
        constant = inputs[2] if len(inputs) > 2 else None
        value = float_list(constant)[0] if is_given(constant) else 0.0
        given = inputs[3] if len(inputs) > 3 else None
        axes = ([normalize_axis("Pad", a, rank) for a in int_list(given)] if given is not None
                else list(range(rank)))
    n = len(axes)
    if len(pads) != 2 * n:
        raise unsupported("Pad", f"{len(pads)} pad values for {n} axes", f"2 * {n} values")
    begins, ends = [0] * rank, [0] * rank
    for a, b, e in zip(axes, pads[:n], pads[n:]):
        begins[a], ends[a] = b, e
    return PadSpec(mode, begins, ends, value)


def softmax_axis(opset: int, attrs: dict, rank: int) -> tuple[int, bool]:
    """(axis, as_2d): before opset 13 Softmax flattens the input to 2-D at `axis` (default 1)
    and normalizes the second dimension (as_2d True); from 13 on it normalizes along `axis`
    (default -1)."""
    if opset < 13:
        return normalize_axis("Softmax", int(attrs.get("axis", 1)), rank), True
    return normalize_axis("Softmax", int(attrs.get("axis", -1)), rank), False


# -- axes of the layout ops, LRN's window -------------------------------------------------------------

def concat_axis(opset: int, attrs: dict, rank: int) -> int:
    """Concat's axis: 1 by default before opset 4, required from then on."""
    if "axis" not in attrs and opset >= 4:
        raise unsupported("Concat", "a node without axis", "axis is required from opset 4")
    return normalize_axis("Concat", int(attrs.get("axis", 1)), rank)


def flatten_axis(attrs: dict, rank: int) -> int:
    """Flatten's axis (default 1) in [0, rank]: the output is (prod(shape[:axis]), rest)."""
    axis = int(attrs.get("axis", 1))
    if not -rank <= axis <= rank:
        raise unsupported("Flatten", f"axis={axis} for a rank-{rank} input", f"-{rank} <= axis <= {rank}")
    return axis + rank if axis < 0 else axis


def transpose_perm(attrs: dict, rank: int) -> list[int]:
    """Transpose's permutation; absent means reversing the axes."""
    return int_list(attrs.get("perm")) or list(range(rank))[::-1]


class LRNWindow(NamedTuple):
    """LRN's parameters: the channel window [c - before, c + after] of `size` channels."""

    size: int
    alpha: float
    beta: float
    bias: float
    before: int
    after: int


def lrn_window(attrs: dict) -> LRNWindow:
    """LRN's size (required), alpha, beta, bias and window: floor((size-1)/2) channels before,
    ceil((size-1)/2) after."""
    if "size" not in attrs:
        raise unsupported("LRN", "a node without size", "size is required")
    size = int(attrs["size"])
    before = (size - 1) // 2
    return LRNWindow(size, float(attrs.get("alpha", 1e-4)), float(attrs.get("beta", 0.75)),
                     float(attrs.get("bias", 1.0)), before, size - 1 - before)


# -- Resize ------------------------------------------------------------------------------------------

COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
                    "asymmetric", "tf_crop_and_resize")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


class ResizeOperands(NamedTuple):
    """Resize's coordinate rule, rounding rule and optional roi/scales/sizes (None if absent)."""

    coordinate_mode: str
    nearest_mode: str
    roi: list[float] | None
    scales: list[float] | None
    sizes: list[int] | None


def resize_operands(opset: int, attrs: dict, inputs: Sequence) -> ResizeOperands:
    """Opset 10 Resize takes (X, scales) and resizes like its Upsample ancestor (asymmetric
    coordinates, floor rounding); from 11 on the inputs are (X, roi, scales, sizes) and the
    attributes choose the rules."""
    def given(i: int):
        value = inputs[i] if i < len(inputs) else None
        return value if is_given(value) else None

    if opset < 11:
        return ResizeOperands("asymmetric", "floor", None, float_list(given(1)), None)
    ctm = text(attrs.get("coordinate_transformation_mode"), "half_pixel")
    nearest = text(attrs.get("nearest_mode"), "round_prefer_floor")
    if ctm not in COORDINATE_MODES:
        raise unsupported("Resize", f"coordinate_transformation_mode={ctm!r}", ", ".join(COORDINATE_MODES))
    if nearest not in NEAREST_MODES:
        raise unsupported("Resize", f"nearest_mode={nearest!r}", ", ".join(NEAREST_MODES))
    return ResizeOperands(ctm, nearest, float_list(given(1)), float_list(given(2)), int_list(given(3)))


def resize_axes(attrs: dict, rank: int) -> list[int]:
    """The axes that scales/sizes refer to (the `axes` attribute, opset 18), all by default."""
    axes = int_list(attrs.get("axes"))
    return [normalize_axis("Resize", a, rank) for a in axes] if axes else list(range(rank))


def resize_shape(in_shape: Sequence[int], axes: Sequence[int], scales: Sequence[float] | None,
                 sizes: Sequence[int] | None, policy: str = "stretch") -> tuple[list[float], list[int]]:
    """(scale, output size) per axis of the input. sizes win over scales; with scales the
    output is floor(scale * size); keep_aspect_ratio_policy not_larger/not_smaller give the
    resized axes one common scale (the smallest/largest) and round their sizes."""
    rank = len(in_shape)
    scale, out = [1.0] * rank, [int(s) for s in in_shape]
    if sizes:
        if len(sizes) != len(axes):
            raise unsupported("Resize", f"{len(sizes)} sizes for {len(axes)} axes", "one size per axis")
        for a, s in zip(axes, sizes):
            out[a] = int(s)
            scale[a] = s / in_shape[a]
        if policy != "stretch":
            if policy not in ("not_larger", "not_smaller"):
                raise unsupported("Resize", f"keep_aspect_ratio_policy={policy!r}",
                                  "stretch, not_larger, not_smaller")
            common = (min if policy == "not_larger" else max)(scale[a] for a in axes)
            for a in axes:
                scale[a] = common
                out[a] = int(common * in_shape[a] + 0.5)
        return scale, out
    if scales:
        if len(scales) != len(axes):
            raise unsupported("Resize", f"{len(scales)} scales for {len(axes)} axes", "one scale per axis")
        for a, s in zip(axes, scales):
            scale[a] = float(s)
            out[a] = math.floor(s * in_shape[a])
        return scale, out
    raise unsupported("Resize", "a node with neither scales nor sizes", "a non-empty scales or sizes input")


def source_coordinates(mode: str, out_index, scale: float, in_size: int, out_size: int, roi=None):
    """Input coordinates of output positions `out_index` (a number or a float array, used
    elementwise) under a coordinate_transformation_mode; roi = (start, end) of the axis for
    tf_crop_and_resize (default the whole axis)."""
    y = out_index
    width = scale * in_size
    if mode == "align_corners":
        return y * 0.0 if width == 1 else y * (in_size - 1) / (width - 1)
    if mode == "asymmetric":
        return y / scale
    if mode == "pytorch_half_pixel":
        return y * 0.0 - 0.5 if width == 1 else (y + 0.5) / scale - 0.5
    if mode == "half_pixel":
        return (y + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        offset = in_size / 2 * (1 - out_size / width)
        return offset + (y + 0.5) / scale - 0.5
    if mode == "tf_crop_and_resize":
        lo, hi = roi if roi is not None else (0.0, 1.0)
        if width == 1:
            x = y * 0.0 + (hi - lo) * (in_size - 1) / 2
        else:
            x = y * (hi - lo) * (in_size - 1) / (width - 1)
        return x + lo * (in_size - 1)
    raise unsupported("Resize", f"coordinate_transformation_mode={mode!r}", ", ".join(COORDINATE_MODES))
