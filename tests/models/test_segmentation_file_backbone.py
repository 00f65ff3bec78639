"""Segmentation on a classifier read from an ONNX file: exported by torch or written by dlbatch,
cut before its head, its trained weights kept, and a clear error when it lacks feature maps."""
from __future__ import annotations

import numpy as np
import pytest

import dlbatch
from dlbatch.core.infer import raw_outputs

torch = pytest.importorskip("torch")
nn = torch.nn


class SmallClassifier(nn.Module):
    """Five stride-2 conv-BN-ReLU stages (strides 2..32) and a linear head."""

    def __init__(self, stages=5, classes=4):
        super().__init__()
        layers, cin = [], 3
        for i in range(stages):
            cout = 8 * 2 ** min(i, 3)
            layers += [nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cin, classes)

    def forward(self, x):
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


def export(module, path, side=64, opset=17):
    torch.manual_seed(0)
    module.eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, as a trained network has
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    torch.onnx.export(module, torch.zeros(1, 3, side, side), str(path), dynamo=False, opset_version=opset,
                      input_names=["input"], output_names=["scores"],
                      dynamic_axes={"input": {0: "n"}, "scores": {0: "n"}})
    return module


@pytest.fixture(scope="module")
def torch_classifier(tmp_path_factory):
    path = tmp_path_factory.mktemp("cls") / "small.onnx"
    torch.manual_seed(0)
    return export(SmallClassifier(), path), path


def stage_outputs(module, x):
    """The torch network's ReLU outputs at strides 4, 8, 16, 32 (stages 2..5)."""
    outs, h = {}, x
    for i, layer in enumerate(module.features):
        h = layer(h)
        if isinstance(layer, nn.ReLU):
            outs[2 ** (i // 3 + 1)] = h.detach().numpy()
    return {s: outs[s] for s in (4, 8, 16, 32)}


def test_torch_classifier_backbone_keeps_its_trained_features(torch_classifier):
    module, path = torch_classifier
    model = dlbatch.create_dl_model("segmentation", backbone=path, class_ids=[0, 1], image_dimensions=[64, 64, 3],
                                    precision="float64", batch_size=2)
    assert model.get_param("backbone") == str(path)
    assert model.meta["input"] == "input"
    x = np.random.default_rng(0).normal(0, 1, (2, 64, 64, 3))
    batch = [{"image": img} for img in x]
    expected = stage_outputs(module.double(), torch.tensor(x.transpose(0, 3, 1, 2)))
    module.float()
    decoder_inputs = [n.inputs[0] for n in model.graph.nodes if n.name.startswith("decoder.lateral")]
    got = raw_outputs(model, batch, names=decoder_inputs)
    by_shape = {v.shape[2]: v for v in got.values()}
    for stride, ref in expected.items():  # the file holds float32 weights (batch norm folded in)
        np.testing.assert_allclose(by_shape[64 // stride], ref, rtol=1e-5, atol=1e-6)


def test_torch_classifier_backbone_trains_on_both_backends_alike(torch_classifier):
    _, path = torch_classifier
    rng = np.random.default_rng(1)
    batch = [{"image": rng.normal(0, 1, (64, 64, 3)), "segmentation_image": rng.integers(0, 2, (64, 64))}
             for _ in range(2)]
    outs = {}
    for backend in ("numpy", "torch"):
        model = dlbatch.create_dl_model("segmentation", backbone=path, class_ids=[0, 1], backend=backend,
                                        image_dimensions=[64, 64, 3], precision="float64", batch_size=2,
                                        learning_rate=0.01)
        outs[backend] = [dlbatch.train_dl_model_batch(model, batch) for _ in range(2)]
    for a, b in zip(outs["numpy"], outs["torch"]):
        for k in a:
            assert b[k] == pytest.approx(a[k], rel=1e-9), k
    assert outs["numpy"][1]["loss_multinomial_logistic"] < outs["numpy"][0]["loss_multinomial_logistic"]


def test_dlbatch_classifier_file_as_backbone_keeps_every_backbone_weight(tmp_path):
    cls = dlbatch.create_dl_model("classification", backbone="resnet18", num_classes=3, image_dimensions=[64, 64, 3],
                                  batch_size=2, learning_rate=0.01)
    rng = np.random.default_rng(0)
    cls.train_batch([{"image": rng.normal(0, 40, (64, 64, 3)).astype(np.float32), "image_label_id": i % 3}
                     for i in range(2)])
    path = tmp_path / "resnet18_classifier.onnx"
    dlbatch.write_dl_model(cls, path)
    seg = dlbatch.create_dl_model("segmentation", backbone=path, class_ids=[0, 1, 2], image_dimensions=[64, 64, 3])
    trained, cut = cls.state_dict(), seg.state_dict()
    backbone = [k for k in trained if not k.startswith("fc.")]
    assert backbone and all(np.array_equal(cut[k], trained[k]) for k in backbone)
    assert not any(k.startswith("fc.") for k in cut)


def test_a_classifier_without_deep_feature_maps_is_a_clear_error(tmp_path):
    path = tmp_path / "shallow.onnx"
    torch.manual_seed(0)
    export(SmallClassifier(stages=2), path)
    with pytest.raises(dlbatch.DLModelFileError, match=r"stride.*(16|32)") as info:
        dlbatch.create_dl_model("segmentation", backbone=path, class_ids=[0, 1], image_dimensions=[64, 64, 3])
    assert "shallow.onnx" in str(info.value)


def test_unknown_backbone_names_the_choices_including_files():
    with pytest.raises(dlbatch.DLParamError, match="compact, resnet18, or the path of an ONNX classifier file"):
        dlbatch.create_dl_model("segmentation", backbone="vgg", class_ids=[0, 1], image_dimensions=[32, 32, 3])
    with pytest.raises(dlbatch.DLModelFileError, match="does not exist"):
        dlbatch.create_dl_model("segmentation", backbone="nowhere.onnx", class_ids=[0, 1],
                                image_dimensions=[32, 32, 3])
