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

The rules are split by concern, and every name is re-exported here, so callers import from
the package: values.py (reading attribute values and axes), windows.py (kernel, strides, pads,
auto_pad and ceil_mode window geometry, ConvTranspose's included), operands.py (operands that
moved from attributes to inputs across opsets, and Softmax's axis), layout.py (Concat/Flatten
axes, Transpose's perm, LRN's window) and resize.py (Resize and Upsample).
"""
from __future__ import annotations

from .layout import LRNWindow, concat_axis, flatten_axis, lrn_window, transpose_perm
from .operands import (MOVED_TO_INPUT, PAD_MODES, PadSpec, clip_bounds, dropout_ratio, operand, pad_spec,
                       reduce_axes, reshape_target, softmax_axis, squeeze_axes, unsqueeze_axes)
from .resize import (COORDINATE_MODES, NEAREST_MODES, ResizeOperands, resize_axes, resize_operands,
                     resize_shape, source_coordinates)
from .values import float_list, int_list, is_given, normalize_axis, text, unsupported
from .windows import (AUTO_PAD_MODES, TransposedWindows, Windows, auto_pad, conv_kernel_shape,
                      conv_transpose_windows, effective_kernel, explicit_pads, pool_kernel_shape,
                      sliding_windows, spatial_ints, split_padding, window_count)

__all__ = [
    # values
    "unsupported", "text", "int_list", "float_list", "is_given", "normalize_axis",
    # windows
    "AUTO_PAD_MODES", "spatial_ints", "conv_kernel_shape", "pool_kernel_shape", "effective_kernel",
    "auto_pad", "explicit_pads", "split_padding", "window_count", "Windows", "sliding_windows",
    "TransposedWindows", "conv_transpose_windows",
    # operands
    "PAD_MODES", "MOVED_TO_INPUT", "operand", "clip_bounds", "dropout_ratio", "reshape_target",
    "squeeze_axes", "unsqueeze_axes", "reduce_axes", "PadSpec", "pad_spec", "softmax_axis",
    # layout
    "concat_axis", "flatten_axis", "transpose_perm", "LRNWindow", "lrn_window",
    # resize
    "COORDINATE_MODES", "NEAREST_MODES", "ResizeOperands", "resize_operands", "resize_axes",
    "resize_shape", "source_coordinates",
]
