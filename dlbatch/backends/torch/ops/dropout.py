"""Dropout. Active in training forwards only (the model's mode decides, not a graph's
`training_mode` constant); masks come from the backend's own torch generator, seeded per step.
opset < 12: `ratio` attribute (default 0.5); from 12 on: optional input 1."""
from __future__ import annotations

import torch

from ....core.onnx_attributes import dropout_ratio
from ..kernel import TorchKernel


class Dropout(TorchKernel):
    op_type = "Dropout"
    host_inputs = (1, 2)

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        ratio = dropout_ratio(ctx.opset, attrs, inputs)
        want_mask = ctx.num_outputs > 1
        if not ctx.training or ratio == 0.0:
            return [x, torch.ones(x.shape, dtype=torch.bool, device=x.device)] if want_mask else [x]
        if ratio >= 1.0:
            y = torch.zeros_like(x)
            return [y, torch.zeros(x.shape, dtype=torch.bool, device=x.device)] if want_mask else [y]
        keep = torch.empty(x.shape, dtype=x.dtype, device=x.device).bernoulli_(1.0 - ratio, generator=ctx.rng)
        y = x * keep * (1.0 / (1.0 - ratio))
        return [y, keep.bool()] if want_mask else [y]
