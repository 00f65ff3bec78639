"""A torchvision-style CNN exported with torch.onnx.export, read with read_dl_model: inference
equals torch's, and one training step on the numpy backend equals the same step in PyTorch.

The TorchScript exporter is used (dynamo=False; the dynamo exporter needs onnxscript). With
do_constant_folding=True an eval-mode export fuses batch normalization into the convolution
weights, which is a different network to train, so these exports keep batch norm
(do_constant_folding=False): the file then also shows the exporter's other habits (Identity
copies of identical initializers, shape arithmetic for x.view(x.size(0), -1)), which the import
folds away.
"""
from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

import dlbatch
from dlbatch.core.infer import raw_outputs

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

N, C, H, W, K = 4, 3, 16, 16, 5
LR = 0.1


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class TinyResNet(nn.Module):
    """conv-BN-relu stem, max pool, two residual blocks (one with a projection shortcut),
    adaptive average pool, flatten, linear; optionally a final softmax."""

    def __init__(self, softmax: bool = False, view_flatten: bool = False):
        super().__init__()
        self.softmax, self.view_flatten = softmax, view_flatten
        self.conv1 = nn.Conv2d(C, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = BasicBlock(8, 8)
        self.layer2 = BasicBlock(8, 16, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(16, K)

    def logits(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.avgpool(self.layer2(self.layer1(x)))
        x = x.view(x.size(0), -1) if self.view_flatten else torch.flatten(x, 1)
        return self.fc(x)

    def forward(self, x):
        z = self.logits(x)
        return torch.softmax(z, dim=1) if self.softmax else z


def make_net(seed: int, *, softmax=False, view_flatten=False, fresh_bn=False) -> TinyResNet:
    torch.manual_seed(seed)
    net = TinyResNet(softmax, view_flatten)
    if not fresh_bn:  # trained-looking statistics; a fresh net has identical BN tensors (see test below)
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.2)
                    m.running_mean.uniform_(-0.2, 0.2)
                    m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def export(net: nn.Module, path, opset: int) -> None:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(2, C, H, W),), buf, opset_version=opset, dynamo=False,
                          do_constant_folding=False, input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    path.write_bytes(buf.getvalue())


def batch(seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, C, H, W, generator=g) * 2.0
    y = torch.arange(N) % K
    samples = [{"image": x[i].permute(1, 2, 0).numpy().copy(), "image_label_id": int(y[i])} for i in range(N)]
    return x, y, samples


@pytest.mark.parametrize("opset", [13, 17])
@pytest.mark.parametrize("softmax", [False, True], ids=["logits", "softmax"])
def test_confidences_equal_torch_softmax(tmp_path, opset, softmax):
    net = make_net(1, softmax=softmax, view_flatten=softmax)
    export(net, tmp_path / "net.onnx", opset)
    model = dlbatch.read_dl_model(tmp_path / "net.onnx", batch_size=N)
    assert model.get_param("class_ids") == list(range(K))
    assert model.get_param("image_dimensions") == [W, H, C]
    assert model.meta["head_weight"] == "fc.weight" and model.meta["head_bias"] == "fc.bias"
    assert model.meta.get("output_is_probability", False) is softmax
    x, _, samples = batch(2)
    with torch.no_grad():
        probs = torch.softmax(net.logits(x), dim=1).numpy()
    results = dlbatch.apply_dl_model(model, samples)
    for p, r in zip(probs, results):
        got = np.zeros(K)
        got[r["classification_class_ids"]] = r["classification_confidences"]
        np.testing.assert_allclose(got, p, rtol=0, atol=1e-5)
        assert r["classification_class_ids"][0] == int(np.argmax(p))


def _torch_step(net: TinyResNet, x, y):
    """PyTorch reference: train mode, cross-entropy on the logits, w -= lr * grad."""
    net.train()
    loss = F.cross_entropy(net.logits(x), y)
    net.zero_grad()
    loss.backward()
    with torch.no_grad():
        for p in net.parameters():
            p -= LR * p.grad
    return float(loss.detach())


@pytest.mark.parametrize("opset,softmax,backend", [
    (13, False, "numpy"), (13, True, "numpy"), (17, False, "numpy"), (17, True, "numpy"),
    (17, True, "torch"),
], ids=["13-logits", "13-softmax", "17-logits", "17-softmax", "17-softmax-torch-backend"])
def test_one_training_step_equals_pytorch(tmp_path, opset, softmax, backend):
    net = make_net(3, softmax=softmax)
    export(net, tmp_path / "net.onnx", opset)
    model = dlbatch.read_dl_model(tmp_path / "net.onnx", backend=backend, batch_size=N, learning_rate=LR,
                                  momentum=0.0, solver_type="sgd", precision="float32")
    assert set(model.graph.trainable) == {n for n, _ in net.named_parameters()}
    assert set(model.graph.statistics) == {n for n, _ in net.named_buffers() if "running" in n}
    before = model.state_dict()
    x, y, samples = batch(4)
    result = dlbatch.train_dl_model_batch(model, samples)
    torch_loss = _torch_step(net, x, y)
    assert result["loss_multinomial_logistic"] == pytest.approx(torch_loss, rel=1e-5)
    after = model.state_dict()
    reference = {n: t.detach().numpy() for n, t in [*net.named_parameters(), *net.named_buffers()]
                 if n in after}
    assert reference.keys() == after.keys()
    for name, ref in reference.items():
        scale = float(np.abs(ref).max())
        np.testing.assert_allclose(after[name], ref, rtol=1e-4, atol=1e-4 * scale, err_msg=name)
        moved = float(np.abs(ref - before[name]).max())  # the step itself, not only the weights
        if moved > 0:
            assert float(np.abs((after[name] - before[name]) - (ref - before[name])).max()) <= 1e-3 * moved + 1e-7, name


@pytest.mark.parametrize("opset", [7, 9, 11, 21])
def test_other_opsets_import_and_infer(tmp_path, opset):
    net = make_net(5, softmax=True, view_flatten=True)
    export(net, tmp_path / "net.onnx", opset)
    model = dlbatch.read_dl_model(tmp_path / "net.onnx")
    x, _, samples = batch(6)
    with torch.no_grad():
        want = net(x).numpy()
    np.testing.assert_allclose(raw_outputs(model, samples)["output"], want, rtol=1e-5, atol=1e-6)


def test_fresh_network_with_identity_shared_initializers_imports_separate_tensors(tmp_path):
    """A fresh torch network has identical BN tensors (ones, zeros); the exporter stores one and
    makes the others Identity copies. Each must become its own parameter or statistic."""
    net = make_net(7, fresh_bn=True)
    export(net, tmp_path / "fresh.onnx", 17)
    model = dlbatch.read_dl_model(tmp_path / "fresh.onnx", batch_size=N, learning_rate=LR, momentum=0.0)
    assert "Identity" not in model.graph.op_types()
    names = [*model.graph.trainable, *model.graph.statistics]
    assert len(names) == len(set(names))
    assert set(model.graph.statistics) == {n for n, _ in net.named_buffers() if "running" in n}
    x, y, samples = batch(8)
    dlbatch.train_dl_model_batch(model, samples)
    _torch_step(net, x, y)
    after = model.state_dict()
    for name, t in net.named_parameters():
        np.testing.assert_allclose(after[name], t.detach().numpy(), rtol=1e-4,
                                   atol=1e-4 * float(t.detach().abs().max()), err_msg=name)


@pytest.mark.parametrize("fold", [False, True], ids=["no-constant-folding", "constant-folding"])
def test_export_with_a_fixed_batch_size_takes_any_batch_size(tmp_path, fold):
    """Exported for batch 1 (no dynamic axes), x.view(x.size(0), -1) becomes a Reshape to the
    constant [1, -1]; the imported model still runs any batch size (the 1 becomes 0: copy the
    batch dimension)."""
    net = make_net(9, view_flatten=True)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(1, C, H, W),), buf, opset_version=17, dynamo=False,
                          do_constant_folding=fold, input_names=["input"], output_names=["output"])
    (tmp_path / "b1.onnx").write_bytes(buf.getvalue())
    model = dlbatch.read_dl_model(tmp_path / "b1.onnx", batch_size=N)
    reshape = next(n for n in model.graph.nodes if n.op_type == "Reshape")
    assert list(model.values[reshape.inputs[1]]) == [0, -1]
    x, _, samples = batch(10)
    with torch.no_grad():
        want = net(x).numpy()
    np.testing.assert_allclose(raw_outputs(model, samples)["output"], want, rtol=1e-5, atol=1e-5)
