"""Backbone reader: a classifier graph without its head, tapped at strides 4, 8, 16 and 32.

Segmentation and detection models are built on a classifier the way HALCON builds them: the
classifier (dlbatch's own or one read from an ONNX file) loses its head (global pooling,
flatten, fully connected layer, softmax) and the feature maps at the wanted strides become
the outputs a neck or decoder reads.

Which tensor is "the stride-8 map" is decided by counting downsamplings, not by dividing
sizes. Every rank-4 tensor on the main path gets a stride per axis: the image has stride 1, a
strided Conv/MaxPool/AveragePool multiplies it by its `strides` attribute, ConvTranspose and
DepthToSpace divide it, and any other op that changes the spatial size scales it by the
power of two nearest to the size ratio. Sizes alone are ambiguous: a 3x3/2 convolution with
padding rounds up (75 -> 38), a 2x2 pool without padding rounds down (75 -> 37), a valid
convolution shrinks a map without downsampling it (64 -> 62), and on a small image the maps
of two strides can have the same size (33 pixels: ceil(33/16) = 2 = floor(33/16)). The
`strides` attributes say exactly what the network does, whatever the image size.

Global pooling and Reduce* ops end the main path: their outputs (and everything computed
from them alone, e.g. the flattened features and the class scores) have no stride. A
squeeze-and-excitation gate multiplied back into a map does not hide the map: the product
keeps the map's stride.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import DLModelFileError, DLParamError
from .graph import Graph, Node, ValueInfo

DEFAULT_STRIDES = (4, 8, 16, 32)
STRIDED_OPS = ("Conv", "MaxPool", "AveragePool", "LpPool")      # stride multiplied by `strides`
UPSAMPLING_OPS = ("ConvTranspose",)                              # stride divided by `strides`
HEAD_OPS = ("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
SIZE_KEEPING_OPS = ("Pad",)        # changes the size, not the grid spacing
AUX_OUTPUT_OPS = ("MaxPool", "BatchNormalization", "Dropout")   # outputs after the first are no maps

Stride = tuple[Fraction, Fraction]   # (along H, along W)


@dataclass
class Backbone:
    """A cut classifier: `graph` reads the image `input_name` and outputs one feature map per
    stride; `taps[stride]` names it and `channels[stride]` is its channel count (what a neck
    or decoder built on it needs to size its own layers)."""

    graph: Graph
    values: dict[str, np.ndarray]
    taps: dict[int, str]
    channels: dict[int, int]
    input_name: str


# -- strides of the feature maps ----------------------------------------------------------------
def _spatial(shape: tuple | None) -> tuple | None:
    """(H, W) of a rank-4 shape (entries may be None), None for any other rank or unknown."""
    if shape is None or len(shape) != 4:
        return None
    return shape[2], shape[3]


def _pair(value: Any, default: int = 1) -> tuple[int, int]:
    vals = list(value) if value is not None else []
    if len(vals) < 2:
        return default, default
    return int(vals[-2]), int(vals[-1])


def _size_factor(before: int | None, after: int | None) -> Fraction:
    """The downsampling factor (a power of two, < 1 for upsampling) that turns `before` pixels
    into `after`, whichever way the op rounded; 1 when a size is unknown."""
    if not before or not after or before == after:
        return Fraction(1)
    exponent = round(math.log2(before / after))
    return Fraction(2) ** exponent


def _node_factor(node: Node, before: tuple, after: tuple) -> tuple[Fraction, Fraction]:
    """How much `node` multiplies the stride along H and W."""
    if node.op_type in STRIDED_OPS:
        sh, sw = _pair(node.attrs.get("strides"))
        return Fraction(sh), Fraction(sw)
    if node.op_type in UPSAMPLING_OPS:
        sh, sw = _pair(node.attrs.get("strides"))
        return Fraction(1, sh), Fraction(1, sw)
    if node.op_type == "SpaceToDepth":
        b = int(node.attrs.get("blocksize", 1))
        return Fraction(b), Fraction(b)
    if node.op_type == "DepthToSpace":
        b = int(node.attrs.get("blocksize", 1))
        return Fraction(1, b), Fraction(1, b)
    if node.op_type in SIZE_KEEPING_OPS:
        return Fraction(1), Fraction(1)
    return _size_factor(before[0], after[0]), _size_factor(before[1], after[1])


def _ends_main_path(node: Node) -> bool:
    return node.op_type in HEAD_OPS or node.op_type.startswith("Reduce")


def map_strides(graph: Graph, shapes: Mapping[str, tuple | None], input_name: str) -> dict[str, Stride]:
    """The stride (along H, W) of every rank-4 tensor on the main path, the image included.

    A node's output inherits the stride of its first input that has one, times the node's
    factor (see the module docstring). Tensors of unknown shape get none: without a rank there
    is no telling a feature map from a flattened vector."""
    strides: dict[str, Stride] = {input_name: (Fraction(1), Fraction(1))}
    for node in graph.nodes:
        if _ends_main_path(node):
            continue
        source = next((i for i in node.inputs if i in strides), None)
        if source is None:
            continue
        before = _spatial(shapes.get(source)) or (None, None)
        for out in node.outputs[:1] if node.op_type in AUX_OUTPUT_OPS else node.outputs:
            after = _spatial(shapes.get(out))
            if out and after is not None:
                fh, fw = _node_factor(node, before, after)
                strides[out] = (strides[source][0] * fh, strides[source][1] * fw)
    return strides


def find_feature_maps(graph: Graph, shapes: Mapping[str, tuple | None], input_name: str, image_height: int,
                      image_width: int, strides: Sequence[int] = DEFAULT_STRIDES) -> dict[int, str]:
    """For each wanted stride that the network has, the last tensor (in node order) at that
    stride along both axes: the output of the last layer of that stage, before the next
    downsampling. Strides the network lacks are left out (see `backbone_from_imported`)."""
    _check_input(shapes, input_name, image_height, image_width)
    per_tensor = map_strides(graph, shapes, input_name)
    wanted = {Fraction(int(s)): int(s) for s in strides}
    found: dict[int, str] = {}
    for node in graph.nodes:
        for out in node.outputs:
            sh, sw = per_tensor.get(out, (None, None))
            if sh is not None and sh == sw and sh in wanted:
                found[wanted[sh]] = out
    return {s: found[s] for s in sorted(found)}


def _check_input(shapes: Mapping[str, tuple | None], input_name: str, image_height: int,
                 image_width: int) -> None:
    """The strides are relative to the image the shapes were inferred for; it has to be this one."""
    size = _spatial(shapes.get(input_name))
    if size is not None and None not in size and tuple(size) != (int(image_height), int(image_width)):
        raise DLParamError(f"the shapes were inferred for a {size[1]}x{size[0]} (width x height) input "
                           f"{input_name!r}, not for the {image_width}x{image_height} image asked for; import "
                           f"the graph again with input dims (None, C, {image_height}, {image_width})")


# -- cutting ------------------------------------------------------------------------------------
def cut_backbone(graph: Graph, values: Mapping[str, np.ndarray], taps: Mapping[int, str],
                 shapes: Mapping[str, tuple | None] | None = None) -> tuple[Graph, dict[str, np.ndarray]]:
    """A new graph whose outputs are the tap tensors (in stride order) and holding only the
    nodes and initializers they need; the head falls away because no tap depends on it.

    Initializer roles are kept (filtered lists, same order). `graph` and `values` are not
    changed; the new graph has its own nodes, the arrays are shared (dlbatch replaces
    parameter arrays, it never writes into them). `shapes` gives the taps' channel counts."""
    names = list(dict.fromkeys(taps[s] for s in sorted(taps)))
    produced = {o for n in graph.nodes for o in n.outputs}
    missing = [t for t in names if t not in produced]
    if missing:
        raise DLModelFileError(f"tap tensors {missing} are not produced by any node of the graph")
    dtype = graph.inputs[0].dtype if graph.inputs else "float32"
    cut = graph.restricted_to([ValueInfo(t, (None, _channels(shapes, t), None, None), dtype) for t in names])
    return cut, {k: values[k] for k in cut.initializer_names()}


