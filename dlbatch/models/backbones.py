"""Backbones: functions that add feature layers to a GraphBuilder and return
(output name, number of output channels)."""
from __future__ import annotations

from typing import Callable

from .builder import GraphBuilder

Backbone = Callable[[GraphBuilder, str, int], tuple[str, int]]


def compact(b: GraphBuilder, x: str, channels: int) -> tuple[str, int]:
    """Four 3x3 conv-BN-ReLU layers and two 2x2 max-pools: small and fast, for images from 8x8."""
    x = b.conv_bn_relu(x, channels, 32, 3, "stem")
    x = b.conv_bn_relu(x, 32, 32, 3, "block1")
    x = b.maxpool(x, 2, 2, "pool1")
    x = b.conv_bn_relu(x, 32, 64, 3, "block2")
    x = b.maxpool(x, 2, 2, "pool2")
    x = b.conv_bn_relu(x, 64, 128, 3, "block3")
    return x, 128


def _basic_block(b: GraphBuilder, x: str, cin: int, cout: int, stride: int, name: str) -> str:
    y = b.conv(x, cin, cout, 3, f"{name}.conv1", stride=stride)
    y = b.relu(b.batchnorm(y, cout, f"{name}.bn1"), f"{name}.relu1")
    y = b.batchnorm(b.conv(y, cout, cout, 3, f"{name}.conv2"), cout, f"{name}.bn2")
    shortcut = x
    if stride != 1 or cin != cout:
        shortcut = b.batchnorm(b.conv(x, cin, cout, 1, f"{name}.downsample.conv", stride=stride, pad=0),
                               cout, f"{name}.downsample.bn")
    return b.relu(b.add(y, shortcut, f"{name}.add"), f"{name}.relu2")


def resnet18(b: GraphBuilder, x: str, channels: int) -> tuple[str, int]:
    """The ResNet-18 layout (He et al. 2016, torchvision names): 7x7/2 stem, 3x3/2 max-pool,
    four stages of two basic blocks with 64, 128, 256, 512 channels."""
    x = b.conv(x, channels, 64, 7, "conv1", stride=2, pad=3)
    x = b.relu(b.batchnorm(x, 64, "bn1"), "relu")
    x = b.maxpool(x, 3, 2, "maxpool", pad=1)
    cin = 64
    for stage, cout in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            stride = 2 if (stage > 1 and block == 0) else 1
            x = _basic_block(b, x, cin, cout, stride, f"layer{stage}.{block}")
            cin = cout
    return x, 512


BACKBONES: dict[str, Backbone] = {"compact": compact, "resnet18": resnet18}
