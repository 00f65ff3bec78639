"""Pointwise math: Erf, Gelu (opset 20; approximate none/tanh), Pow, Sqrt, Exp, Log, Neg,
Abs, Reciprocal. Autograd derives every backward, including Pow's exponent gradient when the
exponent is trainable."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ....core.onnx_attributes import text, unsupported
from ..kernel import TorchKernel


class Erf(TorchKernel):
    op_type = "Erf"

    def forward(self, ctx, inputs, attrs):
        return [torch.erf(inputs[0])]


class Gelu(TorchKernel):
    op_type = "Gelu"

    def forward(self, ctx, inputs, attrs):
        mode = text(attrs.get("approximate"), "none")
        if mode not in ("none", "tanh"):
            raise unsupported("Gelu", f"approximate={mode!r}", "'none', 'tanh'")
        return [F.gelu(inputs[0], approximate=mode)]


class Pow(TorchKernel):
    """The output has the base's type (ONNX), whatever the exponent's type."""

    op_type = "Pow"

    def forward(self, ctx, inputs, attrs):
        a, b = inputs
        y = torch.pow(a, b)
        return [y if y.dtype == a.dtype else y.to(a.dtype)]


def _unary(name, fn):
    cls = type(name, (TorchKernel,), {"op_type": name, "forward": lambda self, ctx, inputs, attrs: [fn(inputs[0])]})
    cls.__doc__ = f"{name}: {fn.__name__} elementwise."
    return cls


Sqrt = _unary("Sqrt", torch.sqrt)
Exp = _unary("Exp", torch.exp)
Log = _unary("Log", torch.log)
Neg = _unary("Neg", torch.neg)
Abs = _unary("Abs", torch.abs)
Reciprocal = _unary("Reciprocal", torch.reciprocal)
