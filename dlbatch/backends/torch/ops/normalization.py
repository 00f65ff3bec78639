"""LayerNormalization and InstanceNormalization as torch's layer_norm and instance_norm
(autograd derives backward; both compute half-precision statistics in float32)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ....core.errors import DLPluginError
from ....core.onnx_attributes.normalization import instance_norm_epsilon, layer_norm_spec
from ..kernel import TorchKernel


class LayerNormalization(TorchKernel):
    """Y over axes axis..rank-1; a Scale/B of exactly the normalised shape goes to layer_norm
    as its affine parameters, a broadcastable one is applied after it. Mean and InvStdDev are
    computed only when the node names them."""

    op_type = "LayerNormalization"

    def forward(self, ctx, inputs, attrs):
        x, scale = inputs[0], inputs[1]
        bias = inputs[2] if len(inputs) > 2 else None
        axis, eps = layer_norm_spec(attrs, x.dim())
        norm_shape = tuple(x.shape[axis:])
        if tuple(scale.shape) == norm_shape and (bias is None or tuple(bias.shape) == norm_shape):
            y = F.layer_norm(x, norm_shape, scale, bias, eps)
        else:
            y = F.layer_norm(x, norm_shape, None, None, eps) * scale
            if bias is not None:
                y = y + bias
        if ctx.num_outputs <= 1:
            return [y]
        dims = tuple(range(axis, x.dim()))
        xs = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        var, mean = torch.var_mean(xs, dim=dims, keepdim=True, correction=0)
        return [y, mean.to(x.dtype), torch.rsqrt(var + eps).to(x.dtype)]


class InstanceNormalization(TorchKernel):
    op_type = "InstanceNormalization"

    def forward(self, ctx, inputs, attrs):
        x, scale, bias = inputs[0], inputs[1], inputs[2]
        eps = instance_norm_epsilon(attrs, x.dim())
        c = x.shape[1]
        if tuple(scale.shape) != (c,) or tuple(bias.shape) != (c,):
            raise DLPluginError(f"InstanceNormalization: scale {tuple(scale.shape)} and B {tuple(bias.shape)} "
                                f"must both have shape ({c},), one value per channel of the input "
                                f"{tuple(x.shape)}")
        return [F.instance_norm(x, weight=scale, bias=bias, eps=eps)]
