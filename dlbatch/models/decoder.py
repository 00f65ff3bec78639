"""Segmentation's decoder: a top-down pathway with lateral skip connections (FPN / U-Net style)
built with `dlbatch.models.network.Network`'s layers. From the deepest map up, each level is
upsampled bilinearly by 2, added to a 1x1 projection of the shallower backbone map and refined
by a 3x3 conv-BN-ReLU; a 1x1 convolution gives the class logits at the shallowest level's stride
and a last bilinear resize brings them to the input size (as DeepLab and torchvision's
segmentation heads do: upsampling K logit maps is far cheaper than upsampling the features).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from .backbones import FeatureMap

if TYPE_CHECKING:
    from .network_layers import Network

PREFIX = "decoder"
CLASSIFIER = f"{PREFIX}.classifier"   # its weight and bias are re-initialised for a new class count


def decoder_width(maps: Sequence[FeatureMap]) -> int:
    """Channels of the decoder: those of the shallowest map, kept between 32 and 128."""
    return max(32, min(128, maps[0].channels))


def build_decoder(net: Network, maps: Sequence[FeatureMap], num_classes: int, output: str) -> str:
    """Add the decoder on `maps` (shallowest first, strides doubling) to `net` and return
    `output`, the N x num_classes x H x W logits at the input's resolution."""
    width = decoder_width(maps)
    deepest = maps[-1]
    x = net.conv(deepest.name, width, 1, f"{PREFIX}.lateral{deepest.stride}", padding=0, bias=True)
    for deeper, level in zip(reversed(maps[1:]), reversed(maps[:-1])):
        up = net.upsample(x, deeper.stride // level.stride, f"{PREFIX}.up{level.stride}")
        lateral = net.conv(level.name, width, 1, f"{PREFIX}.lateral{level.stride}", padding=0, bias=True)
        x = net.add(up, lateral, f"{PREFIX}.merge{level.stride}")
        x = net.conv_bn_relu(x, width, 3, f"{PREFIX}.refine{level.stride}")
    stride = maps[0].stride
    # small initial logits (std 0.01, as FCN and Detectron heads): every class starts near 1/K
    logits = net.conv(x, num_classes, 1, CLASSIFIER, padding=0, bias=True, std=0.01,
                      output=output if stride == 1 else None)
    return logits if stride == 1 else net.upsample(logits, stride, f"{PREFIX}.upsample", output=output)
