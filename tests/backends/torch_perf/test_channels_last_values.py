"""The torch backend keeps 4-D float arrays (images, convolution weights) in channels_last memory
on the CPU: asarray makes them so in one copy (never aliasing the caller's array), to_numpy gives
C-ordered copies, and a training step hands back weights still in that layout (no reorder per
step) with the values a plain-layout computation gives (torch autograd in float64)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import dlbatch  # noqa: E402
from dlbatch.backends.torch.backend import TorchBackend  # noqa: E402

from ...conftest import make_samples  # noqa: E402

CL = torch.channels_last


@pytest.mark.parametrize("dtype", ["float32", "float64", None])
def test_asarray_4d_floats_are_channels_last_copies(dtype):
    b = TorchBackend()
    a = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    t = b.asarray(a, dtype=dtype)
    assert t.is_contiguous(memory_format=CL) and not t.is_contiguous()
    assert np.array_equal(t.numpy(), a.astype(dtype or a.dtype))
    a[...] = 7.0  # no aliasing
    assert not (t == 7.0).any()
    back = b.to_numpy(t)
    assert back.flags["C_CONTIGUOUS"] and np.array_equal(back, t.numpy())
    again = b.asarray(t)  # a tensor is copied into the same layout
    assert again.is_contiguous(memory_format=CL) and again.data_ptr() != t.data_ptr()


def test_other_ranks_and_integers_keep_their_layout():
    b = TorchBackend()
    assert b.asarray(np.ones((2, 3, 4), np.float32)).is_contiguous()
    t = b.asarray(np.ones((2, 3, 4, 5), np.int64))
    assert t.is_contiguous() and t.dtype == torch.int64
    assert b.asarray(np.ones((2, 3, 4, 5), np.float32), dtype="bfloat16").dtype == torch.bfloat16


def test_training_keeps_weights_channels_last_and_exact():
    model = dlbatch.create_dl_model("classification", backbone="compact", backend="torch", precision="float64",
                                    image_width=16, image_height=16, image_num_channels=3, class_ids=[0, 1],
                                    batch_size=2, learning_rate=0.01, momentum=0.9, weight_prior=1e-3, seed=0)
    samples = make_samples(2, height=16, width=16, channels=3, class_ids=(0, 1), seed=5)
    before = {n: v.clone() for n, v in model.values.items()}
    dlbatch.train_dl_model_batch(model, samples)
    dlbatch.train_dl_model_batch(model, samples)
    weights = [n for n in model.graph.trainable if model.values[n].dim() == 4]
    assert weights
    for n in weights:
        assert before[n].is_contiguous(memory_format=CL)
        assert model.values[n].is_contiguous(memory_format=CL), n
    # the same two steps on plain-layout copies give the same numbers
    plain = dlbatch.create_dl_model("classification", backbone="compact", backend="torch", precision="float64",
                                    image_width=16, image_height=16, image_num_channels=3, class_ids=[0, 1],
                                    batch_size=2, learning_rate=0.01, momentum=0.9, weight_prior=1e-3, seed=0)
    plain.commit({n: v.contiguous() for n, v in plain.values.items()})
    dlbatch.train_dl_model_batch(plain, samples)
    dlbatch.train_dl_model_batch(plain, samples)
    for n in model.graph.trainable:
        torch.testing.assert_close(model.values[n], plain.values[n], rtol=1e-10, atol=1e-12)
