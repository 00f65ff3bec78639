"""BatchNormalization. Training: batch mean and biased variance normalize; the running
statistics become m * running + (1 - m) * batch (m = ctx.bn_momentum, unbiased batch variance,
SPEC section 1.5), computed into new tensors and reported with ctx.update_statistic."""
from __future__ import annotations

import torch.nn.functional as F

from ..kernel import TorchKernel
from ._util import unsupported


class BatchNormalization(TorchKernel):
    op_type = "BatchNormalization"

    def forward(self, ctx, inputs, attrs):
        x, scale, bias, mean, var = inputs[:5]
        eps = float(attrs.get("epsilon", 1e-5))
        if ctx.opset < 9 and int(attrs.get("spatial", 1)) != 1:
            raise unsupported("BatchNormalization", "spatial=0", "spatial=1 (per-channel statistics)")
        if x.dim() < 2:
            raise unsupported("BatchNormalization", f"a rank-{x.dim()} input", "rank >= 2 (N, C, ...)")
        if not ctx.training:
            return [F.batch_norm(x, mean, var, scale, bias, False, 0.0, eps)]
        # torch's fused kernel updates the (cloned) running buffers with the unbiased variance:
        # new = (1 - p) * running + p * batch, so p = 1 - m
        new_mean, new_var = mean.detach().clone(), var.detach().clone()
        y = F.batch_norm(x, new_mean, new_var, scale, bias, True, 1.0 - float(ctx.bn_momentum), eps)
        ctx.update_statistic(3, new_mean)
        ctx.update_statistic(4, new_var)
        return [y, new_mean, new_var][:max(1, ctx.num_outputs)]
