"""Shape and layout ops: Concat, Flatten, Reshape, Transpose, Identity, Unsqueeze, Squeeze, Pad.
Constant inputs (shape, axes, pads) are read as Python ints (they arrive on the host)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..kernel import TorchKernel
from ._util import floats, ints, norm_axis, text, torch_pads, unsupported


class Identity(TorchKernel):
    op_type = "Identity"

    def forward(self, ctx, inputs, attrs):
        return [inputs[0]]


class Concat(TorchKernel):
    op_type = "Concat"

    def forward(self, ctx, inputs, attrs):
        ts = [t for t in inputs if t is not None]
        if "axis" not in attrs and ctx.opset >= 4:
            raise unsupported("Concat", "a node without axis", "axis is required from opset 4")
        axis = norm_axis(int(attrs.get("axis", 1)), ts[0].dim(), "Concat")
        return [torch.cat(ts, dim=axis)]


class Flatten(TorchKernel):
    op_type = "Flatten"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        r = x.dim()
        axis = int(attrs.get("axis", 1))
        axis = axis + r if axis < 0 else axis
        if not 0 <= axis <= r:
            raise unsupported("Flatten", f"axis={attrs.get('axis')} for a rank-{r} input", f"-{r} <= axis <= {r}")
        shape = tuple(x.shape)
        return [x.reshape(math.prod(shape[:axis]), math.prod(shape[axis:]))]


class Reshape(TorchKernel):
    """opset < 5: `shape` attribute; later: input 1. 0 copies the input dimension unless
    allowzero=1 (opset 14); -1 is inferred."""

    op_type = "Reshape"
    host_inputs = (1,)

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        shape = ints(attrs.get("shape")) if ctx.opset < 5 else ints(inputs[1])
        if not int(attrs.get("allowzero", 0)):
            shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
        return [x.reshape(shape)]


class Transpose(TorchKernel):
    op_type = "Transpose"

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        perm = attrs.get("perm")
        perm = list(range(x.dim()))[::-1] if perm is None else [int(p) for p in perm]
        return [x.permute(perm)]


def _axes(ctx, inputs, attrs, since: int = 13):
    """Axes from the attribute (before `since`) or from input 1 (None when absent)."""
    if ctx.opset < since:
        return None if attrs.get("axes") is None else ints(attrs["axes"])
    if len(inputs) > 1 and inputs[1] is not None:
        return ints(inputs[1])
    return None


class Unsqueeze(TorchKernel):
    op_type = "Unsqueeze"
    host_inputs = (1,)

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        axes = _axes(ctx, inputs, attrs)
        if not axes:
            raise unsupported("Unsqueeze", "a node without axes", "axes is required")
        rank = x.dim() + len(axes)
        axes = sorted(norm_axis(a, rank, "Unsqueeze") for a in axes)
        shape = list(x.shape)
        for a in axes:
            shape.insert(a, 1)
        return [x.reshape(shape)]


class Squeeze(TorchKernel):
    op_type = "Squeeze"
    host_inputs = (1,)

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        axes = _axes(ctx, inputs, attrs)
        if axes is None:
            return [x.reshape([s for s in x.shape if s != 1])]
        axes = {norm_axis(a, x.dim(), "Squeeze") for a in axes}
        for a in axes:
            if x.shape[a] != 1:
                raise unsupported("Squeeze", f"axis {a} of size {x.shape[a]}", "axes of size 1")
        return [x.reshape([s for i, s in enumerate(x.shape) if i not in axes])]


def _index_pad(x, axis: int, begin: int, end: int, mode: str):
    """edge / reflect / wrap padding along one axis by gathering indices (any rank)."""
    size = x.shape[axis]
    idx = []
    for j in range(-begin, size + end):
        if mode == "edge":
            k = min(max(j, 0), size - 1)
        elif mode == "wrap":
            k = j % size
        else:  # reflect, without repeating the border
            if size == 1:
                k = 0
            else:
                period = 2 * (size - 1)
                k = j % period
                k = period - k if k >= size else k
        idx.append(k)
    return x.index_select(axis, torch.tensor(idx, dtype=torch.long, device=x.device))


class Pad(TorchKernel):
    """Modes constant, reflect, edge, wrap (opset 19); pads as attribute (opset < 11) or input 1,
    constant value as attribute `value` or input 2, `axes` input 3 (opset 18). Negative pads
    crop."""

    op_type = "Pad"
    host_inputs = (1, 2, 3)

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        r = x.dim()
        mode = text(attrs.get("mode", "constant"))
        if mode not in ("constant", "reflect", "edge", "wrap"):
            raise unsupported("Pad", f"mode={mode!r}", "constant, reflect, edge, wrap")
        if ctx.opset < 11:
            pads = ints(attrs.get("pads", attrs.get("paddings")))
            value = float(attrs.get("value", 0.0))
            axes = list(range(r))
        else:
            pads = ints(inputs[1])
            cv = inputs[2] if len(inputs) > 2 else None
            value = floats(cv)[0] if cv is not None and cv.numel() else 0.0
            axes_in = inputs[3] if len(inputs) > 3 else None
            axes = [norm_axis(a, r, "Pad") for a in ints(axes_in)] if axes_in is not None else list(range(r))
        n = len(axes)
        if len(pads) != 2 * n:
            raise unsupported("Pad", f"{len(pads)} pad values for {n} axes", f"2 * {n} values")
        begins, ends = [0] * r, [0] * r
        for a, b, e in zip(axes, pads[:n], pads[n:]):
            begins[a], ends[a] = b, e
        if mode == "constant":
            if not any(begins) and not any(ends):
                return [x]
            return [F.pad(x, torch_pads(begins, ends), value=value)]
        for a in range(r):  # crop first, then pad by gathering
            b, e = begins[a], ends[a]
            if b < 0 or e < 0:
                start, stop = max(-b, 0), x.shape[a] - max(-e, 0)
                x = x.narrow(a, start, stop - start)
            if b > 0 or e > 0:
                x = _index_pad(x, a, max(b, 0), max(e, 0), mode)
        return [x]
