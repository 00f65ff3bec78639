"""The benchmark suite's networks, each defined once as a torch.nn.Module classifier (N x K
logits), so that dlbatch and the hand-written PyTorch loop train the same graph: dlbatch reads
the file torch.onnx.export writes of it (`export_onnx`), the hand-written loop runs the module.

They cover shapes the two built-in backbones (compact, resnet18: run through step_case.py,
as are the segmentation and detection models) do not:

- plain_narrow / plain_wide: conv + batch norm + ReLU stacks whose stride-2 convolutions do all
  the down-sampling (no pooling layers), with small (8-64) and large (64-256) channel counts;
- bottleneck: 1x1-conv-heavy residual blocks (1x1 reduce, 3x3, 1x1 expand, as ResNet-50);
- mobilenetv2_se: inverted residuals (1x1 expand, depthwise 3x3, squeeze-excitation, 1x1
  project; ReLU6 and hardswish);
- resnext: grouped 3x3 convolutions (32 channels per group) between 1x1 convolutions;
- densenet: concat-heavy dense blocks (BN-ReLU-1x1-BN-ReLU-3x3, every output concatenated);
- upsample: a strided encoder and a decoder that goes back up with ConvTranspose, bilinear and
  nearest Resize (F.interpolate) and skip sums, to full resolution before the head.

Every network ends in global average pooling + a fully connected layer, so any image side
works; none has dropout (a step is then the same work in every implementation).
"""
from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, act=nn.ReLU) -> nn.Sequential:
    """Conv (no bias) + batch norm + activation (None: no activation)."""
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, act()) if act is not None else nn.Sequential(*layers)


class Classifier(nn.Module):
    """features -> global average pooling -> fully connected."""

    def __init__(self, features: nn.Module, width: int, k: int):
        super().__init__()
        self.features = features
        self.fc = nn.Linear(width, k)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


def plain(channels: int, k: int, widths: tuple[int, ...]) -> nn.Module:
    """A stride-2 conv-BN-ReLU per width followed by a stride-1 one: no pooling layers."""
    layers, cin = [], channels
    for w in widths:
        layers += [conv_bn(cin, w, stride=2), conv_bn(w, w)]
        cin = w
    return Classifier(nn.Sequential(*layers), cin, k)


def plain_narrow(channels: int, k: int) -> nn.Module:
    return plain(channels, k, (8, 16, 32, 64))


def plain_wide(channels: int, k: int) -> nn.Module:
    return plain(channels, k, (64, 128, 256))


class Residual(nn.Module):
    """body(x) + shortcut(x) (identity, or a strided 1x1 conv + BN where the shape changes), then
    `act`."""

    def __init__(self, body: nn.Module, cin: int, cout: int, stride: int, act=nn.ReLU):
        super().__init__()
        self.body = body
        self.shortcut = None if stride == 1 and cin == cout else conv_bn(cin, cout, 1, stride, act=None)
        self.act = act() if act is not None else nn.Identity()

    def forward(self, x):
        return self.act(self.body(x) + (x if self.shortcut is None else self.shortcut(x)))


def bottleneck_block(cin: int, mid: int, cout: int, stride: int = 1, groups: int = 1) -> nn.Module:
    """1x1 reduce, 3x3 (strided, optionally grouped), 1x1 expand; residual."""
    body = nn.Sequential(conv_bn(cin, mid, 1), conv_bn(mid, mid, 3, stride, groups=groups),
                         conv_bn(mid, cout, 1, act=None))
    return Residual(body, cin, cout, stride)


def bottleneck(channels: int, k: int) -> nn.Module:
    blocks = [conv_bn(channels, 32, stride=2),
              bottleneck_block(32, 16, 64), bottleneck_block(64, 16, 64),
              bottleneck_block(64, 32, 128, 2), bottleneck_block(128, 32, 128),
              bottleneck_block(128, 64, 256, 2), bottleneck_block(256, 64, 256)]
    return Classifier(nn.Sequential(*blocks), 256, k)


def resnext(channels: int, k: int) -> nn.Module:
    """Bottleneck blocks whose 3x3 convolution is grouped (32 channels per group)."""
    blocks = [conv_bn(channels, 32, stride=2),
              bottleneck_block(32, 64, 64, groups=2), bottleneck_block(64, 64, 64, groups=2),
              bottleneck_block(64, 128, 128, 2, groups=4), bottleneck_block(128, 128, 128, groups=4),
              bottleneck_block(128, 256, 256, 2, groups=8)]
    return Classifier(nn.Sequential(*blocks), 256, k)


