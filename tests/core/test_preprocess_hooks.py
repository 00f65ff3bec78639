"""The model-type preprocessing hook: images prepared, label images resized with nearest
neighbour (torch's 'nearest-exact' as reference), the original size recorded for decode."""
from __future__ import annotations

import numpy as np
import pytest

import dlbatch
from dlbatch.core.errors import DLModelFileError, DLSampleError
from dlbatch.core.preprocess import SampleContext, resize_nearest

from ..conftest import tiny_model

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("src,dst", [((7, 5), (16, 12)), ((16, 12), (7, 5)), ((10, 10), (10, 10)),
                                     ((9, 13), (4, 27))])
def test_resize_nearest_equals_torch_nearest_exact(src, dst):
    label = np.random.default_rng(0).integers(0, 50, src)
    ref = torch.nn.functional.interpolate(torch.tensor(label, dtype=torch.float64)[None, None], size=dst,
                                          mode="nearest-exact")[0, 0].numpy()
    out = resize_nearest(label, *dst)
    assert out.dtype == label.dtype
    np.testing.assert_array_equal(out, ref)


def test_resize_nearest_keeps_only_existing_values():
    label = np.array([[1, 2], [3, 4]])
    assert set(np.unique(resize_nearest(label, 5, 7))) == {1, 2, 3, 4}


def test_preprocess_records_the_original_size_and_keeps_labels():
    model = tiny_model()
    raw = {"image": np.zeros((20, 30), np.uint8), "image_label_id": 2}
    (out,) = dlbatch.preprocess_dl_samples([raw], model)
    assert out["image"].shape == (8, 8, 1) and out["image_label_id"] == 2
    ctx = SampleContext.of(out, model.hyperparameters)
    assert (ctx.original_height, ctx.original_width) == (20, 30)
    assert (ctx.scale_row, ctx.scale_col) == pytest.approx((8 / 20, 8 / 30))
    assert "original_image_size" not in raw  # the caller's dict is not changed


def test_context_defaults_to_the_model_size_and_rejects_nonsense():
    hp = tiny_model().hyperparameters
    ctx = SampleContext.of({"image": np.zeros((8, 8))}, hp)
    assert (ctx.scale_row, ctx.scale_col) == (1.0, 1.0)
    with pytest.raises(DLSampleError, match="sample 3: 'original_image_size'"):
        SampleContext.of({"original_image_size": [0, 5]}, hp, 3)


def test_a_model_type_without_import_foreign_says_what_to_do(tmp_path):
    from dlbatch.core.model_type import ModelType

    class Bare(ModelType):
        name = "bare"
        backbones = build = loss_terms = check_samples = encode = decode = None

    class Network:
        path = tmp_path / "net.onnx"

    with pytest.raises(DLModelFileError, match="create_dl_model\\('bare', backbone=...\\)"):
        Bare.import_foreign(Bare.__new__(Bare), Network(), {})
