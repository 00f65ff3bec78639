"""The detection postprocess as ONNX nodes (used by inference_export): from the heads'
class logits (N, A, K) and box deltas (N, A, 4) to the kept detections of every image.

The steps follow postprocess.py one by one; every step but NMS runs in float64, as
apply_dl_model's decoding does:

1. scores = Sigmoid(Cast(logits, double)); boxes = the box coder's decode against the
   anchors (a float64 initializer), exp clamped at log(1000/16), clipped to the image;
2. candidates: score > min_confidence; per pyramid level whose (anchor, class) pairs exceed
   TOPK_PER_LEVEL, only that level's TOPK_PER_LEVEL best (TopK, ties: lower index) stay;
3. one TopK over all pairs of an image sorts the candidates by score (ties: lower number
   a * K + k) into a fixed-size list of kc = sum over levels of min(TOPK_PER_LEVEL, pairs);
   slots past the image's candidates hold -1;
4. NonMaxSuppression works on the RANK in that list (kc - position, float32, distinct), not
   on the score: its inputs must be float32, where distinct float64 scores can coincide, and
   ONNX leaves the order of equal scores to the runtime (onnxruntime's CPU kernel has used a
   heap on the score alone); distinct ranks make every runtime's greedy order exactly ours. Per-class NMS gets one row per class (the rank where the
   candidate has that class, -1 elsewhere), class-agnostic NMS one row with the survivors;
   survivors are written back with ScatterND, so NonMaxSuppression's output order is
   irrelevant. A threshold of 1.0 skips its NMS, as postprocess.py does;
5. TopK of the surviving ranks keeps the first max_num_detections, then boxes that clipping
   made degenerate are dropped (they count towards max_num_detections, as in apply_dl_model),
   and Compress flattens the batch into D detections.

Only ops of opset 11 whose signature later opsets kept (no Split, Squeeze, Unsqueeze,
Reduce*, Clip) are used, so the nodes fit any model opset >= 11.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from .anchors import Anchors
from .box_coder import BBOX_XFORM_CLIP
from .boxes import Rectangle1
from .postprocess import TOPK_PER_LEVEL

DOUBLE, FLOAT = TensorProto.DOUBLE, TensorProto.FLOAT
PREFIX = "dlbatch_inference/"


class NodeBuilder:
    """Appends nodes and initializers with unique names under PREFIX."""

    def __init__(self):
        self.nodes: list = []
        self.initializers: list = []
        self._count = 0

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{PREFIX}{hint}_{self._count}"

    def const(self, value, dtype=None) -> str:
        arr = np.asarray(value, dtype=dtype)
        name = self._name("const")
        self.initializers.append(numpy_helper.from_array(arr, name))
        return name

    def op(self, op_type: str, *inputs: str, outputs: int = 1, **attrs):
        names = [self._name(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, name=self._name(op_type), **attrs))
        return names[0] if outputs == 1 else names

    def ints(self, *values: int) -> str:
        return self.const(list(values), np.int64)

    def filled(self, like: str, value: float, dtype: int) -> str:
        """A tensor of `like`'s shape filled with `value` (type `dtype`)."""
        return self.op("ConstantOfShape", self.op("Shape", like),
                       value=helper.make_tensor("value", dtype, [1], [value]))

    def columns(self, x: str, start: int, stop: int) -> str:
        """x[..., start:stop] of a 3-D tensor."""
        return self.op("Slice", x, self.ints(start), self.ints(stop), self.ints(2))

    def topk(self, x: str, k: int):
        """(values, indices) of the k largest along axis 1, sorted; ties: lower index first."""
        return self.op("TopK", x, self.ints(k), outputs=2, axis=1, largest=1, sorted=1)

    def take(self, x: str, index: str, k: int, width: int | None = None) -> str:
        """x[n, index[n, j]] for x (N, M) or (N, M, width), index (N, k)."""
        if width is not None:
            index = self.op("Mul", self.op("Reshape", index, self.ints(0, k, 1)),
                            self.const(np.ones((1, 1, width), np.int64)))
        return self.op("GatherElements", x, index, axis=1)


def decode_boxes(b: NodeBuilder, deltas: str, anchors: Anchors, height: int, width: int) -> str:
    """(N, A, 4) float64 boxes (row1, col1, row2, col2): box_coder.decode, then clip, with the
    same operations in the same order."""
    centre = Rectangle1.to_centre(anchors.boxes)  # (A, 4) float64: cy, cx, h, w
    d = b.op("Cast", deltas, to=DOUBLE)
    d_hw = b.op("Min", b.columns(d, 2, 4), b.const(BBOX_XFORM_CLIP, np.float64))
    yx = b.op("Add", b.const(centre[:, :2]), b.op("Mul", b.columns(d, 0, 2), b.const(centre[:, 2:])))
    half = b.op("Div", b.op("Mul", b.const(centre[:, 2:]), b.op("Exp", d_hw)), b.const(2.0, np.float64))
    boxes = b.op("Concat", b.op("Sub", yx, half), b.op("Add", yx, half), axis=2)
    low = b.const(np.full(4, -0.5))
    high = b.const(np.array([height, width, height, width], np.float64) - 0.5)
    return b.op("Min", b.op("Max", boxes, low), high)


