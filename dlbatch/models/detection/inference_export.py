"""A detection model as one ONNX file that onnxruntime alone runs end to end: the network,
then the decoding of apply_dl_model (sigmoid, box decoding against the anchors, clipping,
per-class and class-agnostic NMS with ONNX NonMaxSuppression, max_num_detections).

write_dl_model stays the training file (solver state, dlbatch metadata, the heads' raw
outputs); export_inference_onnx writes this second, inference-only file.

Input: the model's image input (usually "image"), (N, C, H, W) in the model's precision,
N free: the images as preprocess_dl_samples leaves them, HWC -> CHW. The network keeps the
model's precision; onnxruntime's CPU provider has no float64 convolution, so export a float64
model after set_dl_model_param(model, "precision", "float32"). The model's parameters
at the time of the export are baked in: image size, class ids and names, min_confidence,
max_overlap, max_overlap_class_agnostic, max_num_detections.

Outputs, D = all detections of the batch, ordered by image, then by descending confidence
(ties: lower anchor * K + class first), exactly apply_dl_model's order:

    detection_batch_index  (D,) int64    the image (0..N-1) of each detection
    bbox_row1, bbox_col1,  (D,) float64  the box in network-input pixels (continuous
    bbox_row2, bbox_col2                 coordinates, upper-left and lower-right corner)
    bbox_confidence        (D,) float64  the class probability
    bbox_class_id          (D,) int64    the class id (the model's class_ids)
    bbox_class_name        (D,) string   the class name

results_from_outputs turns them into apply_dl_model's list of dicts.

What differs from apply_dl_model (see inference_graph for the graph itself):

- the network runs in onnxruntime, so the heads' outputs differ from the dlbatch backend's by
  float32 rounding (1e-6 to 1e-5 relative), which the decoding turns into box differences of
  up to about 1e-4 px and confidence differences below 1e-6; given the same head outputs,
  the graph's boxes and confidences equal apply_dl_model's to float64 rounding (the tests
  check both). Everything after the network is float64 as in apply_dl_model,
  except the IoU inside NonMaxSuppression, which onnxruntime computes in float32 (the box
  coordinates are rounded to float32 for it). A candidate whose score lies within that
  rounding of min_confidence, or a pair of boxes whose IoU lies within it of max_overlap /
  max_overlap_class_agnostic, may therefore be decided the other way; on normal inputs the
  detections are the same.
- the per-level top-k (1000 (anchor, class) pairs per pyramid level), the tie order (equal
  scores: lower anchor * K + class first, in top-k, both NMS and the final order) and the
  dropping of boxes that clipping made degenerate (after the max_num_detections cut) are
  reproduced exactly, not approximated.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper

from ...core.atomic_file import atomic_write
from ...core.errors import DLError, DLModelFileError, DLParamError
from ...core.onnx_export import (PREFIX, graph_to_proto, ir_version_for, model_input_shapes, opset_imports,
                                 serialize)
from .inference_graph import NodeBuilder, postprocess
from .model_type import model_anchors
from .params import NAME

MIN_OPSET = 11  # NonMaxSuppression with its thresholds as inputs, TopK with k as input
OUTPUT_NAMES = ("detection_batch_index", "bbox_row1", "bbox_col1", "bbox_row2", "bbox_col2",
                "bbox_confidence", "bbox_class_id", "bbox_class_name")
OUTPUT_TYPES = {"detection_batch_index": onnx.TensorProto.INT64,
                **dict.fromkeys(OUTPUT_NAMES[1:6], onnx.TensorProto.DOUBLE),
                "bbox_class_id": onnx.TensorProto.INT64, "bbox_class_name": onnx.TensorProto.STRING}


def _check(model) -> None:
    name = getattr(getattr(model, "model_type", None), "name", None)
    if name != NAME:
        raise DLParamError(f"export_inference_onnx needs a detection model, got a {name or type(model).__name__} "
                           "model; write other models with write_dl_model")
    hp = model.hyperparameters
    if hp["instance_type"] != "rectangle1":
        raise DLParamError(f"export_inference_onnx supports instance_type 'rectangle1' only, "
                           f"got {hp['instance_type']!r}")
    if int(model.graph.opset) < MIN_OPSET:
        raise DLModelFileError(f"export_inference_onnx needs ONNX opset >= {MIN_OPSET} (NonMaxSuppression, "
                               f"TopK with k as input); this model's graph has opset {model.graph.opset} "
                               "(from its backbone file). Convert the backbone file to a newer opset first")


def inference_proto(model) -> onnx.ModelProto:
    """The ModelProto export_inference_onnx writes (see the module docstring)."""
    _check(model)
    hp, meta = model.hyperparameters, model.meta
    network = graph_to_proto(model.graph, model.numpy_values(), precision=model.precision,
                             input_shapes=model_input_shapes(model), name=f"dlbatch_{NAME}_inference")
    taken = {o for n in network.node for o in n.output} | {i.name for i in network.initializer} | \
        {i.name for i in network.input}
    clash = sorted(taken & set(OUTPUT_NAMES))
    if clash:
        raise DLModelFileError(f"the network already has values named {clash}; they are the inference outputs")
    b = NodeBuilder()
    results = postprocess(b, meta["class_logits"], meta["box_deltas"], model_anchors(hp), hp)
    outputs = []
    for key in OUTPUT_NAMES:
        b.nodes.append(helper.make_node("Identity", [results[key]], [key], name=f"output_{key}"))
        outputs.append(helper.make_tensor_value_info(key, OUTPUT_TYPES[key], ["D"]))
    network.node.extend(b.nodes)
    network.initializer.extend(b.initializers)
    del network.output[:]
    network.output.extend(outputs)
    proto = helper.make_model(network, opset_imports=opset_imports(model.graph), producer_name="dlbatch",
                              doc_string=f"dlbatch detection model, inference only; outputs: {', '.join(OUTPUT_NAMES)}")
    proto.ir_version = ir_version_for(model.graph)
    settings = {k: hp[k] for k in ("class_ids", "class_names", "image_width", "image_height", "image_num_channels",
                                   "min_confidence", "max_overlap", "max_overlap_class_agnostic",
                                   "max_num_detections")}
    helper.set_model_props(proto, {PREFIX + "inference_model_type": NAME,
                                   PREFIX + "inference_input": str(meta["input"]),
                                   PREFIX + "inference_outputs": json.dumps(list(OUTPUT_NAMES)),
                                   PREFIX + "inference_parameters": json.dumps(settings, default=_plain)})
    return proto


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def export_inference_onnx(model, path) -> None:
    """Write `model` (a detection model, instance_type rectangle1, opset >= 11) to `path` as an
    inference-only ONNX file whose graph also decodes the boxes and runs NonMaxSuppression, so
    onnxruntime alone returns apply_dl_model's detections; atomically (an error leaves an
    existing file as it was).

    Input: the image input (N, C, H, W), the preprocessed images. Outputs (D = detections of
    the whole batch, by image, then descending confidence): detection_batch_index (D,) int64,
    bbox_row1/bbox_col1/bbox_row2/bbox_col2 (D,) float64, bbox_confidence (D,) float64,
    bbox_class_id (D,) int64, bbox_class_name (D,) string; results_from_outputs(outputs, N)
    gives apply_dl_model's list of dicts.

    Differences from apply_dl_model: the network runs in onnxruntime (float rounding of the
    heads, ~1e-6) and NonMaxSuppression computes the IoU in float32, so a score within
    rounding of min_confidence or an IoU within rounding of a max_overlap threshold can be
    decided the other way. The per-level top-k, the tie order and the degenerate-box rule are
    exact. The parameters at export time (min_confidence, max_overlap,
    max_overlap_class_agnostic, max_num_detections, class ids and names) are baked in.

    Args:
        model: a rectangle1 detection model.
        path: the file to write.

    Raises:
        DLParamError: not a detection model, or a rectangle2 one.
        DLModelFileError: the file cannot be written (an existing file stays as it was).

    Examples:
        >>> import dlbatch
        >>> det = dlbatch.create_dl_model("detection", class_ids=[1], image_dimensions=[64, 64, 3])
        >>> dlbatch.export_inference_onnx(det, "detector_inference.onnx")
        >>> import onnx; "bbox_confidence" in [o.name for o in onnx.load("detector_inference.onnx").graph.output]
        True
    """
    proto = inference_proto(model)
    try:
        atomic_write(path, lambda: serialize(proto))
    except DLError:
        raise
    except (ValueError, OSError) as exc:  # protobuf refuses messages over 2 GiB; disk errors
        raise DLModelFileError(f"cannot write {os.fspath(path)}: {exc}") from exc


def results_from_outputs(outputs: Mapping[str, Any] | Sequence[Any], batch_size: int) -> list[dict]:
    """apply_dl_model-style result dicts, one per image 0..batch_size-1, from the outputs of
    an exported file: a mapping name -> array, or the list `session.run(None, feeds)` returns
    (in OUTPUT_NAMES order)."""
    if not isinstance(outputs, Mapping):
        outputs = list(outputs)
        if len(outputs) != len(OUTPUT_NAMES):
            raise ValueError(f"expected the {len(OUTPUT_NAMES)} outputs {list(OUTPUT_NAMES)}, got {len(outputs)}")
        outputs = dict(zip(OUTPUT_NAMES, outputs))
    missing = [k for k in OUTPUT_NAMES if k not in outputs]
    if missing:
        raise ValueError(f"outputs lack {missing}")
    image = np.asarray(outputs["detection_batch_index"], dtype=np.int64).reshape(-1)
    if len(image) and (image.min() < 0 or image.max() >= batch_size):
        raise ValueError(f"detection_batch_index holds images up to {image.max()}, but batch_size is {batch_size}")
    results = []
    for n in range(batch_size):
        rows = np.flatnonzero(image == n)
        r = {key: np.asarray(outputs[key], dtype=np.float64).reshape(-1)[rows]
             for key in ("bbox_row1", "bbox_col1", "bbox_row2", "bbox_col2")}
        r["bbox_class_id"] = np.asarray(outputs["bbox_class_id"], dtype=np.int64).reshape(-1)[rows]
        names = np.asarray(outputs["bbox_class_name"], dtype=object).reshape(-1)[rows]
        r["bbox_class_name"] = [s.decode() if isinstance(s, bytes) else str(s) for s in names]
        r["bbox_confidence"] = np.asarray(outputs["bbox_confidence"], dtype=np.float64).reshape(-1)[rows]
        results.append(r)
    return results
