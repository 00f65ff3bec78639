"""Where a 2-D convolution's kernel sits: kernel size, strides, dilations, pads, output size and
padded extent (Geom), from the ONNX attributes as core.onnx_attributes reads them."""
from __future__ import annotations

from .....core.onnx_attributes import conv_kernel_shape, sliding_windows, spatial_ints
from .._util import unsupported


class Geom:
    """Per spatial axis (H, W): kernel k, strides s, dilations d, pads before/after pb/pe, output
    size out; hp/wp: the padded extent the taps read (or, for ConvTranspose, scatter into)."""

    __slots__ = ("k", "s", "d", "pb", "pe", "out", "hp", "wp")


def kernel_geom(op, attrs, w_shape) -> Geom:
    """Kernel size (must match the weight), strides and dilations: shared by Conv and
    ConvTranspose."""
    g = Geom()
    g.k = conv_kernel_shape(op, attrs, w_shape[2:])
    g.s = spatial_ints(op, attrs, "strides", 2, 1)
    g.d = spatial_ints(op, attrs, "dilations", 2, 1)
    return g


def conv_geom(op, attrs, x_shape, w_shape) -> Geom:
    """A Conv's geometry for an (N, C, H, W) input; the numpy kernels need non-negative pads."""
    g = kernel_geom(op, attrs, w_shape)
    g.pb, g.pe, g.out = sliding_windows(op, attrs, x_shape[2:], g.k, g.s, g.d)
    if min(g.pb + g.pe) < 0:
        raise unsupported(op, "pads", g.pb + g.pe, "non-negative pads")
    g.hp = x_shape[2] + g.pb[0] + g.pe[0]
    g.wp = x_shape[3] + g.pb[1] + g.pe[1]
    return g


def is_pointwise(g: Geom) -> bool:
    """1x1, stride 1, no padding: the input itself is the column matrix."""
    return g.k == [1, 1] and g.s == [1, 1] and max(g.pb + g.pe) == 0


def transposed_geom(g: Geom, x_shape) -> Geom | None:
    """For a stride-1 Conv, the geometry of the convolution that maps dy to dx (flipped
    kernel, complementary padding), or None where that padding would be negative."""
    if g.s != [1, 1]:
        return None
    t = Geom()
    t.k, t.s, t.d = list(g.k), [1, 1], list(g.d)
    t.pb = [(g.k[i] - 1) * g.d[i] - g.pb[i] for i in range(2)]
    t.pe = [(g.k[i] - 1) * g.d[i] - g.pe[i] for i in range(2)]
    if min(t.pb + t.pe) < 0:
        return None
    t.out = [x_shape[2], x_shape[3]]
    t.hp = g.out[0] + t.pb[0] + t.pe[0]
    t.wp = g.out[1] + t.pb[1] + t.pe[1]
    return t