class SqueezeExcite(nn.Module):
    """x * hardsigmoid(fc2(relu(fc1(mean over H, W of x)))), the fcs as 1x1 convolutions."""

    def __init__(self, c: int, reduction: int = 4):
        super().__init__()
        self.fc1 = nn.Conv2d(c, max(8, c // reduction), 1)
        self.fc2 = nn.Conv2d(max(8, c // reduction), c, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * F.hardsigmoid(self.fc2(F.relu(self.fc1(s))))


def inverted_residual(cin: int, cout: int, stride: int, expand: int, act=nn.ReLU6) -> nn.Module:
    """1x1 expand, depthwise 3x3, squeeze-excitation, 1x1 project (no activation); residual
    where the shape is kept."""
    hidden = cin * expand
    body = nn.Sequential(conv_bn(cin, hidden, 1, act=act), conv_bn(hidden, hidden, 3, stride, groups=hidden, act=act),
                         SqueezeExcite(hidden), conv_bn(hidden, cout, 1, act=None))
    return body if stride != 1 or cin != cout else Residual(body, cin, cout, 1, act=None)


def mobilenetv2_se(channels: int, k: int) -> nn.Module:
    blocks = [conv_bn(channels, 16, stride=2, act=nn.ReLU6),
              inverted_residual(16, 24, 2, 4), inverted_residual(24, 24, 1, 4),
              inverted_residual(24, 40, 2, 4, nn.Hardswish), inverted_residual(40, 40, 1, 4, nn.Hardswish),
              inverted_residual(40, 80, 2, 4, nn.Hardswish),
              conv_bn(80, 320, 1, act=nn.Hardswish)]
    return Classifier(nn.Sequential(*blocks), 320, k)


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv (4 x growth) - BN-ReLU-3x3 conv (growth); output concatenated to the input."""

    def __init__(self, cin: int, growth: int):
        super().__init__()
        self.body = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, 4 * growth, 1, bias=False),
                                  nn.BatchNorm2d(4 * growth), nn.ReLU(),
                                  nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False))

    def forward(self, x):
        return torch.cat([x, self.body(x)], 1)


def dense_block(cin: int, layers: int, growth: int) -> tuple[list[nn.Module], int]:
    out = []
    for _ in range(layers):
        out.append(DenseLayer(cin, growth))
        cin += growth
    return out, cin


def densenet(channels: int, k: int, growth: int = 12) -> nn.Module:
    stem = [nn.Conv2d(channels, 24, 3, 2, 1, bias=False)]
    block1, c = dense_block(24, 4, growth)
    transition = [nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1, bias=False), nn.AvgPool2d(2)]
    block2, c = dense_block(c // 2, 4, growth)
    features = nn.Sequential(*stem, *block1, *transition, *block2, nn.BatchNorm2d(c), nn.ReLU())
    return Classifier(features, c, k)


class Upsample(nn.Module):
    """Encoder of stride-2 conv-BN-ReLU (strides 2, 4, 8); decoder: ConvTranspose 2x2/2 to
    stride 4, + skip; bilinear Resize to stride 2, + skip; nearest Resize to stride 1; a
    conv-BN-ReLU after each; then the classifier head on the full-resolution map."""

    def __init__(self, channels: int, k: int):
        super().__init__()
        self.down1, self.down2, self.down3 = (conv_bn(channels, 16, stride=2), conv_bn(16, 32, stride=2),
                                              conv_bn(32, 64, stride=2))
        self.up3 = nn.ConvTranspose2d(64, 32, 2, stride=2)
        self.fuse2 = conv_bn(32, 32)
        self.reduce1 = conv_bn(32, 16, 1)
        self.fuse1 = conv_bn(16, 16)
        self.fuse0 = conv_bn(16, 16)
        self.fc = nn.Linear(16, k)

    def forward(self, x):
        d1 = self.down1(x)
        d2 = self.down2(d1)
        u = self.fuse2(self.up3(self.down3(d2)) + d2)
        u = F.interpolate(self.reduce1(u), scale_factor=2.0, mode="bilinear", align_corners=False)
        u = self.fuse1(u + d1)
        u = self.fuse0(F.interpolate(u, scale_factor=2.0, mode="nearest"))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(u, 1), 1))


NETWORKS = {"plain_narrow": plain_narrow, "plain_wide": plain_wide, "bottleneck": bottleneck,
            "mobilenetv2_se": mobilenetv2_se, "resnext": resnext, "densenet": densenet, "upsample": Upsample}


def build(name: str, channels: int = 3, k: int = 10, seed: int = 0) -> nn.Module:
    """The network with weights drawn from `seed` (the same weights in every process)."""
    if name not in NETWORKS:
        raise ValueError(f"unknown suite network {name!r}; known: {', '.join(NETWORKS)}")
    torch.manual_seed(seed)
    return NETWORKS[name](channels, k)


def export_onnx(net: nn.Module, path: Path, side: int, channels: int = 3, training: bool = True) -> Path:
    """Write `net` as an ONNX file with a dynamic batch axis: the legacy TorchScript exporter,
    opset 17, constant folding off (batch norm stays a trainable node). training=True exports
    the training form (batch norm with batch statistics) for dlbatch to train; training=False
    the eval form, as one would hand to onnxruntime. The module's mode is restored; its
    tensors afterwards equal the file's (a training-form export runs the module once in train
    mode, which updates the running statistics of both)."""
    was_training = net.training
    net.train(training)
    mode = torch.onnx.TrainingMode.TRAINING if training else torch.onnx.TrainingMode.EVAL
    buf = io.BytesIO()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(2, channels, side, side),), buf, opset_version=17, dynamo=False,
                          training=mode, do_constant_folding=False, input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    net.train(was_training)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return path


def forward_macs(net: nn.Module, side: int, channels: int = 3) -> int:
    """Multiply-accumulates of one image's forward pass in the convolutions and fully connected
    layers (what the step's GEMMs and direct kernels compute; a train step is about 3x this)."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            # each output (Conv) or input (ConvTranspose) position meets every weight once
            spatial = (inputs[0] if isinstance(module, nn.ConvTranspose2d) else output)[0, 0].numel()
            total += spatial * module.weight.numel()
        elif isinstance(module, nn.Linear):
            total += module.weight.numel()

    handles = [m.register_forward_hook(hook) for m in net.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            net(torch.zeros(1, channels, side, side))
    finally:
        for h in handles:
            h.remove()
        net.train(was_training)
    return int(total)
