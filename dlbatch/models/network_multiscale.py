"""The multi-scale layers of `dlbatch.models.network.Network`: what decoders, feature pyramids and
dense detection heads need beyond head layers: upsampling, sums and concatenations of maps,
convolution weights shared across pyramid levels, and the per-location flattening of a head's
outputs. A mixin, so that network_layers.py stays one readable size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..core.errors import DLParamError


@dataclass(frozen=True)
class ConvWeights:
    """Convolution weights that several layers share (`Network.conv_weights`, `conv_with`).

    Attributes:
        weight: the weight tensor's name (channels x in_channels x k x k).
        bias: the bias tensor's name.
        in_channels: the input channels it reads.
        channels: its output channels.
        kernel_size: k of the k x k kernel.

    Examples:
        >>> from dlbatch.models.network import build_backbone
        >>> shared = build_backbone("compact", [16, 16, 1], 0).conv_weights(128, 8, 3, "head", std=0.01)
        >>> shared.weight, shared.in_channels, shared.channels, shared.kernel_size
        ('head.weight', 128, 8, 3)
    """

    weight: str
    bias: str
    in_channels: int
    channels: int
    kernel_size: int


class MultiScaleLayers:
    """The multi-scale layers of `dlbatch.models.network.Network` (mixed in; not used alone).

    Examples:
        >>> from dlbatch.models.network import build_backbone
        >>> net = build_backbone("compact", [16, 16, 1], 0)
        >>> s2, s4 = net.features.at(2), net.features.at(4)
        >>> x = net.conv(s4.name, 16, 1, "top", bias=True)
    """

    def upsample(self, x: str, factor: int, name: str, *, mode: str = "linear", output: str | None = None) -> str:
        """Upsampling by an integer factor (ONNX Resize): "linear" is bilinear with half-pixel
        centres (torch's interpolate(align_corners=False)), "nearest" repeats each pixel.

        Args:
            x: the feature map it reads.
            factor: the scale of both sides.
            name: the layer's name (its constant "<name>.scales").
            mode: "linear" (decoders) or "nearest" (feature pyramids).
            output: the output tensor's name (default `name`).

        Returns:
            The output tensor's name.

        Raises:
            DLParamError: an unknown mode, a factor below 1, `x` unknown or no feature map, or
                `name` taken.

        Examples:
            >>> up = net.upsample(x, 2, "top.up")
            >>> net.channels(up)
            16
            >>> net.upsample(x, 2, "top.up2", mode="cubic")
            Traceback (most recent call last):
            dlbatch.core.errors.DLParamError: upsample mode must be 'linear' or 'nearest', got 'cubic'
        """
        c = self._map(x, "upsample")
        if mode not in ("linear", "nearest"):
            raise DLParamError(f"upsample mode must be 'linear' or 'nearest', got {mode!r}")
        if isinstance(factor, bool) or not float(factor).is_integer() or factor < 1:
            raise DLParamError(f"upsample needs an integer factor >= 1, got {factor!r}")
        out = self._claim(name, output)
        if mode == "linear":
            self._b.resize(x, int(factor), name, output=out)
        else:
            self._b.upsample_nearest(x, int(factor), name)
            self._b.nodes[-1].outputs[0] = out
        self._shapes[out] = (None, c, None, None)
        return out

    def add(self, a: str, b: str, name: str, *, output: str | None = None) -> str:
        """The elementwise sum of two feature maps of the same channels (e.g. a skip connection).

        Args:
            a: one feature map.
            b: the other, of the same size.
            name: the layer's name.
            output: the output tensor's name (default `name`).

        Returns:
            The output tensor's name.

        Raises:
            DLParamError: unknown tensors, other channel counts, or `name` taken.

        Examples:
            >>> net.channels(net.add(up, net.conv(s2.name, 16, 1, "lateral"), "merge"))
            16
        """
        ca, cb = self._map(a, "add"), self._map(b, "add")
        if ca != cb:
            raise DLParamError(f"add needs tensors of the same channels; {a!r} has {ca}, {b!r} has {cb}")
        out = self._claim(name, output)
        self._b.node("Add", [a, b], name, outputs=[out])
        self._shapes[out] = (None, ca, None, None)
        return out

    def concat(self, xs: Sequence[str], name: str, *, output: str | None = None) -> str:
        """Tensors joined along axis 1: the channels of feature maps, or the rows of N x rows x P
        tensors (e.g. a detection head's anchors of every pyramid level).

        Args:
            xs: the tensors, all feature maps or all N x rows x P of the same P.
            name: the layer's name.
            output: the output tensor's name (default `name`).

        Returns:
            The output tensor's name.

        Raises:
            DLParamError: no tensors, unknown ones, a mix of kinds or of P, or `name` taken.

        Examples:
            >>> net.channels(net.concat(["merge", up], "both"))
            32
        """
        shapes = [self._shape(t) for t in xs]
        ranks = {len(s) for s in shapes}
        if not shapes or not ranks <= {3, 4} or len(ranks) > 1 or (ranks == {3} and len({s[2] for s in shapes}) > 1):
            raise DLParamError(f"concat joins feature maps, or N x rows x P tensors of one P; got {list(xs)!r:.120} "
                               f"with shapes {shapes}")
        out = self._claim(name, output)
        self._b.concat(list(xs), 1, name, output=out)
        self._shapes[out] = ((None, sum(s[1] for s in shapes), None, None) if ranks == {4}
                             else (None, None, shapes[0][2]))
        return out

    def flatten_locations(self, x: str, per_location: int, name: str) -> str:
        """N x (A*P) x H x W -> N x (H*W*A) x P: one row per anchor, ordered y, x, anchor, as a
        dense detection head's outputs are read.

        Args:
            x: the head's feature map.
            per_location: P, the values per anchor.
            name: the layer's name (its nodes "<name>.nhwc" and `name`).

        Returns:
            `name`, an N x rows x P tensor.

        Raises:
            DLParamError: channels not a multiple of P, `x` unknown or no map, `name` taken.

        Examples:
            >>> rows = [net.flatten_locations(t, 4, f"{t}.rows") for t in ("merge", "top")]
            >>> net.channels(rows[0]), net.channels(net.concat(rows, "all_rows"))
            (4, 4)
        """
        c, p = self._map(x, "flatten_locations"), int(per_location)
        if p < 1 or c % p:
            raise DLParamError(f"flatten_locations needs channels ({c} in {x!r}) a multiple of per_location ({p})")
        self._claim(name, None)
        y = self._b.flatten_locations(x, p, name)
        self._shapes[y] = (None, None, p)
        return y

    def conv_weights(self, in_channels: int, channels: int, kernel_size: int, name: str, *, std: float,
                     bias: float = 0.0) -> ConvWeights:
        """New convolution weights, normal(0, std), and a constant bias, for `conv_with` layers to
        share (e.g. one detection head run on every pyramid level).

        Args:
            in_channels: the input channels.
            channels: the output channels.
            kernel_size: k of the k x k kernel.
            name: their name ("<name>.weight", "<name>.bias").
            std: the weights' standard deviation.
            bias: the bias value (e.g. RetinaNet's class prior).

        Returns:
            The shared weights.

        Raises:
            DLParamError: `name` taken.

        Examples:
            >>> shared = net.conv_weights(16, 16, 3, "shared", std=0.01, bias=-1.0)
            >>> shared.weight, shared.bias
            ('shared.weight', 'shared.bias')
        """
        self._claim(name, None)
        w, b = self._b.conv_params(int(in_channels), int(channels), int(kernel_size), name, std=std, bias=bias)
        return ConvWeights(w, b, int(in_channels), int(channels), int(kernel_size))

    def conv_with(self, x: str, weights: ConvWeights, name: str, *, output: str | None = None) -> str:
        """A stride-1 convolution with 'same' padding reading shared `weights`.

        Args:
            x: the feature map it reads, of the weights' in_channels.
            weights: from `conv_weights`.
            name: the layer's name.
            output: the output tensor's name (default `name`).

        Returns:
            The output tensor's name.

        Raises:
            DLParamError: other input channels, `x` unknown or no map, or `name` taken.

        Examples:
            >>> a, b = net.conv_with(x, shared, "shared.p4"), net.conv_with(up, shared, "shared.p2")
            >>> graph, values = net.finish([a, b])
            >>> [n.name for n in graph.nodes if "shared.weight" in n.inputs], float(values["shared.bias"][0])
            (['shared.p4', 'shared.p2'], -1.0)
        """
        c = self._map(x, "conv_with")
        if c != weights.in_channels:
            raise DLParamError(f"conv_with: {x!r} has {c} channels, the weights {weights.weight!r} read "
                               f"{weights.in_channels}")
        out = self._claim(name, output)
        self._b.conv_with(x, (weights.weight, weights.bias), weights.kernel_size, name)
        self._b.nodes[-1].outputs[0] = out
        self._shapes[out] = (None, weights.channels, None, None)
        return out
