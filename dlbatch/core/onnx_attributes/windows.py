"""Window geometry of Conv, ConvTranspose and the pools: per-spatial-axis ints (strides,
dilations, output_padding), the kernel size (the weight's spatial shape for Conv/ConvTranspose,
the required kernel_shape for pools), dilated kernel extents, auto_pad and the pads attribute,
how SAME_* splits odd padding, and how many windows slide along an axis (ceil_mode included).
`sliding_windows` gives Conv's and the pools' pads and output sizes; `conv_transpose_windows`
gives ConvTranspose's crop of its full output, from output_shape, SAME_*, pads or VALID.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

from ..errors import DLPluginError
from .values import int_list, text, unsupported

AUTO_PAD_MODES = ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")


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
