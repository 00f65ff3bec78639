"""The torch backend's batched finiteness check (one _foreach_norm per device and type, one host
read): every NaN / inf is found in any tensor of any floating type, finite tensors whose squared
norm overflows still pass (the element-wise fallback), and integers and empty tensors are
ignored; compared against numpy's isfinite on each tensor."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dlbatch.backends.torch.backend import TorchBackend  # noqa: E402


def _tensors():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(3, 4, generator=g), torch.randn(5, generator=g, dtype=torch.float64),
            torch.randn(2, 3, 3, 3, generator=g).contiguous(memory_format=torch.channels_last),
            torch.tensor([3e38, -3e38, 1e30]),  # finite, but the sum of squares overflows
            torch.tensor([6e4, -6e4], dtype=torch.float16), torch.tensor([1.0, 2.0], dtype=torch.bfloat16),
            torch.zeros(0), torch.arange(4)]


def _reference(tensors) -> bool:
    return all(bool(np.isfinite(t.float().numpy()).all()) for t in tensors if t.is_floating_point())


def test_finite_tensors_pass():
    ts = _tensors()
    assert _reference(ts) and TorchBackend().all_finite(ts)


@pytest.mark.parametrize("which", [0, 1, 2, 3, 4, 5])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_any_non_finite_value_is_found(which, bad):
    ts = _tensors()
    ts[which][tuple(s - 1 for s in ts[which].shape)] = bad
    assert not _reference(ts)
    assert not TorchBackend().all_finite(ts)


def test_numpy_values_and_empty_lists():
    b = TorchBackend()
    assert b.all_finite([]) and b.all_finite([np.ones(3), 2.0])
    assert not b.all_finite([torch.ones(2), np.array([1.0, np.inf])])
