"""The reference the benchmarks compare against: a plain hand-written PyTorch training loop
(nn.Module of the same layers, F.cross_entropy, HALCON-form SGD with torch._foreach ops)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_bn_relu(cin, cout, stride=1):
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


def compact(channels: int, k: int) -> nn.Module:
    """The same layers as dlbatch's `compact` backbone + GAP + fully connected head."""
    return nn.Sequential(*conv_bn_relu(channels, 32), *conv_bn_relu(32, 32), nn.MaxPool2d(2),
                         *conv_bn_relu(32, 64), nn.MaxPool2d(2), *conv_bn_relu(64, 128),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, k))


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


def resnet18(channels: int, k: int) -> nn.Module:
    layers = [nn.Conv2d(channels, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for stage, cout in enumerate((64, 128, 256, 512)):
        for block in range(2):
            layers.append(BasicBlock(cin, cout, 2 if stage > 0 and block == 0 else 1))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, k)]
    return nn.Sequential(*layers)


NETWORKS = {"compact": compact, "resnet18": resnet18}


class HandwrittenLoop:
    """One HALCON-form SGD step: v = mu v - lr g; w = w + v (weight prior on rank >= 2).

    The velocity is created at the first step, as torch.optim.SGD creates its momentum
    buffers (and as dlbatch creates its solver state), so that the benchmark charges the
    solver state to the training steps of every implementation alike."""

    def __init__(self, backbone: str, channels: int, k: int, lr=0.01, mu=0.9, weight_prior=1e-4,
                 device="cpu"):
        self.net = NETWORKS[backbone](channels, k).to(device)
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
