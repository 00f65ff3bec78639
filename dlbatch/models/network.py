"""Building a network for a model type: a backbone, the head layers on it, the graph `build` returns.

A model type's `build(hp, backbone, rng)` hook (dlbatch.core.model_type.ModelType) returns the
graph, its initial values and metadata. This module is the public, stable way to make them, the
one the built-in classification model type uses too: `build_backbone` adds a built-in backbone
("compact", "resnet18") or the classifier in an ONNX file (cut before its head, trained weights
kept) and says where its feature maps are; the `Network` it returns adds head layers
(convolution, batch normalization, ReLU, global average pooling, fully connected) initialised as
torchvision does, and `Network.finish` gives the graph and values. Layers are named by the
caller (`name` prefixes the layer's weights, `output` names its result tensor), so the metadata
can say which output holds the logits and which weights form the head. For decoders, feature
pyramids and dense detection heads the network also upsamples, adds and concatenates maps,
shares convolution weights across levels and flattens per-location outputs (the built-in
segmentation and detection model types build through it too).

Examples:
    A classifier head with 5 outputs on the compact backbone, built the way a model type's
    `build` hook does it:

    >>> import numpy as np
    >>> net = build_backbone("compact", [32, 32, 3], np.random.default_rng(0))
    >>> deepest = net.features.last
    >>> deepest.stride, deepest.channels
    (4, 128)
    >>> pooled = net.global_average_pool(deepest.name, "head")
    >>> logits = net.fully_connected(pooled, 5, "fc", output="logits")
    >>> graph, values = net.finish([logits])
    >>> [(v.name, v.shape) for v in graph.outputs], values["fc.weight"].shape
    ([('logits', (None, 5))], (5, 128))
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np

from ..core.errors import DLParamError
from .backbones import BACKBONES
from .builder import GraphBuilder
from .file_backbone import read_backbone_file
from .network_layers import ConvWeights, Network

__all__ = ["Network", "ConvWeights", "build_backbone", "backbone_names", "fully_connected_init"]

# the smallest image side each built-in backbone takes (compact: two 2x2 max-pools)
MIN_SIDE = {"compact": 4, "resnet18": 1}
FILE_STRIDES = (4, 8, 16, 32)   # the strides tapped in a classifier file, as segmentation and detection do


def backbone_names() -> list[str]:
    """The names of the built-in backbones, which `build_backbone` takes besides an .onnx path.

    A model type's `backbones()` hook may simply return them.

    Returns:
        The names, "compact" (small, fast, feature maps at strides 1, 2, 4) first, then
        "resnet18" (the ResNet-18 layout, strides 2, 4, 8, 16, 32).

    Examples:
        >>> backbone_names()
        ['compact', 'resnet18']
    """
    return list(BACKBONES)


def _image_dimensions(image_dimensions) -> tuple[int, int, int]:
    if isinstance(image_dimensions, Mapping):
        keys = ("image_width", "image_height", "image_num_channels")
        missing = [k for k in keys if k not in image_dimensions]
        if missing:
            raise DLParamError(f"image_dimensions as a mapping needs the keys {list(keys)} (a build hook's hp "
                               f"has them); missing {missing}")
        dims = [image_dimensions[k] for k in keys]
    else:
        dims = list(image_dimensions)
    if len(dims) != 3 or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0
                                 for d in dims):
        raise DLParamError(f"image_dimensions must be [width, height, channels], three positive integers; got "
                           f"{image_dimensions!r:.80}")
    w, h, c = (int(d) for d in dims)
    return w, h, c


def build_backbone(backbone: str | os.PathLike, image_dimensions: Sequence[int] | Mapping[str, Any],
                   rng: np.random.Generator | int, *, strides: Sequence[int] = FILE_STRIDES,
                   min_levels: int | None = None) -> Network:
    """A new network holding a backbone, ready for a model type's head layers.

    Call it from a model type's `build` hook with the hook's `backbone`, `hp` and `rng`: the same
    arguments give the same weights.

    Args:
        backbone: a built-in name (see `backbone_names`) or the path of an ONNX classifier file
            (.onnx, written by dlbatch or exported e.g. by torch.onnx.export): its head is cut,
            its trained weights are kept.
        image_dimensions: [width, height, channels] of the input images, as `create_dl_model`
            takes them, or a build hook's `hp` (its image_width, image_height,
            image_num_channels).
        rng: the generator the new weights are drawn from (the build hook's), or a seed.
        strides: for a file backbone, the strides to tap; built-in backbones give all their
            feature maps.
        min_levels: for a file backbone, the fewest consecutive `strides` the network must have
            (default three, or all when fewer are asked for); it gives the longest run it has.
            A feature pyramid that makes its deeper levels itself may take 1.

    Returns:
        The Network; `network.features` are the backbone's feature maps, shallowest first.

    Raises:
        DLParamError: an unknown backbone name (the message lists the known ones), bad image
            dimensions, or an image too small for the backbone.
        DLModelFileError: (from reading a file backbone) a missing or unreadable file, or a
            network without the feature maps asked for.

    Examples:
        >>> net = build_backbone("resnet18", {"image_width": 64, "image_height": 48,
        ...                                   "image_num_channels": 1}, 0)
        >>> [(m.stride, m.channels) for m in net.features.maps]
        [(2, 64), (4, 64), (8, 128), (16, 256), (32, 512)]
        >>> build_backbone("mobilenet", [32, 32, 3], 0)
        Traceback (most recent call last):
        dlbatch.core.errors.DLParamError: unknown backbone 'mobilenet'; the built-in backbones are
        compact, resnet18, or give the path of an ONNX classifier file (.onnx)
    """
    w, h, c = _image_dimensions(image_dimensions)
    rng = np.random.default_rng(rng)
    builder = GraphBuilder(rng)
    name = os.fspath(backbone) if isinstance(backbone, (str, os.PathLike)) else backbone
    if isinstance(name, str) and name in BACKBONES:
        if min(w, h) < MIN_SIDE[name]:
            raise DLParamError(f"the {name} backbone needs image_width and image_height of at least "
                               f"{MIN_SIDE[name]} pixels; got image_width={w}, image_height={h}")
        features = BACKBONES[name](builder, "image", c)
        return Network(builder, features, "image", c, name)
    if not (isinstance(name, str) and name.lower().endswith(".onnx")):
        raise DLParamError(f"unknown backbone {backbone!r}; the built-in backbones are "
                           f"{', '.join(BACKBONES)}, or give the path of an ONNX classifier file (.onnx)")
    wanted = tuple(int(s) for s in strides)
    hp = {"image_width": w, "image_height": h, "image_num_channels": c}
    least = min(3, len(wanted)) if min_levels is None else int(min_levels)
    features, input_name, opset = read_backbone_file(builder, name, hp, strides=wanted, min_levels=least)
    return Network(builder, features, input_name, c, name, opset=opset)


def fully_connected_init(in_features: int, out_features: int, rng: np.random.Generator | int
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Fresh (weight, bias) of a fully connected layer, as `Network.fully_connected` draws them.

    torch.nn.Linear's initialisation: both uniform in +-1/sqrt(in_features). For a model type
    that re-initialises its head when the class count changes (`on_param_changed` with
    `model.replace_params`).

    Args:
        in_features: the width of the layer's input.
        out_features: the number of outputs.
        rng: a generator or a seed.

    Returns:
        float32 weight (out_features x in_features) and bias (out_features).

    Examples:
        >>> weight, bias = fully_connected_init(128, 3, 0)
        >>> weight.shape, bias.shape, bool(abs(weight).max() <= 1 / 128 ** 0.5)
        ((3, 128), (3,), True)
    """
    return GraphBuilder(np.random.default_rng(rng)).dense_init(int(in_features), int(out_features))
