"""Backbones: functions that add feature layers to a GraphBuilder and return their feature
maps by stride, so that a classifier reads the deepest one and a segmentation decoder or a
detection pyramid reads several."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .builder import GraphBuilder


@dataclass(frozen=True)
class FeatureMap:
    """A tensor of the backbone at `stride` (input pixels per feature pixel) with `channels`."""

    name: str
    stride: int
    channels: int


@dataclass(frozen=True)
class Features:
    """A backbone's feature maps, shallowest first (one per stride)."""

    maps: tuple[FeatureMap, ...]

    @property
    def last(self) -> FeatureMap:
        return self.maps[-1]

    def at(self, stride: int) -> FeatureMap:
        for m in self.maps:
            if m.stride == stride:
                return m
        raise KeyError(stride)


Backbone = Callable[[GraphBuilder, str, int], Features]


def compact(b: GraphBuilder, x: str, channels: int) -> Features:
    """Four 3x3 conv-BN-ReLU layers and two 2x2 max-pools: small and fast, for images from 8x8.
    Feature maps at strides 1, 2 and 4."""
    x = b.conv_bn_relu(x, channels, 32, 3, "stem")
    s1 = b.conv_bn_relu(x, 32, 32, 3, "block1")
    x = b.maxpool(s1, 2, 2, "pool1")
    s2 = b.conv_bn_relu(x, 32, 64, 3, "block2")
    x = b.maxpool(s2, 2, 2, "pool2")
    s4 = b.conv_bn_relu(x, 64, 128, 3, "block3")
    return Features((FeatureMap(s1, 1, 32), FeatureMap(s2, 2, 64), FeatureMap(s4, 4, 128)))


def _basic_block(b: GraphBuilder, x: str, cin: int, cout: int, stride: int, name: str) -> str:
    y = b.conv(x, cin, cout, 3, f"{name}.conv1", stride=stride)
    y = b.relu(b.batchnorm(y, cout, f"{name}.bn1"), f"{name}.relu1")
    y = b.batchnorm(b.conv(y, cout, cout, 3, f"{name}.conv2"), cout, f"{name}.bn2")
    shortcut = x
    if stride != 1 or cin != cout:
        shortcut = b.batchnorm(b.conv(x, cin, cout, 1, f"{name}.downsample.conv", stride=stride, pad=0),
                               cout, f"{name}.downsample.bn")
    return b.relu(b.add(y, shortcut, f"{name}.add"), f"{name}.relu2")


def resnet18(b: GraphBuilder, x: str, channels: int) -> Features:
    """The ResNet-18 layout (He et al. 2016, torchvision names): 7x7/2 stem, 3x3/2 max-pool,
    four stages of two basic blocks with 64, 128, 256, 512 channels. Feature maps at strides
    2 (stem) and 4, 8, 16, 32 (the stages)."""
    x = b.conv(x, channels, 64, 7, "conv1", stride=2, pad=3)
    stem = b.relu(b.batchnorm(x, 64, "bn1"), "relu")
    x = b.maxpool(stem, 3, 2, "maxpool", pad=1)
    maps = [FeatureMap(stem, 2, 64)]
    cin = 64
    for stage, cout in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            stride = 2 if (stage > 1 and block == 0) else 1
            x = _basic_block(b, x, cin, cout, stride, f"layer{stage}.{block}")
            cin = cout
        maps.append(FeatureMap(x, 2 ** (stage + 1), cout))
    return Features(tuple(maps))


BACKBONES: dict[str, Backbone] = {"compact": compact, "resnet18": resnet18}
