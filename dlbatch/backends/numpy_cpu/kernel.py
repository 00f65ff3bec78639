"""The shape of a numpy kernel: forward and backward of one ONNX op, side by side.

Arrays are *logically* NCHW (ONNX semantics) but may be *physically* channel-major
(C, N, H, W) in memory: spatial kernels compute in `x.transpose(1, 0, 2, 3)` (free when the
memory is channel-major) and return `y_cnhw.transpose(1, 0, 2, 3)`. Elementwise numpy ufuncs keep
that memory order (order='K'), so the layout flows through the network without copies, while
every kernel still accepts and returns ordinary NCHW arrays of any strides.

Speed (optional for a kernel): split the work with `parallel.run` over chunks that depend on
the shapes only (results must not depend on the thread count), take temporaries of those tasks
from `ops._util.scratch` (no allocations inside worker threads) and large outputs from
`buffers.empty` (recycled across steps while a program runs).
"""
from __future__ import annotations

from typing import Any

from ...core.backend import OpContext


class NumpyKernel:
    """Subclass, set `op_type`, implement `forward` and `backward`.

    forward(ctx, inputs, attrs) -> (outputs, saved): `inputs` are numpy arrays (None for an
    omitted optional input), `attrs` the node's ONNX attributes (absent ones take the ONNX
    default). `saved` is whatever backward needs; keep it small.

    backward(ctx, saved, grads, attrs) -> list with one entry per input: the gradient of the
    loss w.r.t. that input, or None where `ctx.needs_input_grad[i]` is False or the input is
    not differentiable. `grads` has one entry per output (None for an output nobody used).
    Gradients have the dtype of the input and its logical shape.
    """

    op_type: str = ""

    def forward(self, ctx: OpContext, inputs: list, attrs: dict[str, Any]):
        """Compute the op's outputs.

        Args:
            ctx: the node's context (name, training flag, which inputs need gradients).
            inputs: numpy arrays, None for an omitted optional input.
            attrs: the node's ONNX attributes (absent ones take the ONNX default).

        Returns:
            `(outputs, saved)`: a list with one array per output, and whatever `backward`
            needs (keep it small).
        """
        raise NotImplementedError

    def backward(self, ctx: OpContext, saved: Any, grads: list, attrs: dict[str, Any]) -> list:
        """Gradients of the loss with respect to the inputs.

        Args:
            ctx: the node's context; `ctx.needs_input_grad[i]` says whether input i needs one.
            saved: what `forward` saved.
            grads: one gradient per output (None for an output nobody used).
            attrs: the node's ONNX attributes.

        Returns:
            One entry per input: its gradient (the input's dtype and logical shape), or None
            where it is not needed or the input is not differentiable.
        """
        raise NotImplementedError(f"{self.op_type} has no backward on the numpy backend")
