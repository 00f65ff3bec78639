"""Dropout. Active in training forwards only (the model's mode decides, not a graph's
`training_mode` constant); masks come from the backend's own torch generator, seeded per step.
opset < 12: `ratio` attribute (default 0.5); from 12 on: optional input 1."""
from __future__ import annotations

import torch

from ..kernel import TorchKernel
from ._util import floats


class Dropout(TorchKernel):
    op_type = "Dropout"
    host_inputs = (1, 2)

    def forward(self, ctx, inputs, attrs):
        x = inputs[0]
        if ctx.opset >= 12:
            r = inputs[1] if len(inputs) > 1 else None
            ratio = floats(r)[0] if r is not None and r.numel() else 0.5
        else:
            ratio = float(attrs.get("ratio", 0.5))
        want_mask = ctx.num_outputs > 1
        if not ctx.training or ratio == 0.0:
            return [x, torch.ones(x.shape, dtype=torch.bool, device=x.device)] if want_mask else [x]
        if ratio >= 1.0:
            y = torch.zeros_like(x)
            return [y, torch.zeros(x.shape, dtype=torch.bool, device=x.device)] if want_mask else [y]
        keep = torch.empty(x.shape, dtype=x.dtype, device=x.device).bernoulli_(1.0 - ratio, generator=ctx.rng)
        y = x * keep * (1.0 / (1.0 - ratio))
        return [y, keep.bool()] if want_mask else [y]
