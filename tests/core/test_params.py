"""Model parameters (SPEC section 7): reading, setting, derived values, head resizing."""
from __future__ import annotations

import numpy as np
import pytest

import dlbatch
from tests.conftest import make_samples, tiny_model


def test_defaults_and_derived_values():
    m = tiny_model(class_ids=[3, 7, 9])
    assert m.get_param("type") == "classification"
    assert m.get_param("num_classes") == 3
    assert m.get_param("class_names") == ["3", "7", "9"]
    assert m.get_param("image_dimensions") == [8, 8, 1]
    assert m.get_param("solver_type") == "sgd"
    assert m.get_param("losses") == {"classification": "multinomial_logistic"}
    assert m.get_param("backend") == "numpy" and m.get_param("runtime") == "cpu"
    assert m.get_param("num_trainable_params") == sum(v.size for n, v in m.state_dict().items()
                                                      if n in m.graph.trainable)


def test_functional_and_method_forms_agree():
    m = tiny_model()
    dlbatch.set_dl_model_param(m, "learning_rate", 0.123)
    assert m.get_param("learning_rate") == 0.123
    m.set_param("momentum", 0.5)
    assert dlbatch.get_dl_model_param(m, "momentum") == 0.5


def test_image_dimensions_sets_all_three():
    m = tiny_model()
    m.set_param("image_dimensions", [12, 10, 1])
    assert (m.get_param("image_width"), m.get_param("image_height")) == (12, 10)
    out = m.train_batch(make_samples(4, height=10, width=12))
    assert np.isfinite(out["total_loss"])


def test_new_class_ids_resize_the_head_and_keep_the_rest():
    m = tiny_model(class_ids=[0, 1, 2])
    m.train_batch(make_samples(4))
    before = m.state_dict()
    m.set_param("class_ids", [10, 20, 30, 40, 50])
    after = m.state_dict()
    assert after["fc.weight"].shape == (5, 128) and after["fc.bias"].shape == (5,)
    np.testing.assert_array_equal(after["stem.conv.weight"], before["stem.conv.weight"])
    assert m.get_param("class_names") == ["10", "20", "30", "40", "50"]
    assert "velocity/fc.weight" not in m.solver_state_dict()
    out = m.train_batch(make_samples(4, class_ids=(10, 20, 30, 40, 50)))
    assert np.isfinite(out["total_loss"])
    res = m.apply(make_samples(2))
    assert sorted(res[0]["classification_class_ids"]) == [10, 20, 30, 40, 50]


def test_create_rejects_bad_values_with_clear_errors():
    with pytest.raises(dlbatch.DLParamError, match="class_ids"):
        dlbatch.create_dl_model("classification", image_dimensions=[8, 8, 1])
    with pytest.raises(dlbatch.DLParamError, match="unknown backbone"):
        tiny_model(backbone="vgg")
    with pytest.raises(dlbatch.DLParamError, match="allowed values"):
        tiny_model(precision="float16")
    with pytest.raises(dlbatch.DLParamError, match="duplicates"):
        tiny_model(class_ids=[1, 1])


def test_precision_switch_keeps_values():
    m = tiny_model()
    w = m.state_dict()
    m.set_param("precision", "float64")
    w64 = m.state_dict()
    assert w64["fc.weight"].dtype == np.float64
    np.testing.assert_array_equal(w64["fc.weight"].astype(np.float32), w["fc.weight"])


def test_apply_returns_sorted_confidences():
    m = tiny_model(class_ids=[5, 6, 7], class_names=["a", "b", "c"])
    res = dlbatch.apply_dl_model(m, make_samples(3))
    assert len(res) == 3
    for r in res:
        conf = r["classification_confidences"]
        assert conf == sorted(conf, reverse=True) and sum(conf) == pytest.approx(1.0)
        assert sorted(r["classification_class_ids"]) == [5, 6, 7]
        name_of = dict(zip([5, 6, 7], ["a", "b", "c"]))
        assert r["classification_class_names"] == [name_of[c] for c in r["classification_class_ids"]]


def test_set_system_validates():
    with pytest.raises(dlbatch.DLParamError, match="available"):
        dlbatch.set_system("no_such_option", 1)
    with pytest.raises(dlbatch.DLParamError, match="True or False"):
        dlbatch.set_system("cudnn_deterministic", "yes")


def test_preprocess_resizes_converts_and_scales():
    m = tiny_model(image_num_channels=3, image_width=16, image_height=12)
    raw = [{"image": np.full((30, 40), 255, np.uint8), "image_label_id": 1},
           {"image": np.zeros((5, 5, 3), np.uint8), "image_label_id": 2}]
    out = dlbatch.preprocess_dl_samples(raw, m)
    assert out[0]["image"].shape == (12, 16, 3) and out[0]["image"].dtype == np.float32
    np.testing.assert_allclose(out[0]["image"], 128.0)
    np.testing.assert_allclose(out[1]["image"], -127.0)
    assert out[0]["image_label_id"] == 1
