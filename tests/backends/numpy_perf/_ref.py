"""Shared checks for the re-planned numpy kernels: torch autograd in float64 as the reference,
and bit-identical results at 1, 2 and 3 kernel threads."""
from __future__ import annotations

import numpy as np

from dlbatch.backends.numpy_cpu import parallel
from dlbatch.backends.numpy_cpu.ops import KERNELS
from dlbatch.core.backend import OpContext

KERNEL = {k.op_type: k for k in KERNELS}


def channel_major(x: np.ndarray) -> np.ndarray:
    """The same logical (N, C, ...) array with channel-major memory (the backend's layout)."""
    return np.ascontiguousarray(x.swapaxes(0, 1)).swapaxes(0, 1)


def forward_backward(op: str, inputs, attrs, dy_seed: int = 1):
    """(outputs, input gradients for a random dy) of a numpy kernel in training mode."""
    ctx = OpContext(training=True, needs_input_grad=tuple(
        v is not None and np.issubdtype(v.dtype, np.floating) for v in inputs), rng=np.random.default_rng(0))
    outs, saved = KERNEL[op].forward(ctx, [channel_major(v) if v.ndim == 4 else v for v in inputs], dict(attrs))
    dy = np.random.default_rng(dy_seed).standard_normal(outs[0].shape).astype(outs[0].dtype)
    grads = KERNEL[op].backward(ctx, saved, [channel_major(dy)], dict(attrs))
    return [np.array(o) for o in outs], [None if g is None else np.array(g) for g in grads], dy


def at_threads(n: int, fn):
    before = parallel.num_threads()
    parallel.set_num_threads(n)
    try:
        return fn()
    finally:
        parallel.set_num_threads(before)


def assert_same_bits_at_1_2_3_threads(fn):
    """fn() -> list of arrays; the results must be bit-identical at every thread count."""
    ref = at_threads(1, fn)
    for n in (2, 3):
        got = at_threads(n, fn)
        for a, b in zip(ref, got):
            if a is None:
                assert b is None
            else:
                assert a.dtype == b.dtype and np.array_equal(a.view(np.uint8), b.view(np.uint8)), n


def assert_matches_torch(outs, grads, y, leaves) -> None:
    """A Conv kernel's output and input gradients against torch autograd in float64: `y` the torch
    output (its backward already run), `leaves` the torch inputs in the kernel's input order (None
    for an absent bias)."""
    np.testing.assert_allclose(outs[0], y.detach().numpy(), rtol=1e-12, atol=1e-12)
    for i, leaf in enumerate(leaves):
        if leaf is not None:
            np.testing.assert_allclose(grads[i], leaf.grad.numpy(), rtol=1e-12, atol=1e-12 if i == 0 else 1e-11)
