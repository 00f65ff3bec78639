"""The detection network on a backbone: a feature pyramid (FPN) on levels min_level..max_level
and RetinaNet's two heads, shared across levels.

Pyramid (Lin et al. 2017): 1x1 lateral convolutions on the backbone maps inside the level
range, a top-down pathway (nearest x2 upsampling + add) and a 3x3 output convolution per level;
levels deeper than the backbone come from stride-2 3x3 convolutions (torchvision's P6/P7).
Heads (Lin et al. 2017, RetinaNet): a stack of 3x3 conv + ReLU and a final 3x3 conv giving,
per location, A anchors x K class logits and A x P box deltas; the same weights run on every
level, initialised as RetinaNet (normal std 0.01, class bias -log((1 - pi) / pi) with pi = 0.01,
so every anchor starts at foreground probability 0.01).

Head outputs of all levels are flattened in anchor order (level, y, x, anchor) and
concatenated: `class_logits` N x A_total x K and `box_deltas` N x A_total x P.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ...core.errors import DLParamError
from ..network import Network

# capacity -> (pyramid and head width, 3x3 conv + ReLU layers per head)
CAPACITY = {"high": (128, 4), "medium": (64, 2), "low": (32, 1)}
PRIOR_PROBABILITY = 0.01
CLASS_LOGITS, BOX_DELTAS = "class_logits", "box_deltas"
CLASS_HEAD, BOX_HEAD = "class_head", "box_head"


@dataclass(frozen=True)
class HeadLayout:
    num_classes: int
    box_params: int          # 4 for rectangle1, 5 for rectangle2
    anchors_per_location: int


def _level_of(stride: int) -> int:
    return int(round(math.log2(stride)))


def build_pyramid(net: Network, min_level: int, max_level: int, width: int) -> dict[int, str]:
    """Pyramid maps {level: tensor} with `width` channels for min_level..max_level, on the
    backbone feature maps of `net`."""
    available = {_level_of(m.stride): m for m in net.features.maps}
    shallowest, deepest = min(available), max(available)
    if min_level < shallowest:
        raise DLParamError(f"min_level={min_level} needs a backbone map at stride {2 ** min_level}; this backbone's "
                           f"shallowest map has stride {2 ** shallowest}: set min_level >= {shallowest}")
    inner_levels = [lvl for lvl in range(min_level, max_level + 1) if lvl in available]
    pyramid: dict[int, str] = {}
    top = None
    for level in reversed(inner_levels):
        m = available[level]
        lateral = net.conv(m.name, width, 1, f"fpn.lateral{level}", padding=0, bias=True)
        top = lateral if top is None else net.add(lateral, net.upsample(top, 2, f"fpn.up{level}", mode="nearest"),
                                                   f"fpn.merge{level}")
        pyramid[level] = net.conv(top, width, 3, f"fpn.out{level}", bias=True)
    # deeper levels: stride-2 convolutions from the deepest pyramid (or backbone) map
    source, level = (pyramid[max(pyramid)], max(pyramid)) if pyramid else (available[deepest].name, deepest)
    first = True
    while level < max_level:
        level += 1
        x = source if first else net.relu(source, f"fpn.relu{level}")
        source = net.conv(x, width, 3, f"fpn.extra{level}", stride=2, bias=True)
        first = False
        if level >= min_level:
            pyramid[level] = source
    return {lvl: pyramid[lvl] for lvl in range(min_level, max_level + 1)}


def _head(net: Network, pyramid: dict[int, str], width: int, depth: int, outputs_per_anchor: int,
          layout: HeadLayout, name: str, bias: float, output: str) -> str:
    """One head with weights shared across levels; its outputs flattened and concatenated."""
    convs = [net.conv_weights(width, width, 3, f"{name}.conv{i}", std=0.01) for i in range(depth)]
    final = net.conv_weights(width, layout.anchors_per_location * outputs_per_anchor, 3, f"{name}.out",
                             std=0.01, bias=bias)
    per_level = []
    for level, x in pyramid.items():
        for i, weights in enumerate(convs):
            x = net.relu(net.conv_with(x, weights, f"{name}.conv{i}.p{level}"), f"{name}.relu{i}.p{level}")
        y = net.conv_with(x, final, f"{name}.out.p{level}")
        per_level.append(net.flatten_locations(y, outputs_per_anchor, f"{name}.flat.p{level}"))
    return net.concat(per_level, f"{name}.concat", output=output)


def build_heads(net: Network, pyramid: dict[int, str], capacity: str, layout: HeadLayout) -> tuple[str, str]:
    """(class logits, box deltas) outputs of RetinaNet's heads on `pyramid`."""
    width, depth = CAPACITY[capacity]
    prior_bias = -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
    logits = _head(net, pyramid, width, depth, layout.num_classes, layout, CLASS_HEAD, prior_bias, CLASS_LOGITS)
    deltas = _head(net, pyramid, width, depth, layout.box_params, layout, BOX_HEAD, 0.0, BOX_DELTAS)
    return logits, deltas
