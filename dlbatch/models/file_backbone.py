"""A classifier read from an ONNX file (dlbatch's own or made elsewhere, e.g. by
torch.onnx.export) as the backbone of a segmentation or detection model: cut before its head,
tapped at strides 4, 8, 16 and 32, trained weights kept (HALCON builds its detection and
segmentation models on a classifier file in the same way)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..core.errors import DLModelFileError
from ..core.onnx_backbone import DEFAULT_STRIDES, backbone_from_imported, find_feature_maps
from ..core.onnx_file import check_model_file, load_model_proto
from ..core.onnx_foreign import import_network
from .backbones import FeatureMap, Features
from .builder import GraphBuilder

MIN_RESIZE_OPSET = 11  # Resize with roi/scales inputs, which the decoders add


def _levels(found: Mapping[int, str], strides: Sequence[int], min_levels: int) -> tuple[int, ...]:
    """The longest run of consecutive wanted strides the network has, from the shallowest."""
    best: list[int] = []
    run: list[int] = []
    for s in strides:
        run = run + [s] if s in found else []
        if len(run) > len(best):
            best = run
    return tuple(best) if len(best) >= min_levels else ()


def read_backbone_file(b: GraphBuilder, path, hp: Mapping[str, Any], *, strides: Sequence[int] = DEFAULT_STRIDES,
                       min_levels: int = 3) -> tuple[Features, str, int]:
    """Add the classifier in `path`, cut before its head, to `b`. Returns its feature maps
    (at least `min_levels` consecutive strides of `strides`), the name of its image input and
    the file's opset."""
    proto, where = load_model_proto(path)
    opset = check_model_file(proto, where)
    if opset < MIN_RESIZE_OPSET:
        raise DLModelFileError(f"{where}: opset {opset} is too old for a backbone (the decoder needs Resize "
                               f"of opset >= {MIN_RESIZE_OPSET}); re-export it with opset_version=17")
    c, h, w = hp["image_num_channels"], hp["image_height"], hp["image_width"]
    network = import_network(proto, where, {"image_width": w, "image_height": h, "image_num_channels": c})
    image_input = next(vi for vi in proto.graph.input if vi.name == network.input_name)
    declared = image_input.type.tensor_type.shape.dim[1]
    if declared.HasField("dim_value") and declared.dim_value not in (0, c):
        raise DLModelFileError(f"{where}: the classifier reads images with {declared.dim_value} channels, the model "
                               f"has image_num_channels={c}; set image_num_channels={declared.dim_value}")
    found = find_feature_maps(network.graph, network.shapes, network.input_name, h, w, strides)
    levels = _levels(found, strides, min_levels)
    backbone = backbone_from_imported(network, network.input_name, h, w, strides=levels or tuple(strides),
                                      where=str(where))
    b.adopt(backbone.graph, backbone.values)
    maps = tuple(FeatureMap(backbone.taps[s], s, backbone.channels[s]) for s in sorted(backbone.taps))
    return Features(maps), network.input_name, opset
