"""The layers a model type adds to a backbone: `Network`, made by
`dlbatch.models.network.build_backbone` (the public module, which re-exports it).

It wraps the internal GraphBuilder, keeps every tensor's channel count so that a layer needs
only its output size, refuses a layer name already in use, and cuts the finished graph to what
its outputs need. Its multi-scale layers (upsample, add, concat, shared convolution weights,
per-location flattening), which decoders, feature pyramids and detection heads need, come from
`dlbatch.models.network_multiscale.MultiScaleLayers`."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..core.errors import DLModelFileError, DLParamError
from ..core.graph import Graph, ValueInfo
from .backbones import Features
from .builder import GraphBuilder
from .network_multiscale import ConvWeights, MultiScaleLayers

__all__ = ["Network", "ConvWeights"]


class Network(MultiScaleLayers):
    """A network under construction: the backbone's layers and the head layers added to it.

    Made by `build_backbone`. Each layer method reads one tensor (a feature map's `name`, or a
    tensor an earlier layer returned), adds its nodes and weights and returns the name of its
    output tensor. `name` names the layer: its weights are "<name>.weight", "<name>.bias", ...
    and no two layers share one; `output` names the output tensor (default: `name`), e.g.
    "logits" for the tensor a loss term reads. Input channel counts are known to the network.
    New weights follow torchvision: convolutions He-normal (fan_out), batch normalization scale
    1 and shift 0, fully connected layers as torch.nn.Linear. `finish` returns the graph. For
    decoders, feature pyramids and dense detection heads it also has `upsample`, `add`,
    `concat`, `conv_weights` with `conv_with` (weights shared across levels) and
    `flatten_locations` (from `dlbatch.models.network_multiscale.MultiScaleLayers`). A name a file
    backbone already uses is refused as a DLModelFileError (rename it in the file).

    Attributes:
        features: the backbone's feature maps (`features.maps`, shallowest first; `features.last`
            the deepest; `features.at(stride)`), each with `name` (the tensor), `stride` (input
            pixels per feature pixel) and `channels`.
        input: the name of the image input (N x C x H x W), the key of `encode`'s inputs.
        backbone: the backbone's name or file path.
        opset: the ai.onnx opset of a file backbone's nodes (None for a built-in one).

    Examples:
        >>> from dlbatch.models.network import build_backbone
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
        # a file backbone's own names: a layer that would reuse one is the file's problem
        self._file_names = self.names() if opset is not None else frozenset()

    # -- what is there ---------------------------------------------------------------------
    def channels(self, x: str) -> int:
        """The channel count (features of a flattened tensor, P of an N x rows x P one) of `x`.

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
        shape = self._shape(x)
        return shape[2] if len(shape) == 3 else shape[1]

    def names(self) -> frozenset[str]:
        """Every tensor and weight name the network has (the backbone's included).

        The layer methods refuse these as layer names; a model type may check a file backbone
        for names it reserves.

        Returns:
            The names.

        Examples:
            >>> "image" in net.names(), "extra.conv.weight" in net.names()
            (True, True)
        """
        return frozenset({o for n in self._b.nodes for o in n.outputs} | set(self._b.values) | set(self._shapes))

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
        clash = sorted(t for t in self.names() if t in (name, out) or t.startswith(name + "."))
        if clash and clash[0] in self._file_names:
            raise DLModelFileError(f"{self.backbone}: the classifier already has a tensor or weight {clash[0]!r}, a "
                                   f"name the layer {name!r} uses; rename it in the network before exporting it")
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
