"""Conv and ConvTranspose (1-3 spatial axes; strides, pads, dilations, group, auto_pad,
output_padding, output_shape)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..kernel import TorchKernel
from ._util import spatial_pads, text, torch_pads, unsupported

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _spatial(op: str, x) -> int:
    n = x.dim() - 2
    if n not in _CONV:
        raise unsupported(op, f"a rank-{x.dim()} input", "rank 3, 4 or 5 (N, C, 1 to 3 spatial axes)")
    return n


class Conv(TorchKernel):
    op_type = "Conv"

    def forward(self, ctx, inputs, attrs):
        x, w = inputs[0], inputs[1]
        b = inputs[2] if len(inputs) > 2 else None
        n = _spatial("Conv", x)
        kernel = tuple(w.shape[2:])
        strides = tuple(attrs.get("strides", (1,) * n))
        dilations = tuple(attrs.get("dilations", (1,) * n))
        group = int(attrs.get("group", 1))
        begins, ends = spatial_pads("Conv", attrs, x.shape[2:], kernel, strides, dilations)
        if begins == ends:
            padding = tuple(begins)
        else:
            x = F.pad(x, torch_pads(begins, ends))
            padding = 0
        return [_CONV[n](x, w, b, strides, padding, dilations, group)]


class ConvTranspose(TorchKernel):
    op_type = "ConvTranspose"

    def forward(self, ctx, inputs, attrs):
        x, w = inputs[0], inputs[1]
        b = inputs[2] if len(inputs) > 2 else None
        n = _spatial("ConvTranspose", x)
        kernel = tuple(w.shape[2:])
        strides = tuple(attrs.get("strides", (1,) * n))
        dilations = tuple(attrs.get("dilations", (1,) * n))
        group = int(attrs.get("group", 1))
        out_pad = list(attrs.get("output_padding", (0,) * n))[-n:]
        auto_pad = text(attrs.get("auto_pad", "NOTSET"))
        in_sp = x.shape[2:]
        full = [s * (i - 1) + (k - 1) * d + 1 for i, k, s, d in zip(in_sp, kernel, strides, dilations)]
        output_shape = attrs.get("output_shape")
        if output_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            target = list(output_shape)[-n:] if output_shape is not None else [i * s for i, s in zip(in_sp, strides)]
            begins, ends = [], []
            for f, op, t in zip(full, out_pad, target):
                total = f + op - t
                small = total // 2
                begin = small if auto_pad == "SAME_UPPER" else total - small
                begins.append(begin)
                ends.append(total - begin)
        elif auto_pad in ("NOTSET", "", "VALID"):
            pads = list(attrs.get("pads", (0,) * (2 * n))) if auto_pad != "VALID" else [0] * (2 * n)
            begins, ends = pads[:n], pads[n:]
        else:
            raise unsupported("ConvTranspose", f"auto_pad={auto_pad!r}", "NOTSET, VALID, SAME_UPPER, SAME_LOWER")
        simple = (begins == ends and min(begins, default=0) >= 0
                  and all(op < max(s, d) for op, s, d in zip(out_pad, strides, dilations)))
        if simple:
            return [_CONV_T[n](x, w, b, strides, tuple(begins), tuple(out_pad), group, dilations)]
        y = _CONV_T[n](x, w, None, strides, 0, 0, group, dilations)
        y = F.pad(y, torch_pads([-p for p in begins], [op - e for op, e in zip(out_pad, ends)]))
        if b is not None:
            y = y + b.reshape((1, -1) + (1,) * n)
        return [y]