def _channels(shapes: Mapping[str, tuple | None] | None, name: str) -> int | None:
    shape = (shapes or {}).get(name)
    return int(shape[1]) if shape is not None and len(shape) == 4 and shape[1] is not None else None


# -- the whole step -----------------------------------------------------------------------------
def backbone_from_imported(imported, input_name: str, image_height: int, image_width: int,
                           strides: Sequence[int] = DEFAULT_STRIDES, where: str = "the classifier") -> Backbone:
    """Cut an imported classifier (`onnx_import.Imported`, imported with the input fixed to
    image_height x image_width) into a `Backbone` tapped at `strides`."""
    graph, shapes = imported.graph, imported.shapes
    _require_shapes(graph, shapes, input_name, image_height, image_width, where)
    taps = find_feature_maps(graph, shapes, input_name, image_height, image_width, strides)
    absent = [int(s) for s in strides if int(s) not in taps]
    if absent:
        raise DLModelFileError(_missing_message(graph, shapes, input_name, strides, absent, where,
                                                image_height, image_width))
    unknown = [f"{taps[s]!r} (stride {s})" for s in taps if _channels(shapes, taps[s]) is None]
    if unknown:
        raise DLModelFileError(f"{where}: the channel count of feature maps {', '.join(unknown)} is unknown "
                               "(shape inference could not tell it); a neck needs it to size its layers")
    cut, values = cut_backbone(graph, imported.values, taps, shapes)
    channels = {s: _channels(shapes, t) for s, t in taps.items()}
    return Backbone(cut, values, dict(taps), channels, input_name)


