"""BatchNormalization. Training: batch mean and biased variance normalize; the running
statistics become m * running + (1 - m) * batch (m = ctx.bn_momentum, unbiased batch variance,
SPEC section 1.5), computed into new tensors and reported with ctx.update_statistic.

Data-parallel with `batchnorm_sync` (ctx.collective set, core/collective.py) the batch mean and
variance are those of every rank's samples (SyncBatchNorm): the per-channel sums and sums of
squared deviations go through a differentiable all-reduce (its backward all-reduces their
gradients), so autograd yields the SyncBatchNorm backward; the scale and bias
gradients are this rank's share (the train step sums them over the ranks)."""
from __future__ import annotations

import torch.nn.functional as F

from ..kernel import TorchKernel
from ._util import unsupported
from .batchnorm_lanes import wide_batch_norm, widening


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
        if ctx.collective is not None:
            return self._synced(ctx, x, scale, bias, mean, var, eps)
        r = widening(x)
        if r:  # channels_last with C not a multiple of the vector width: see batchnorm_lanes
            return self._wide(ctx, x, scale, bias, mean, var, eps, r)
        # torch's fused kernel updates the (cloned) running buffers with the unbiased variance:
        # new = (1 - p) * running + p * batch, so p = 1 - m
        new_mean, new_var = mean.detach().clone(), var.detach().clone()
        y = F.batch_norm(x, new_mean, new_var, scale, bias, True, 1.0 - float(ctx.bn_momentum), eps)
        ctx.update_statistic(3, new_mean)
        ctx.update_statistic(4, new_var)
        return [y, new_mean, new_var][:max(1, ctx.num_outputs)]

    @staticmethod
    def _wide(ctx, x, scale, bias, mean, var, eps, r):
        """Training forward through the widened channel view, with the same running-statistics
        update as torch's fused kernel (unbiased batch variance)."""
        y, batch_mean, batch_var = wide_batch_norm(x, scale, bias, eps, r)
        count = x.numel() // x.shape[1]
        m = float(ctx.bn_momentum)
        new_mean = (m * mean.detach() + (1.0 - m) * batch_mean.to(mean.dtype))
        new_var = (m * var.detach() + (1.0 - m) * (batch_var * (count / (count - 1))).to(var.dtype))
        ctx.update_statistic(3, new_mean)
        ctx.update_statistic(4, new_var)
        return [y, new_mean, new_var][:max(1, ctx.num_outputs)]

    @staticmethod
    def _synced(ctx, x, scale, bias, mean, var, eps):
        """Training forward over every rank's samples (two passes, one all-reduce each)."""
        import torch

        coll = ctx.collective
        if x.dtype in (torch.float16, torch.bfloat16):  # statistics in float32, as autocast does
            x = x.float()
        dims = [0] + list(range(2, x.dim()))
        view = [1, x.shape[1]] + [1] * (x.dim() - 2)
        total = coll.all_reduce_floats([x.numel() // x.shape[1]])[0]
        reduce = _all_reduce_function(coll)
        gmean = reduce(x.sum(dims)) / total
        centered = x - gmean.view(view)
        gvar = reduce((centered * centered).sum(dims)) / total
        k = scale.to(x.dtype) * torch.rsqrt(gvar + eps)
        y = centered * k.view(view) + bias.to(x.dtype).view(view)
        m = float(ctx.bn_momentum)
        unbiased = gvar.detach() * (total / max(total - 1.0, 1.0))
        new_mean = (m * mean + (1.0 - m) * gmean.detach().to(mean.dtype)).to(mean.dtype)
        new_var = (m * var + (1.0 - m) * unbiased.to(var.dtype)).to(var.dtype)
        ctx.update_statistic(3, new_mean)
        ctx.update_statistic(4, new_var)
        return [y, new_mean, new_var][:max(1, ctx.num_outputs)]


def _all_reduce_function(coll):
    """A differentiable sum over the ranks of `coll`: its backward sums the gradients over the
    ranks (every rank's loss depends on the sum), through the same Collective, so a failure is
    the Collective's DLError."""
    import torch

    class AllReduceSum(torch.autograd.Function):
        @staticmethod
        def forward(fctx, t):
            return coll.all_reduce_sum([t.contiguous()])[0]

        @staticmethod
        def backward(fctx, g):
            return coll.all_reduce_sum([g.contiguous()])[0]

    return AllReduceSum.apply
