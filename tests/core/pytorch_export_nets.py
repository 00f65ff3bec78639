"""Eleven small classifiers written in plain torch.nn, as a PyTorch user would write them, and
the four ways tests/core/test_pytorch_exports*.py export them with torch.onnx.export.

Export styles (the calls the README section "Import from PyTorch" recommends):

- legacy13: TorchScript exporter (dynamo=False), opset 13, dynamic batch,
  do_constant_folding=False (eval mode: batch norm kept with its running statistics, dropout
  removed).
- legacy17: TorchScript exporter, opset 17, dynamic batch, training=TrainingMode.TRAINING
  (batch norm kept in training form, dropout kept).
- dynamo: the default exporter (dynamo=True), dynamic batch (dynamic_shapes), the module in
  train mode and optimize=False (batch norm kept, dropout kept).
- dynamo_b1: the default exporter as called with no options: a fixed batch of 1, eval mode,
  optimize=True (batch norm folded into the convolutions, dropout removed).

Files are exported once per process and cached (export is the slow part).
"""
from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np

import torch
from torch import nn
from torch.nn import functional as F

C, H, W, K = 3, 16, 16, 5
N = 4
STYLES = ("legacy13", "legacy17", "dynamo", "dynamo_b1")


# -- architectures ----------------------------------------------------------------------------
class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 0.5))

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(C, 16, 4, stride=4)
        self.block = ConvNeXtBlock(16)
        self.norm = nn.LayerNorm(16, eps=1e-6)
        self.head = nn.Linear(16, K)

    def forward(self, x):
        x = self.block(self.stem(x))
        return self.head(self.norm(x.mean([-2, -1])))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(x)


class TinyViT(nn.Module):
    def __init__(self, dim: int = 16, patch: int = 4):
        super().__init__()
        self.patch_embed = nn.Conv2d(C, dim, patch, stride=patch)
        tokens = (H // patch) * (W // patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.pos_embed = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.1)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, 2)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(approximate="tanh"), nn.Linear(2 * dim, dim))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, K)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat((cls, x), dim=1) + self.pos_embed
        x = x + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        return self.head(self.norm(x)[:, 0])


class GroupNormNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(C, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.GroupNorm(4, 16), nn.ReLU())
        self.fc = nn.Linear(16, K)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


def conv_bn(cin, cout, k=3, stride=1, groups=1, act=nn.ReLU):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), act())


class PooledConvHead(nn.Module):
    """Class scores from a 1x1 convolution and global pooling, no flatten: N x K x 1 x 1."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(conv_bn(C, 8), conv_bn(8, 16, stride=2))
        self.classifier = nn.Conv2d(16, K, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.pool(self.classifier(self.features(x)))


class VGG(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(conv_bn(C, 8), conv_bn(8, 8), nn.MaxPool2d(2),
                                      conv_bn(8, 16), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Linear(16 * 4 * 4, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, K))

    def forward(self, x):
        x = self.features(x)
        return self.classifier(x.view(x.size(0), -1))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = conv_bn(C, 8)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = BasicBlock(8, 8)
        self.layer2 = BasicBlock(8, 16, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(16, K)

    def forward(self, x):
        x = self.avgpool(self.layer2(self.layer1(self.maxpool(self.stem(x)))))
        return self.fc(torch.flatten(x, 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand, se=False, act=nn.ReLU6):
        super().__init__()
        hidden = cin * expand
        layers = [conv_bn(cin, hidden, 1, act=act), conv_bn(hidden, hidden, 3, stride, groups=hidden, act=act)]
        if se:
            layers.append(SqueezeExcite(hidden))
        layers += [nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV2(nn.Module):
    def __init__(self):
        super().__init__()
        # (a residual block is last: a batch-norm shift that only feeds convolution + batch norm
        # gets no gradient in training, and every trainable tensor here must move)
        self.features = nn.Sequential(conv_bn(C, 8, stride=2, act=nn.ReLU6), InvertedResidual(8, 16, 2, 2),
                                      InvertedResidual(16, 16, 1, 2))
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(16, K))

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


class SqueezeExcite(nn.Module):
    def __init__(self, c, r=4):
        super().__init__()
        self.fc1 = nn.Conv2d(c, max(1, c // r), 1)
        self.fc2 = nn.Conv2d(max(1, c // r), c, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * F.hardsigmoid(self.fc2(F.relu(self.fc1(s))))


class MobileNetV3(nn.Module):
    """MobileNetV3/EfficientNet-style: hardswish and SiLU, squeeze-excitation, a Linear head."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(conv_bn(C, 8, stride=2, act=nn.Hardswish),
                                      InvertedResidual(8, 16, 2, 3, se=True, act=nn.Hardswish),
                                      InvertedResidual(16, 16, 1, 2, se=True, act=nn.SiLU))
        self.classifier = nn.Sequential(nn.Linear(16, 24), nn.Hardswish(), nn.Linear(24, K))

    def forward(self, x):
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