def _require_shapes(graph: Graph, shapes: Mapping[str, tuple | None], input_name: str, image_height: int,
                    image_width: int, where: str) -> None:
    """Strides can only be traced through tensors of known rank: say so when inference failed."""
    if _spatial(shapes.get(input_name)) is None:
        raise DLModelFileError(f"{where}: the shape of the image input {input_name!r} is unknown or not "
                               "N x C x H x W; a backbone needs a rank-4 image input (import the graph with "
                               f"input dims (None, C, {image_height}, {image_width}))")
    outs = [o for n in graph.nodes for o in n.outputs if o]
    unknown = [o for o in outs if shapes.get(o) is None]
    if outs and len(unknown) == len(outs):
        raise DLModelFileError(f"{where}: the shapes of the network's tensors are unknown (onnx shape inference "
                               f"failed for a {image_width}x{image_height} input), so its feature maps cannot "
                               "be found; check that the image is large enough for the network's kernels and "
                               "that the file passes onnx.checker.check_model")


def _missing_message(graph: Graph, shapes, input_name: str, strides: Sequence[int], absent: list[int],
                     where: str, image_height: int, image_width: int) -> str:
    have = _available(graph, shapes, input_name)
    listing = ", ".join(f"stride {s} ({h}x{w}, {c} channels)" for s, (h, w, c) in have.items()) or "none"
    usable = [s for s in have if s > 1]
    unknown = sum(1 for n in graph.nodes for o in n.outputs if o and shapes.get(o) is None)
    note = (f" (shape inference could not tell the shapes of {unknown} tensors, which may hide deeper maps)"
            if unknown else "")
    return (f"{where}: a backbone tapped at strides {', '.join(map(str, strides))} needs feature maps at "
            f"stride {', '.join(map(str, absent))}, which this network does not have for a "
            f"{image_width}x{image_height} image. Its feature maps (H x W): {listing}{note}. Use a classifier "
            f"that downsamples by a factor of {max(absent)} (e.g. a ResNet: strides 4, 8, 16, 32), or ask only "
            f"for strides it has ({', '.join(map(str, usable)) or 'none'})")


def _available(graph: Graph, shapes, input_name: str) -> dict[int, tuple]:
    """stride -> (H, W, C) of the last map at each integer stride (equal along H and W)."""
    per_tensor = map_strides(graph, shapes, input_name)
    out: dict[int, tuple] = {}
    for node in graph.nodes:
        for t in node.outputs:
            sh, sw = per_tensor.get(t, (None, None))
            if sh is not None and sh == sw and sh.denominator == 1:
                shape = shapes[t]
                out[int(sh)] = (shape[2], shape[3], shape[1])
    return dict(sorted(out.items()))


__all__ = ["Backbone", "DEFAULT_STRIDES", "backbone_from_imported", "cut_backbone", "find_feature_maps",
           "map_strides"]
