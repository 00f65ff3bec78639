"""Building a network for a model type: a backbone, the head layers on it, the graph `build` returns.

A model type's `build(hp, backbone, rng)` hook (dlbatch.core.model_type.ModelType) returns the
graph, its initial values and metadata. This module is the public, stable way to make them, the
one the built-in classification model type uses too: `build_backbone` adds a built-in backbone
("compact", "resnet18") or the classifier in an ONNX file (cut before its head, trained weights
kept) and says where its feature maps are; the `Network` it returns adds head layers
(convolution, batch normalization, ReLU, global average pooling, fully connected) initialised as
torchvision does, and `Network.finish` gives the graph and values. Layers are named by the
caller (`name` prefixes the layer's weights, `output` names its result tensor), so the metadata
can say which output holds the logits and which weights form the head.

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
from ..core.graph import Graph, ValueInfo
from .backbones import BACKBONES, Features
from .builder import GraphBuilder
from .file_backbone import read_backbone_file

__all__ = ["Network", "build_backbone", "backbone_names", "fully_connected_init"]

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
                   rng: np.random.Generator | int, *, strides: Sequence[int] = FILE_STRIDES) -> "Network":
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
        strides: for a file backbone, the strides to tap (the network needs at least three
            consecutive ones of them, or all when fewer are asked for); built-in backbones give
            all their feature maps.

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
    features, input_name, opset = read_backbone_file(builder, name, hp, strides=wanted,
                                                     min_levels=min(3, len(wanted)))
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


class Network:
    """A network under construction: the backbone's layers and the head layers added to it.

    Made by `build_backbone`. Each layer method reads one tensor (a feature map's `name`, or a
    tensor an earlier layer returned), adds its nodes and weights and returns the name of its
    output tensor. `name` names the layer: its weights are "<name>.weight", "<name>.bias", ...
    and no two layers share one; `output` names the output tensor (default: `name`), e.g.
    "logits" for the tensor a loss term reads. Input channel counts are known to the network.
    New weights follow torchvision: convolutions He-normal (fan_out), batch normalization scale
    1 and shift 0, fully connected layers as torch.nn.Linear. `finish` returns the graph.

    Attributes:
        features: the backbone's feature maps (`features.maps`, shallowest first; `features.last`
            the deepest; `features.at(stride)`), each with `name` (the tensor), `stride` (input
            pixels per feature pixel) and `channels`.
        input: the name of the image input (N x C x H x W), the key of `encode`'s inputs.
        backbone: the backbone's name or file path.
        opset: the ai.onnx opset of a file backbone's nodes (None for a built-in one).

    Examples:
        >>> net = build_backbone("compact", [16, 16, 1], 0)
        >>> net.input, net.backbone, net.opset
        ('image', 'compact', None)
        >>> s2 = net.features.at(2)
        >>> x = net.conv(s2.name, 16, 3, "extra.conv", stride=2)
        >>> x = net.relu(net.batchnorm(x, "extra.bn"), "extra.relu")
        >>> net.channels(x)
        16
        >>> net.conv(x, 8, 1, "extra.conv")
        Traceback (most recent call last):
        dlbatch.core.errors.DLParamError: the network already has 'extra.conv' (a tensor or weight of an earlier
        layer); give the new layer another name
    """

    def __init__(self, builder: GraphBuilder, features: Features, input_name: str, image_channels: int,
                 backbone: str, *, opset: int | None = None):
        """Made by `build_backbone`; a model type does not call this itself.

        Args:
            builder: the graph builder holding the backbone.
            features: its feature maps.
            input_name: the image input's name.
            image_channels: the image's channel count.
            backbone: the backbone's name or path.
            opset: the file backbone's opset, None for a built-in backbone.
        """
        self._b = builder
        self.features = features
        self.input = input_name
        self.backbone = backbone
        self.opset = opset
        self._image_channels = image_channels
        # per tensor: its shape as a graph output declares it (channels known, the rest free)
        self._shapes: dict[str, tuple] = {input_name: (None, image_channels, None, None)}
        for m in features.maps:
            self._shapes[m.name] = (None, m.channels, None, None)

    # -- what is there ---------------------------------------------------------------------
    def channels(self, x: str) -> int:
        """The channel count (features of a flattened tensor) of tensor `x`.

        Args:
            x: a feature map's name or a tensor a layer returned.

        Returns:
            Its channels.

        Raises:
            DLParamError: the network has no such tensor.

        Examples:
            >>> net.channels(net.features.last.name)
            128
        """
        return self._shape(x)[1]

    def _shape(self, x: str) -> tuple:
        if x not in self._shapes:
            known = [m.name for m in self.features.maps] + [t for t in self._shapes if t not in
                                                            {m.name for m in self.features.maps}]
            raise DLParamError(f"the network has no tensor {x!r} that a layer can read; known: {known[:12]}"
                               f"{' ...' if len(known) > 12 else ''} (a feature map's name or what a layer returned)")
        return self._shapes[x]

    def _claim(self, name: str, output: str | None) -> str:
        """The output name of a new layer `name`, refusing names the network already has."""
        if not isinstance(name, str) or not name:
            raise DLParamError(f"a layer needs a name (a non-empty string), got {name!r}")
        out = output or name
        taken = {o for n in self._b.nodes for o in n.outputs} | set(self._b.values) | set(self._shapes)
        clash = sorted(t for t in taken if t in (name, out) or t.startswith(name + "."))
        if clash:
            raise DLParamError(f"the network already has {clash[0]!r} (a tensor or weight of an earlier layer); "
                               "give the new layer another name")
        return out

    def _map(self, x: str, what: str) -> int:
        shape = self._shape(x)
        if len(shape) != 4:
            raise DLParamError(f"{what} reads a feature map (N x C x H x W); {x!r} is N x {shape[1]}")
        return shape[1]

    # -- layers ----------------------------------------------------------------------------
    def conv(self, x: str, channels: int, kernel_size: int, name: str, *, stride: int = 1,
             padding: int | None = None, bias: bool = False, std: float | None = None,
             output: str | None = None) -> str:
        """A 2-D convolution (ONNX Conv), He-normal initialised (fan_out) unless `std` is given.

        Args:
            x: the feature map it reads.
            channels: its output channels.
            kernel_size: k of the k x k kernel.
            name: the layer's name ("<name>.weight", "<name>.bias").
            stride: the stride in both axes.
            padding: pixels added on every side (default k // 2: the same size at stride 1).
            bias: whether it adds a bias (zeros); leave it off before a batch normalization.
            std: the weights' standard deviation instead of He's (e.g. 0.01 for a last layer).
            output: the output tensor's name (default `name`).

        Returns:
            The output tensor's name.

        Raises:
            DLParamError: `x` is unknown or no feature map, or `name` is taken.

        Examples:
            >>> y = net.conv(net.features.last.name, 4, 1, "head.conv", bias=True, output="scores")
            >>> y, net.channels(y)
            ('scores', 4)
        """
        cin = self._map(x, "conv")
        out = self._claim(name, output)
        y = self._b.conv(x, cin, int(channels), int(kernel_size), name, stride=int(stride), pad=padding,
                         bias=bias, output=out, std=std)
        self._shapes[y] = (None, int(channels), None, None)
        return y

    def batchnorm(self, x: str, name: str, *, output: str | None = None) -> str:
        """Batch normalization (scale 1, shift 0, running mean 0 and variance 1, epsilon 1e-5).

        Args:
            x: the feature map it reads.
            name: the layer's name ("<name>.scale", "<name>.bias", "<name>.running_mean", ...).
            output: the output tensor's name (default `name`).

        Returns:
            The output tensor's name.

        Raises:
            DLParamError: `x` is unknown or no feature map, or `name` is taken.

        Examples:
            >>> net.batchnorm("scores", "head.bn")
            'head.bn'
        """
        c = self._map(x, "batchnorm")
        out = self._claim(name, output)
        self._b.batchnorm(x, c, name)
        self._b.nodes[-1].outputs[0] = out
        self._shapes[out] = self._shapes[x]
        return out

    def relu(self, x: str, name: str, *, output: str | None = None) -> str:
        """ReLU, max(x, 0), on a feature map or a flattened tensor.

        Args:
            x: the tensor it reads.
            name: the layer's name.
            output: the output tensor's name (default `name`).

        Returns:
            The output tensor's name.

        Raises:
            DLParamError: `x` is unknown or `name` is taken.

        Examples:
            >>> net.relu("head.bn", "head.relu")
            'head.relu'
        """
        shape = self._shape(x)
        out = self._claim(name, output)
        y = self._b.node("Relu", [x], name, outputs=[out])
        self._shapes[y] = shape
        return y

    def conv_bn_relu(self, x: str, channels: int, kernel_size: int, name: str, *, stride: int = 1) -> str:
        """Convolution (no bias), batch normalization and ReLU: layers "<name>.conv", ".bn", ".relu".

        Args:
            x: the feature map it reads.
            channels: its output channels.
            kernel_size: k of the k x k kernel.
            name: the block's name.
            stride: the convolution's stride.

        Returns:
            The ReLU's output tensor ("<name>.relu").

        Raises:
            DLParamError: `x` is unknown or no feature map, or `name` is taken.

        Examples:
            >>> net.channels(net.conv_bn_relu(net.features.last.name, 32, 3, "neck"))
            32
        """
        self._claim(name, None)
        y = self.conv(x, channels, kernel_size, f"{name}.conv", stride=stride)
        return self.relu(self.batchnorm(y, f"{name}.bn"), f"{name}.relu")

    def global_average_pool(self, x: str, name: str, *, output: str | None = None) -> str:
        """The mean over each channel's pixels, flattened: N x C x H x W -> N x C.

        Args:
            x: the feature map it reads.
            name: the layer's name (its nodes "<name>.gap" and "<name>.flatten").
            output: the output tensor's name (default "<name>.flatten").

        Returns:
            The N x C tensor's name.

        Raises:
            DLParamError: `x` is unknown or no feature map, or `name` is taken.

        Examples:
            >>> pooled = net.global_average_pool("neck.relu", "pool")
            >>> pooled, net.channels(pooled)
            ('pool.flatten', 32)
        """
        c = self._map(x, "global_average_pool")
        out = self._claim(name, output)
        y = self._b.global_avgpool_flatten(x, name)
        if out != name:
            self._b.nodes[-1].outputs[0] = y = out
        self._shapes[y] = (None, c)
        return y

    def fully_connected(self, x: str, units: int, name: str, *, output: str | None = None) -> str:
        """A fully connected layer (ONNX Gemm, y = x W^T + b), initialised as torch.nn.Linear.

        Args:
            x: the N x C tensor it reads (e.g. from `global_average_pool`).
            units: its number of outputs (e.g. the class count).
            name: the layer's name ("<name>.weight" units x C, "<name>.bias").
            output: the output tensor's name (default `name`).

        Returns:
            The N x units tensor's name.

        Raises:
            DLParamError: `x` is unknown or a feature map, or `name` is taken.

        Examples:
            >>> net.fully_connected("pool.flatten", 3, "fc", output="logits")
            'logits'
        """
        shape = self._shape(x)
        if len(shape) != 2:
            raise DLParamError(f"fully_connected reads an N x C tensor; {x!r} is a feature map: pool it first "
                               "(global_average_pool)")
        out = self._claim(name, output)
        y = self._b.dense(x, shape[1], int(units), name, output=out)
        self._shapes[y] = (None, int(units))
        return y

    # -- the result ------------------------------------------------------------------------
    def finish(self, outputs: Sequence[str]) -> tuple[Graph, dict[str, np.ndarray]]:
        """The graph with `outputs` as its outputs, and its initial values: what `build` returns
        beside its metadata. Nodes no output needs (e.g. unused backbone stages) stay out.

        Args:
            outputs: the tensors the graph gives (those the loss terms and decode read).

        Returns:
            `(graph, values)`: values holds one numpy array per `graph.initializer_names()`.

        Raises:
            DLParamError: no outputs, or an unknown tensor.

        Examples:
            >>> graph, values = net.finish(["logits"])
            >>> graph.outputs[0].shape, sorted(values) == sorted(graph.initializer_names())
            ((None, 3), True)
            >>> "head.bn.scale" in values   # not needed for "logits"
            False
        """
        names = [outputs] if isinstance(outputs, str) else list(outputs)
        if not names:
            raise DLParamError("finish needs at least one output tensor (e.g. the logits a loss term reads)")
        shapes = [self._shape(n) for n in names]
        full = self._b.graph([ValueInfo(self.input, (None, self._image_channels, None, None))],
                             [ValueInfo(n, s) for n, s in zip(names, shapes)])
        if self.opset is not None:
            full.opset = self.opset  # the file's nodes keep the semantics of its opset
        graph = full.restricted_to(full.outputs)
        return graph, {k: self._b.values[k] for k in graph.initializer_names()}