class DenseLayer(nn.Module):
    def __init__(self, cin, growth):
        super().__init__()
        self.norm = nn.BatchNorm2d(cin)
        self.conv = nn.Conv2d(cin, growth, 3, padding=1, bias=False)

    def forward(self, x):
        return torch.cat([x, self.conv(F.relu(self.norm(x)))], 1)


class DenseNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(C, 8, 3, padding=1, bias=False)
        self.block1 = nn.Sequential(DenseLayer(8, 4), DenseLayer(12, 4))
        self.transition = nn.Sequential(nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 8, 1, bias=False),
                                        nn.AvgPool2d(2))
        self.block2 = DenseLayer(8, 4)
        self.norm = nn.BatchNorm2d(12)
        self.fc = nn.Linear(12, K)

    def forward(self, x):
        x = self.block2(self.transition(self.block1(self.stem(x))))
        x = F.relu(self.norm(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1))


class Hourglass(nn.Module):
    """Down with strided convolutions, up with ConvTranspose and Resize (F.interpolate), skip sums."""

    def __init__(self):
        super().__init__()
        self.down1 = conv_bn(C, 8, stride=2)
        self.down2 = conv_bn(8, 16, stride=2)
        self.up1 = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.fuse = conv_bn(8, 8)
        self.fc = nn.Linear(8, K)

    def forward(self, x):
        d1 = self.down1(x)
        u = self.up1(self.down2(d1)) + d1
        u = F.interpolate(self.fuse(u), scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(u, 1), 1))


class SoftmaxNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(conv_bn(C, 8, stride=2), conv_bn(8, 16, stride=2))
        self.fc = nn.Linear(16, K)

    def logits(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))

    def forward(self, x):
        return torch.softmax(self.logits(x), dim=1)


ARCHITECTURES = {
    "convnext": ConvNeXt, "vit": TinyViT, "groupnorm": GroupNormNet, "pooled_conv_head": PooledConvHead,
    "vgg": VGG, "resnet": ResNet, "mobilenetv2": MobileNetV2, "mobilenetv3_se": MobileNetV3,
    "densenet": DenseNet, "hourglass": Hourglass, "softmax": SoftmaxNet,
}