def candidate_scores(b: NodeBuilder, logits: str, anchors: Anchors, num_classes: int,
                     min_confidence: float) -> tuple[str, int]:
    """(N, A*K) float64 probabilities of the candidates (after the per-level top-k), -1
    elsewhere, and kc, the most candidates an image can have."""
    a, k = len(anchors), num_classes
    p = b.op("Sigmoid", b.op("Cast", logits, to=DOUBLE))
    minus_one = b.const(-1.0, np.float64)
    masked = b.op("Where", b.op("Greater", p, b.const(float(min_confidence), np.float64)), p, minus_one)
    flat = b.op("Reshape", masked, b.ints(0, a * k))
    parts, kc, offset, cut = [], 0, 0, False
    for _level, _rows, _cols, count in anchors.per_level:
        pairs = count * k
        part = b.op("Slice", flat, b.ints(offset), b.ints(offset + pairs), b.ints(1))
        if pairs > TOPK_PER_LEVEL:
            values, index = b.topk(part, TOPK_PER_LEVEL)
            part = b.op("ScatterElements", b.filled(part, -1.0, DOUBLE), index, values, axis=1)
            cut = True
        parts.append(part)
        kc += min(pairs, TOPK_PER_LEVEL)
        offset += pairs
    if cut:
        flat = b.op("Concat", *parts, axis=1) if len(parts) > 1 else parts[0]
    return flat, kc


def _survivors(b: NodeBuilder, selected: str, rank: str) -> str:
    """rank where NonMaxSuppression selected (batch, *, slot), -1 elsewhere."""
    where = b.op("Gather", selected, b.ints(0, 2), axis=1)  # (M, 2): batch, slot
    return b.op("ScatterND", b.filled(rank, -1.0, FLOAT), where, b.op("GatherND", rank, where))


def _nms(b: NodeBuilder, boxes: str, scores: str, kc: int, threshold: float) -> str:
    return b.op("NonMaxSuppression", boxes, scores, b.ints(kc), b.const([threshold], np.float32),
                b.const([0.0], np.float32), center_point_box=0)


def postprocess(b: NodeBuilder, logits: str, deltas: str, anchors: Anchors, hp: Mapping[str, Any]) -> dict:
    """The detection outputs (names by output key) of the heads' `logits` and `deltas`."""
    k = len(hp["class_ids"])
    boxes = decode_boxes(b, deltas, anchors, hp["image_height"], hp["image_width"])
    flat, kc = candidate_scores(b, logits, anchors, k, hp["min_confidence"])
    # the image's candidates by score (ties: lower number); rank kc - position, -1 for no candidate
    score, index = b.topk(flat, kc)
    rank = b.op("Where", b.op("Greater", score, b.const(-0.5, np.float64)),
                b.const(np.arange(kc, 0, -1, dtype=np.float32)), b.const(-1.0, np.float32))
    anchor = b.op("Div", index, b.ints(k))
    cls = b.op("Mod", index, b.ints(k))
    cand_boxes = b.take(boxes, anchor, kc, width=4)  # (N, kc, 4) float64
    nms_boxes = b.op("Cast", cand_boxes, to=FLOAT)
    kept = rank
    if hp["max_overlap"] < 1.0:  # per class: row c holds the ranks of class c's candidates
        same = b.op("Equal", b.op("Reshape", cls, b.ints(0, 1, kc)), b.const(np.arange(k).reshape(1, k, 1)))
        per_class = b.op("Where", same, b.op("Reshape", rank, b.ints(0, 1, kc)), b.const(-1.0, np.float32))
        kept = _survivors(b, _nms(b, nms_boxes, per_class, kc, hp["max_overlap"]), kept)
    if hp["max_overlap_class_agnostic"] < 1.0:
        selected = _nms(b, nms_boxes, b.op("Reshape", kept, b.ints(0, 1, kc)), kc, hp["max_overlap_class_agnostic"])
        kept = _survivors(b, selected, kept)
    # the best max_num_detections survivors, then drop degenerate boxes
    m = min(int(hp["max_num_detections"]), kc)
    best, slot = b.topk(kept, m)
    out_boxes = b.take(cand_boxes, slot, m, width=4)  # (N, m, 4)
    cols = [b.op("Reshape", b.columns(out_boxes, j, j + 1), b.ints(0, m)) for j in range(4)]
    keep = b.op("And", b.op("Greater", best, b.const(0.0, np.float32)),
                b.op("And", b.op("Greater", cols[2], cols[0]), b.op("Greater", cols[3], cols[1])))
    keep = b.op("Reshape", keep, b.ints(-1))
    out_cls = b.take(cls, slot, m)
    num_images = b.op("Gather", b.op("Shape", best), b.const(0, np.int64))
    images = b.op("Range", b.const(0, np.int64), num_images, b.const(1, np.int64))
    batch_index = b.op("Mul", b.op("Reshape", images, b.ints(-1, 1)), b.const(np.ones((1, m), np.int64)))

    def flat_kept(x: str) -> str:
        return b.op("Compress", b.op("Reshape", x, b.ints(-1)), keep, axis=0)

    classes = flat_kept(out_cls)
    names = np.array([str(n) for n in hp["class_names"]], dtype=object)
    return {"detection_batch_index": flat_kept(batch_index),
            **{key: flat_kept(col) for key, col in zip(Rectangle1.keys, cols)},
            "bbox_confidence": flat_kept(b.take(score, slot, m)),
            "bbox_class_id": b.op("Gather", b.const(np.asarray(hp["class_ids"], np.int64)), classes, axis=0),
            "bbox_class_name": b.op("Gather", b.const(names), classes, axis=0)}
