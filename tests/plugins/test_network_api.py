"""The public network API (dlbatch.models.network) as a third-party model type uses it.

A probe model type registered at run time builds its network only through the API (a backbone,
a conv-BN-ReLU neck, global average pooling and a fully connected head of a chosen width) and
outputs its pooled features beside the logits. One SGD step on numpy and on torch must move the
head exactly as torch autograd (float64) says from those features; a classifier exported by
torch is read as a backbone with its weights kept; the example plugin builds its own head; bad
names are refused with messages that say what exists."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

import dlbatch
from dlbatch.core.errors import DLModelFileError, DLParamError
from dlbatch.core.plugins import manager
from dlbatch.models.classification import Classification
from dlbatch.models.network import backbone_names, build_backbone, fully_connected_init

torch = pytest.importorskip("torch")
nn = torch.nn

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plugin"
WIDTH = 7          # the head's chosen output width (the class count)
POOLED = "probe_pool"


class Probe(Classification):
    """Classification's samples, loss and results on a network made with the public API."""

    name = "network_api_probe"
    reads_backbone_files = True

    def build(self, hp, backbone, rng):
        net = build_backbone(backbone, hp, rng, strides=(4, 8, 16))
        x = net.conv_bn_relu(net.features.last.name, 24, 3, "neck")
        pooled = net.global_average_pool(x, "pool", output=POOLED)
        logits = net.fully_connected(pooled, len(hp["class_ids"]), "head", output="probe_logits")
        graph, values = net.finish([logits, pooled])
        return graph, values, {"input": net.input, "logits": logits, "head_weight": "head.weight",
                               "head_bias": "head.bias"}

    def inference_outputs(self, meta):
        return (meta["logits"],)


class ProbePlugin:
    @dlbatch.core.hookspecs.hookimpl
    def dlbatch_register_model_types(self, register):
        register(Probe())


@pytest.fixture
def probe(fresh_plugins):
    manager.register_plugin(ProbePlugin(), "network-api-probe")
    yield "network_api_probe"