def make_net(arch: str, seed: int = 0) -> nn.Module:
    """The architecture with seeded weights and trained-looking batch-norm tensors, in eval mode."""
    torch.manual_seed(seed)
    net = ARCHITECTURES[arch]()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
            elif isinstance(m, (nn.LayerNorm, nn.GroupNorm)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net.eval()


def has_batchnorm(net: nn.Module) -> bool:
    return any(isinstance(m, nn.BatchNorm2d) for m in net.modules())


def has_dropout(net: nn.Module) -> bool:
    return any(isinstance(m, nn.Dropout) and m.p > 0 for m in net.modules())


def logits_of(net: nn.Module, x):
    """What the loss reads: the scores before a final softmax, flattened to N x K."""
    z = net.logits(x) if hasattr(net, "logits") else net(x)
    return z.reshape(z.shape[0], -1)


# -- export -----------------------------------------------------------------------------------
def _need_onnxscript() -> None:
    import pytest
    pytest.importorskip("onnxscript", reason="the default exporter (dynamo=True) needs onnxscript")


def export_bytes(net: nn.Module, style: str) -> bytes:
    buf = io.BytesIO()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    kw = dict(input_names=["input"], output_names=["output"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if style in ("legacy13", "legacy17"):
            opset = 13 if style == "legacy13" else 17
            extra = (dict(do_constant_folding=False) if style == "legacy13"
                     else dict(training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False))
            torch.onnx.export(net, (torch.randn(2, C, H, W),), buf, opset_version=opset, dynamo=False,
                              dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, **kw, **extra)
        elif style == "dynamo":
            _need_onnxscript()
            net.train()
            prog = torch.onnx.export(net, (torch.randn(2, C, H, W),), dynamo=True, optimize=False, verbose=False,
                                     dynamic_shapes=({0: torch.export.Dim("batch")},), **kw)
            prog.save(buf)
        elif style == "dynamo_b1":
            _need_onnxscript()
            prog = torch.onnx.export(net, (torch.randn(1, C, H, W),), dynamo=True, verbose=False, **kw)
            prog.save(buf)
        else:
            raise ValueError(style)
    net.eval()
    return buf.getvalue()


def _cache_dir() -> Path:
    """Exported files are kept in .pytest_cache/pytorch_exports/<key>, the key a hash of this
    module's source and the torch and onnxscript versions (exports are the slow part: the default
    exporter takes seconds per network)."""
    try:
        import onnxscript
        onnxscript_version = onnxscript.__version__
    except ImportError:
        onnxscript_version = "none"
    source = Path(__file__).read_text().split("# -- file edits for references")[0]  # nets and export calls
    key = hashlib.sha256(source.encode() + torch.__version__.encode()
                         + onnxscript_version.encode()).hexdigest()[:16]
    return Path(__file__).resolve().parents[2] / ".pytest_cache" / "pytorch_exports" / key


@functools.lru_cache(maxsize=None)
def exported(arch: str, style: str) -> bytes:
    """The file's bytes, exported from make_net(arch) once (cached on disk and in the process)."""
    path = _cache_dir() / f"{arch}-{style}.onnx"
    if path.is_file():
        return path.read_bytes()
    data = export_bytes(make_net(arch), style)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return data


def batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, C, H, W, generator=g) * 2.0
    y = torch.arange(N) % K
    samples = [{"image": x[i].permute(1, 2, 0).numpy().copy(), "image_label_id": int(y[i])} for i in range(N)]
    return x, y, samples


def onnxruntime_outputs(data: bytes, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    if sess.get_inputs()[0].shape[0] == 1:  # fixed batch of 1: one image at a time
        return np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])
    return sess.run(None, {name: x})[0]


# -- file edits for references ----------------------------------------------------------------
def inference_copy(data: bytes) -> bytes:
    """The file as onnxruntime should run it for inference: batch norm exported in training form
    (training_mode=1, statistics outputs) uses its running statistics, dropout is off."""
    import onnx
    from onnx import helper
    m = onnx.load_from_string(data)
    for n in m.graph.node:
        if n.op_type == "BatchNormalization":
            for a in list(n.attribute):
                if a.name == "training_mode":
                    n.attribute.remove(a)
            del n.output[1:]
        elif n.op_type == "Dropout":
            del n.input[2:]
    return m.SerializeToString()


def without_dropout(data: bytes) -> bytes:
    """The file with every Dropout's ratio set to 0, so that training steps on two backends (and
    in PyTorch) draw no random masks and can be compared."""
    import onnx
    from onnx import helper, numpy_helper
    m = onnx.load_from_string(data)
    zero = "dropout_ratio_zero_for_test"
    used = False
    for n in m.graph.node:
        if n.op_type == "Dropout":
            if len(n.input) > 1 and n.input[1]:
                n.input[1] = zero
            else:
                n.input.append(zero)
            used = True
            for a in n.attribute:
                if a.name == "ratio":
                    a.f = 0.0
    if used:
        m.graph.initializer.append(numpy_helper.from_array(np.array(0.0, dtype=np.float32), zero))
    return m.SerializeToString()


def keeps_network(data: bytes, net: nn.Module) -> bool:
    """True when the file trains the module's own network: every batch norm is still there
    (not folded into a convolution by the exporter)."""
    import onnx
    m = onnx.load_from_string(data)
    bn = sum(1 for mod in net.modules() if isinstance(mod, nn.BatchNorm2d))
    return sum(1 for n in m.graph.node if n.op_type == "BatchNormalization") == bn


# -- the checks -------------------------------------------------------------------------------
LR = 0.1
TOL = 1e-5


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def check_read_and_apply(arch: str, style: str, tmp_path) -> None:
    """Read on both backends; raw scores and apply_dl_model's confidences equal onnxruntime's."""
    import dlbatch
    from dlbatch.core.infer import raw_outputs
    data = exported(arch, style)
    path = tmp_path / f"{arch}-{style}.onnx"
    path.write_bytes(data)
    x, _, samples = batch(2)
    want = onnxruntime_outputs(inference_copy(data), x.numpy()).reshape(N, K)
    for backend in ("numpy", "torch"):
        model = dlbatch.read_dl_model(path, backend=backend, batch_size=N)
        assert model.get_param("class_ids") == list(range(K))
        assert model.get_param("image_dimensions") == [W, H, C]
        out = raw_outputs(model, samples)
        got = out[model.model_type.inference_outputs(model.meta)[0]].reshape(N, K)
        np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL, err_msg=backend)
        probs = want if model.meta.get("output_is_probability") else _softmax(want.astype(np.float64))
        for p, r in zip(probs, dlbatch.apply_dl_model(model, samples)):
            conf = np.zeros(K)
            conf[r["classification_class_ids"]] = r["classification_confidences"]
            np.testing.assert_allclose(conf, p, rtol=0, atol=TOL, err_msg=backend)
    # the file dlbatch writes (and so its onnxruntime backend) runs the network for inference
    # in any runtime: training-form batch norm and dropout are written in inference form
    written = tmp_path / f"{arch}-{style}-written.onnx"
    dlbatch.write_dl_model(model, written)
    got = onnxruntime_outputs(written.read_bytes(), x.numpy())
    np.testing.assert_allclose(got.reshape(N, K), want, rtol=TOL, atol=TOL, err_msg="written file on onnxruntime")
    dlbatch.set_dl_model_param(model, "backend", "onnxruntime")
    got = raw_outputs(model, samples)[model.model_type.inference_outputs(model.meta)[0]]
    np.testing.assert_allclose(got.reshape(N, K), want, rtol=TOL, atol=TOL, err_msg="onnxruntime backend")


