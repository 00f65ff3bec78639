"""Training batch norm of channels_last CPU tensors whose channel count is not a multiple of
the vector width, through a widened channel view.

Why: torch's channels_last CPU batch-norm kernels vectorise across the channels; with C not a
multiple of 16 floats (8, 12, 24, 40, ...) they fall back to scalar loops and the forward plus
backward took 3-7x as long as the same work in NCHW (C=8, 16x8x128x128: 22 ms against 3.5 ms on
2 threads), which made narrow networks slower in channels_last than in NCHW although their
convolutions are 2-3x faster in channels_last.

How: the N*H*W x C rows of a channels_last tensor are the same memory as N*H*W/R rows of R*C
"wide channels" (R = 16 / gcd(C, 16)), a plain 2-D batch-norm input whose width is a multiple of
16. torch's fast kernels compute each wide channel's statistics, sums and affine maps, and the R
wide channels of one real channel are combined exactly (equal counts: the mean of the means; the
mean of the variances plus the variance of the means). The backward is the usual one,
dx = w/s * (dy - mean(dy) - xhat * mean(dy * xhat)), written as dy * a + x * b + c per channel.
"""
from __future__ import annotations

import math

import torch

LANES = 16  # floats per 64-byte vector (AVX-512; a multiple of AVX2's 8 and NEON's 4)


def widening(x: torch.Tensor) -> int:
    """R for x (wide channels = R * C), or 0 where torch's own kernel is the right one: not a
    4-D channels_last float CPU tensor, C already a multiple of LANES, or N*H*W not divisible by R."""
    if x.dim() != 4 or x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return 0
    c = x.shape[1]
    if c % LANES == 0 or not x.is_contiguous(memory_format=torch.channels_last) or x.is_contiguous():
        return 0
    r = LANES // math.gcd(c, LANES)
    return r if (x.numel() // c) % r == 0 else 0


def _rows(t: torch.Tensor, r: int) -> torch.Tensor:
    """The channels_last tensor t as (N*H*W/r, r*C) rows (a view)."""
    c = t.shape[1]
    return t.permute(0, 2, 3, 1).reshape(-1, r * c)


def _tile(t: torch.Tensor, r: int) -> torch.Tensor:
    """The per-channel vector t repeated for the r wide channels (cat: ~1 us, repeat: ~10 us)."""
    return torch.cat([t] * r)


class WideBatchNorm(torch.autograd.Function):
    """(y, batch mean, biased batch variance) of x normalised per channel; see the module."""

    @staticmethod
    def forward(fctx, x, weight, bias, eps: float, r: int):
        c = x.shape[1]
        xw = _rows(x, r)
        wide_mean, wide_var = torch.batch_norm_update_stats(xw, None, None, 0.0)
        wide_mean, wide_var = wide_mean.view(r, c), wide_var.view(r, c)
        mean = wide_mean.mean(0)
        var = wide_var.mean(0) + (wide_mean - mean).square().mean(0)
        weight_t, mean_t, var_t = _tile(weight, r), _tile(mean, r), _tile(var, r)
        yw = torch.batch_norm(xw, weight_t, _tile(bias, r), mean_t, var_t, False, 0.0, eps, False)
        fctx.save_for_backward(xw, weight_t, mean_t, torch.rsqrt(var_t + eps))
        fctx.r, fctx.eps = r, eps
        fctx.mark_non_differentiable(mean, var)
        n, _, h, w = x.shape
        return yw.view(n, h, w, c).permute(0, 3, 1, 2), mean, var

    @staticmethod
    def backward(fctx, dy, _mean_grad, _var_grad):
        xw, weight_t, mean_t, invstd_t = fctx.saved_tensors
        r = fctx.r
        n, c, h, w = dy.shape
        dyw = _rows(dy.contiguous(memory_format=torch.channels_last), r)
        # per wide channel: sum(dy * xhat) and sum(dy), xhat with the real channel's statistics
        _, wide_dyx, wide_dy = torch.ops.aten.native_batch_norm_backward(
            dyw, xw, weight_t, None, None, mean_t, invstd_t, True, fctx.eps, [False, True, True])
        sum_dy_xhat, sum_dy = wide_dyx.view(r, c).sum(0), wide_dy.view(r, c).sum(0)
        count = xw.numel() // c
        weight, mean, invstd = weight_t[:c], mean_t[:c], invstd_t[:c]
        a = weight * invstd
        b = -a * invstd * sum_dy_xhat / count
        shift = -a * sum_dy / count - b * mean
        dxw = torch.addcmul(torch.addcmul(_tile(shift, r), xw, _tile(b, r)), dyw, _tile(a, r))
        dx = dxw.view(n, h, w, c).permute(0, 3, 1, 2)
        return dx, sum_dy_xhat, sum_dy, None, None


def wide_batch_norm(x, weight, bias, eps: float, r: int):
    """(y, batch mean, biased batch variance) through WideBatchNorm; r from widening(x)."""
    return WideBatchNorm.apply(x, weight.to(x.dtype), bias.to(x.dtype), eps, r)
