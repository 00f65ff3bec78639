"""The reference the benchmarks compare against: a plain hand-written PyTorch training loop
(nn.Module of the same layers, F.cross_entropy, HALCON-form SGD with torch._foreach ops).

Each backbone is a list of stages, one per feature map dlbatch's backbone returns
(dlbatch/models/backbones.py); the classifier runs them in a row and adds GAP + fully connected,
the segmentation network reads the maps at the strides dlbatch's segmentation model reads
(dlbatch/models/segmentation.py) into the same top-down decoder (dlbatch/models/decoder.py)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_bn_relu(cin, cout, stride=1):
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


def compact_stages(channels: int) -> tuple[list[nn.Module], tuple[int, ...], tuple[int, ...]]:
    """dlbatch's `compact` backbone: (stages, their strides, their channels)."""
    return ([nn.Sequential(*conv_bn_relu(channels, 32), *conv_bn_relu(32, 32)),
             nn.Sequential(nn.MaxPool2d(2), *conv_bn_relu(32, 64)),
             nn.Sequential(nn.MaxPool2d(2), *conv_bn_relu(64, 128))],
            (1, 2, 4), (32, 64, 128))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


def resnet18_stages(channels: int) -> tuple[list[nn.Module], tuple[int, ...], tuple[int, ...]]:
    """dlbatch's `resnet18` backbone: the stem (stride 2), then the four stages of two basic
    blocks (strides 4..32; the 3x3/2 max-pool opens the first)."""
    stages = [nn.Sequential(nn.Conv2d(channels, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU())]
    cin = 64
    for stage, cout in enumerate((64, 128, 256, 512)):
        blocks = [nn.MaxPool2d(3, 2, 1)] if stage == 0 else []
        for block in range(2):
            blocks.append(BasicBlock(cin, cout, 2 if stage > 0 and block == 0 else 1))
            cin = cout
        stages.append(nn.Sequential(*blocks))
    return stages, (2, 4, 8, 16, 32), (64, 64, 128, 256, 512)


BACKBONES = {"compact": compact_stages, "resnet18": resnet18_stages}


def classifier(backbone: str, channels: int, k: int) -> nn.Module:
    """The backbone's layers in a row + GAP + fully connected head."""
    stages, _, widths = BACKBONES[backbone](channels)
    return nn.Sequential(*stages, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], k))


# the strides the segmentation decoder reads from each backbone (BUILTIN_STRIDES in dlbatch)
SEGMENTATION_STRIDES = {"compact": (1, 2, 4), "resnet18": (4, 8, 16, 32)}


class Segmenter(nn.Module):
    """Backbone + dlbatch's top-down decoder: from the deepest map up, a 1x1 lateral conv (with
    bias), bilinear x2 upsampling (half-pixel centres), + the 1x1 lateral of the shallower map,
    3x3 conv-BN-ReLU refine; a 1x1 classifier conv (bias, weights std 0.01) at the shallowest
    tapped stride, then bilinear upsampling to the input size."""

    def __init__(self, backbone: str, channels: int, k: int):
        super().__init__()
        stages, strides, widths = BACKBONES[backbone](channels)
        taps = SEGMENTATION_STRIDES[backbone]
        self.stages = nn.ModuleList(stages)
        self.taps = [strides.index(s) for s in taps]
        tapped = [widths[i] for i in self.taps]
        width = max(32, min(128, tapped[0]))  # decoder_width in dlbatch
        self.laterals = nn.ModuleList(nn.Conv2d(c, width, 1) for c in tapped)
        self.refines = nn.ModuleList(nn.Sequential(*conv_bn_relu(width, width)) for _ in tapped[:-1])
        self.classifier = nn.Conv2d(width, k, 1)
        nn.init.normal_(self.classifier.weight, 0.0, 0.01)
        nn.init.zeros_(self.classifier.bias)
        self.factors = [b // a for a, b in zip(taps, taps[1:])]
        self.out_stride = taps[0]

    def forward(self, x):
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        maps = [maps[i] for i in self.taps]
        y = self.laterals[-1](maps[-1])
        for i in reversed(range(len(maps) - 1)):
            y = F.interpolate(y, scale_factor=self.factors[i], mode="bilinear", align_corners=False)
            y = self.refines[i](y + self.laterals[i](maps[i]))
        y = self.classifier(y)
        if self.out_stride != 1:
            y = F.interpolate(y, scale_factor=self.out_stride, mode="bilinear", align_corners=False)
        return y


NETWORKS = {"classification": classifier, "segmentation": Segmenter}


class HandwrittenLoop:
    """One HALCON-form SGD step: v = mu v - lr g; w = w + v (weight prior on rank >= 2).

    The velocity is created at the first step, as torch.optim.SGD creates its momentum
    buffers (and as dlbatch creates its solver state), so that the benchmark charges the
    solver state to the training steps of every implementation alike. The loss is
    F.cross_entropy: over the batch for classification, over every pixel for segmentation
    (labels N x H x W)."""

    def __init__(self, backbone: str, channels: int, k: int, lr=0.01, mu=0.9, weight_prior=1e-4,
                 device="cpu", model: str = "classification"):
        self.net = NETWORKS[model](backbone, channels, k).to(device)
        self.params = [p for p in self.net.parameters()]
        self.decayed = [p for p in self.params if p.dim() >= 2]
        self.velocity = None
        self.lr, self.mu, self.wp = lr, mu, weight_prior

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        self.net.train()
        loss = F.cross_entropy(self.net(images), labels)
        grads = torch.autograd.grad(loss, self.params)
        grads = [g + self.wp * p if p.dim() >= 2 else g for g, p in zip(grads, self.params)]
        with torch.no_grad():
            if self.velocity is None:  # v = mu * 0 - lr * g
                self.velocity = torch._foreach_mul(grads, -self.lr)
            else:
                torch._foreach_mul_(self.velocity, self.mu)
                torch._foreach_add_(self.velocity, grads, alpha=-self.lr)
            torch._foreach_add_(self.params, self.velocity)
        return loss.item()

    @torch.no_grad()
    def infer(self, images: torch.Tensor) -> torch.Tensor:
        self.net.eval()
        return self.net(images)