def torch_train_loss(arch: str, x, y) -> tuple[float, int]:
    """PyTorch reference: the module in train mode (dropout off), cross-entropy on the logits.
    Returns the loss and the number of trainable values."""
    net = make_net(arch).train()
    for m in net.modules():
        if isinstance(m, nn.Dropout):
            m.eval()
    with torch.no_grad():
        loss = F.cross_entropy(logits_of(net, x), y)
    return float(loss), sum(p.numel() for p in net.parameters())


def check_train_step(arch: str, style: str, tmp_path) -> None:
    """One step at batch size 4 on both backends: equal losses, every trainable tensor moves;
    for a file that keeps the network (batch norm not folded) the loss equals PyTorch's
    train-mode loss and the trainable values are the module's parameters."""
    import dlbatch
    data = exported(arch, style)
    path = tmp_path / f"{arch}-{style}-train.onnx"
    path.write_bytes(without_dropout(data))
    x, y, samples = batch(3)
    losses = {}
    for backend in ("numpy", "torch"):
        model = dlbatch.read_dl_model(path, backend=backend, batch_size=N, learning_rate=LR, momentum=0.0,
                                      solver_type="sgd", precision="float32")
        before = model.state_dict()
        result = dlbatch.train_dl_model_batch(model, samples)
        losses[backend] = result["loss_multinomial_logistic"]
        after = model.state_dict()
        still = [n for n in model.graph.trainable if np.array_equal(before[n], after[n])]
        assert not still, f"{backend}: trainable tensors that did not move: {still}"
        num_trainable = model.get_param("num_trainable_params")
    assert losses["torch"] == pytest_approx(losses["numpy"]), f"torch backend {losses['torch']} numpy {losses['numpy']}"
    if keeps_network(data, make_net(arch)):
        ref, numel = torch_train_loss(arch, x, y)
        assert losses["numpy"] == pytest_approx(ref), f"dlbatch {losses['numpy']}, PyTorch train mode {ref}"
        assert num_trainable == numel, f"{num_trainable} trainable values, the module has {numel} {sorted(model.graph.trainable)}"


def pytest_approx(v):
    import pytest
    return pytest.approx(v, rel=TOL, abs=TOL)