def images(n, side, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    return [{"image": rng.integers(0, 256, (side, side, channels), dtype=np.uint8), "image_label_id": i % WIDTH}
            for i in range(n)]


def forward(model, samples, names, training):
    enc = model.model_type.encode(samples, model.hyperparameters, model.meta, labels=False, dtype=model.precision)
    result = model.program().forward(model.values, {k: model.asarray(v) for k, v in enc.inputs.items()},
                                     training=training, wanted=tuple(names))
    return {n: np.asarray(model.backend.to_numpy(result.outputs[n]), dtype=np.float64) for n in names}


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_one_sgd_step_moves_the_head_as_torch_autograd_says(probe, backend):
    lr = 0.1
    model = dlbatch.create_dl_model(probe, "compact", class_ids=list(range(WIDTH)), image_dimensions=[16, 16, 3],
                                    batch_size=6, learning_rate=lr, momentum=0.0, weight_prior=0.0, seed=3,
                                    backend=backend, precision="float64")
    assert model.backend_name == backend
    assert [(v.name, v.shape) for v in model.graph.outputs] == [("probe_logits", (None, WIDTH)), (POOLED, (None, 24))]
    samples = dlbatch.preprocess_dl_samples(images(6, 16), model)
    before = model.state_dict()
    out = forward(model, samples, ("probe_logits", POOLED), training=True)
    assert out["probe_logits"].shape == (6, WIDTH)

    # the reference: the head's gradient of the mean cross-entropy, from the pooled features
    w = torch.tensor(before["head.weight"], dtype=torch.float64, requires_grad=True)
    b = torch.tensor(before["head.bias"], dtype=torch.float64, requires_grad=True)
    logits = torch.tensor(out[POOLED]) @ w.T + b
    np.testing.assert_allclose(logits.detach().numpy(), out["probe_logits"], rtol=1e-10, atol=1e-12)
    labels = torch.tensor([s["image_label_id"] for s in samples])
    loss = nn.functional.cross_entropy(logits, labels)
    loss.backward()

    losses = dlbatch.train_dl_model_batch(model, samples)
    after = model.state_dict()
    assert losses["loss_multinomial_logistic"] == pytest.approx(loss.item(), rel=1e-10)
    np.testing.assert_allclose(after["head.weight"], before["head.weight"] - lr * w.grad.numpy(),
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(after["head.bias"], before["head.bias"] - lr * b.grad.numpy(), rtol=1e-9, atol=1e-12)
    assert not np.array_equal(after["neck.conv.weight"], before["neck.conv.weight"])  # the rest trains too


def test_initialisation_follows_torchvision(probe):
    net = build_backbone("compact", [16, 16, 3], 0)
    x = net.conv(net.features.last.name, 256, 3, "wide")
    pooled = net.global_average_pool(net.batchnorm(x, "wide.bn"), "pool")
    net.fully_connected(pooled, 64, "fc", output="out")
    _, values = net.finish(["out"])
    he_std = np.sqrt(2.0 / (256 * 3 * 3))           # kaiming_normal_, mode fan_out, relu
    assert values["wide.weight"].std() == pytest.approx(he_std, rel=0.02)
    assert (values["wide.bn.scale"] == 1).all() and (values["wide.bn.bias"] == 0).all()
    bound = 1 / np.sqrt(256)                        # nn.Linear: uniform(+-1/sqrt(fan_in))
    weight = values["fc.weight"]
    assert weight.shape == (64, 256) and np.abs(weight).max() <= bound and weight.std() == pytest.approx(
        bound / np.sqrt(3), rel=0.03)
    fresh, bias = fully_connected_init(256, 64, 1)
    assert fresh.shape == (64, 256) and bias.shape == (64,) and not np.array_equal(fresh, weight)


class SmallClassifier(nn.Module):
    """Four stride-2 conv-BN-ReLU stages (strides 2, 4, 8, 16) and a linear head."""

    def __init__(self):
        super().__init__()
        layers, cin = [], 3
        for cout in (8, 12, 16, 20):
            layers += [nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cin, 5)

    def forward(self, x):
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


@pytest.fixture(scope="module")
def classifier_file(tmp_path_factory):
    torch.manual_seed(0)
    module = SmallClassifier().eval()
    with torch.no_grad():  # batch-norm statistics as a trained network has them
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("backbone") / "small.onnx"
    torch.onnx.export(module, torch.zeros(1, 3, 32, 32), str(path), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["scores"], dynamic_axes={"input": {0: "n"}})
    return module, path


def test_a_classifier_file_is_a_backbone_with_its_weights_kept(probe, classifier_file):
    module, path = classifier_file
    net = build_backbone(path, [32, 32, 3], 0, strides=(4, 8, 16))
    assert net.input == "input" and net.opset == 17 and net.backbone == str(path)
    assert [(m.stride, m.channels) for m in net.features.maps] == [(4, 12), (8, 16), (16, 20)]

    model = dlbatch.create_dl_model(probe, str(path), class_ids=list(range(WIDTH)), image_dimensions=[32, 32, 3],
                                    batch_size=4, seed=0)
    samples = dlbatch.preprocess_dl_samples(images(4, 32), model)
    pooled = forward(model, samples, (POOLED,), training=False)[POOLED]
    # the reference: the torch module's own stride-16 map, then the new neck (fresh batch norm:
    # mean 0, variance 1, scale 1, shift 0) and the pooling, all in torch
    x = torch.tensor(np.stack([s["image"] for s in samples]).transpose(0, 3, 1, 2), dtype=torch.float32)
    values = model.state_dict()
    with torch.no_grad():
        y = nn.functional.conv2d(module.features(x), torch.tensor(values["neck.conv.weight"]), padding=1)
        expected = torch.relu(y / np.sqrt(1 + 1e-5)).mean(dim=(2, 3))
    assert pooled.shape == (4, 24)
    np.testing.assert_allclose(pooled, expected.numpy(), rtol=1e-4, atol=1e-4)
    losses = dlbatch.train_dl_model_batch(model, samples)
    assert np.isfinite(losses["total_loss"])


def test_the_example_plugin_builds_its_own_head(fresh_plugins, classifier_file):
    for name in [m for m in sys.modules if m.startswith("dlbatch_example_plugin")]:
        del sys.modules[name]
    fresh_plugins.syspath_prepend(str(EXAMPLE))
    plugin = importlib.import_module("dlbatch_example_plugin")
    if "example" not in {p.name for p in dlbatch.plugins()}:
        manager.register_plugin(plugin, "example")
    model = dlbatch.create_dl_model("multi_label_classification", class_ids=[4, 5, 6], image_dimensions=[16, 16, 1],
                                    seed=2)
    head = model.state_dict()["multi_label_head.weight"]
    assert head.shape == (3, 128) and np.abs(head).max() <= 1 / np.sqrt(128)
    assert model.graph.outputs[0].shape == (None, 3)
    other = dlbatch.create_dl_model("multi_label_classification", class_ids=[4, 5, 6], image_dimensions=[16, 16, 1],
                                    seed=3)
    assert not np.array_equal(other.state_dict()["multi_label_head.weight"], head)
    # on a classifier file, as the built-in types read one
    _, path = classifier_file
    on_file = dlbatch.create_dl_model("multi_label_classification", str(path), class_ids=[4, 5],
                                      image_dimensions=[32, 32, 3], batch_size=2)
    assert on_file.state_dict()["multi_label_head.weight"].shape == (2, 20)   # the stride-16 map: 20 channels
    raw = [{"image": s["image"], "image_label_ids": [4] if i else []} for i, s in enumerate(images(2, 32))]
    losses = dlbatch.train_dl_model_batch(on_file, dlbatch.preprocess_dl_samples(raw, on_file))
    assert np.isfinite(losses["loss_binary_logistic"])
    for name in [m for m in sys.modules if m.startswith("dlbatch_example_plugin")]:
        del sys.modules[name]


def test_mistakes_are_refused_with_what_exists():
    with pytest.raises(DLParamError, match=r"unknown backbone 'resnet50'; the built-in backbones are "
                                           r"compact, resnet18, or give the path of an ONNX classifier file"):
        build_backbone("resnet50", [32, 32, 3], 0)
    assert backbone_names() == ["compact", "resnet18"]
    with pytest.raises(DLModelFileError, match="does not exist"):
        build_backbone("missing.onnx", [32, 32, 3], 0)
    with pytest.raises(DLParamError, match="compact backbone needs image_width and image_height of at least 4"):
        build_backbone("compact", [3, 16, 1], 0)
    with pytest.raises(DLParamError, match=r"image_dimensions must be \[width, height, channels\]"):
        build_backbone("compact", [16, 16], 0)
    with pytest.raises(DLParamError, match="missing \\['image_num_channels'\\]"):
        build_backbone("compact", {"image_width": 16, "image_height": 16}, 0)
    net = build_backbone("compact", [16, 16, 1], 0)
    with pytest.raises(DLParamError, match=r"no tensor 'nope' .* known: \['block1.relu'"):
        net.conv("nope", 8, 3, "c")
    pooled = net.global_average_pool(net.features.last.name, "pool")
    with pytest.raises(DLParamError, match="fully_connected reads an N x C tensor; 'block3.relu' is a feature map"):
        net.fully_connected(net.features.last.name, 2, "fc")
    with pytest.raises(DLParamError, match=r"conv reads a feature map \(N x C x H x W\); 'pool.flatten' is N x 128"):
        net.conv(pooled, 8, 1, "c")
    with pytest.raises(DLParamError, match=r"already has 'stem\.bn' \(a tensor or weight of an earlier layer\)"):
        net.conv(net.features.last.name, 8, 1, "stem")
    with pytest.raises(DLParamError, match="at least one output"):
        net.finish([])
