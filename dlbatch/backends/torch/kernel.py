"""The shape of a torch kernel: the forward of one ONNX op in torch functions; autograd derives
backward. This module does not import torch, so a plugin can subclass `TorchKernel` at load
time without making `import dlbatch` pay for torch.
"""
from __future__ import annotations

import importlib
from typing import Any

from ...core.backend import OpContext


class TorchOpContext(OpContext):
    """OpContext plus what a torch kernel may need: the number of outputs the node names (so
    optional outputs such as Dropout's mask are only computed when used), the device and the
    backend's random generator for that device (`rng`, a `torch.Generator`).

    `plan` is a dict that lives as long as the compiled node (None outside a program): a kernel
    may keep there what it derives from its attributes and input shapes (padding, strides), so
    that a program run again on the same shapes repeats no attribute parsing."""

    def __init__(self, *, training: bool, bn_momentum: float, opset: int, num_outputs: int,
                 device: Any, rng: Any = None, plan: dict | None = None) -> None:
        super().__init__(training=training, bn_momentum=bn_momentum, opset=opset, rng=rng)
        self.num_outputs = num_outputs
        self.device = device
        self.plan = plan


class TorchKernel:
    """Subclass, set `op_type`, implement `forward`.

    forward(ctx, inputs, attrs) -> list of torch tensors, one per node output (trailing
    optional outputs may be left out). `inputs` are tensors (None for an omitted optional
    input); `attrs` the node's ONNX attributes as given (apply ONNX defaults yourself, and
    check `ctx.opset` where an attribute moved to an input). Never modify an input in place.

    `host_inputs` lists input positions that are read as Python numbers (Reshape's shape,
    Pad's pads, axes, ...): the program hands those over as CPU tensors, cached for graph
    constants, so reading them costs no device synchronisation.
    A training forward of a batch-norm-like op reports new running statistics with
    `ctx.update_statistic(input_index, tensor)` (new tensors, never the inputs modified).
    """

    op_type: str = ""
    host_inputs: tuple[int, ...] = ()

    def forward(self, ctx: TorchOpContext, inputs: list, attrs: dict[str, Any]) -> list:
        raise NotImplementedError

    def resolve(self) -> "TorchKernel":
        """The kernel that actually runs (a lazy handle returns the loaded kernel)."""
        return self


class LazyTorchKernel(TorchKernel):
    """A registration handle: `module:attribute` names a TorchKernel class (or instance) that is
    imported only when a program is compiled, so registering ops imports no torch."""

    def __init__(self, op_type: str, target: str) -> None:
        self.op_type = op_type
        self.target = target
        self._loaded: TorchKernel | None = None

    def resolve(self) -> TorchKernel:
        if self._loaded is None:
            module_name, _, attr = self.target.partition(":")
            obj = getattr(importlib.import_module(module_name), attr)
            self._loaded = obj() if isinstance(obj, type) else obj
            self.host_inputs = self._loaded.host_inputs
        return self._loaded

    def forward(self, ctx, inputs, attrs):
        return self.resolve().forward(ctx, inputs, attrs)

    def __repr__(self) -> str:
        return f"LazyTorchKernel({self.op_type!r}, {self.target!r})"
