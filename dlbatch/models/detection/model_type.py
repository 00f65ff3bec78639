"""The detection model type (RetinaNet-style, SPEC sections 4-7): backbone (built-in or a
classifier read from an ONNX file) -> feature pyramid -> class and box heads shared across
levels; focal loss on the classes, Huber loss on the box deltas, both normalised by the number
of positive anchors; decoding with per-class and class-agnostic NMS."""
from __future__ import annotations

import functools
from typing import Any, Mapping, Sequence

import numpy as np

from ...core.errors import DLParamError
from ...core.graph import ValueInfo
from ...core.model_type import Encoded, Evaluation, LossTerm, MainMetric, ModelType, TermTarget
from ...core.preprocess import SampleContext
from ...core.samples import check_image, images_to_nchw
from ..network import backbone_names, build_backbone
from ..image_size import check_size_multiple
from . import box_coder
from .anchors import Anchors, anchors_per_location, generate_anchors, generate_oriented_anchors
from .boxes import geometry_for
from .coco_eval import DetectionEvaluation
from .network import CAPACITY, CLASS_HEAD, HeadLayout, build_heads, build_pyramid
from .overlay import draw_detection_overlay
from .params import NAME, SPECS
from .postprocess import postprocess_detections
from .sample_boxes import read_boxes, scale_sample_boxes
from .targets import encode_targets

DEFAULT_ALPHA = 0.25      # focal alpha of every class unless class_weights says otherwise (SPEC 4)
HUBER_BETA = 0.11


def _geometry(hp: Mapping[str, Any]):
    return geometry_for(hp["instance_type"], ignore_direction=bool(hp.get("ignore_direction", True)))


def _oriented(hp: Mapping[str, Any]) -> bool:
    return hp["instance_type"] == "rectangle2"


def _anchors_per_location(hp: Mapping[str, Any]) -> int:
    angles = hp["anchor_angles"] if _oriented(hp) else 1
    return anchors_per_location(hp["anchor_num_subscales"], hp["anchor_aspect_ratios"], angles)


def _check_size(hp: Mapping[str, Any]) -> None:
    """Every pyramid level's grid must cover the image exactly (see image_size)."""
    check_size_multiple(hp, 2 ** hp["max_level"], f"a detection model with max_level={hp['max_level']}")


def _class_index(hp: Mapping[str, Any]) -> dict[int, int]:
    return {int(c): i for i, c in enumerate(hp["class_ids"])}


@functools.lru_cache(maxsize=16)
def _anchors(height: int, width: int, min_level: int, max_level: int, subscales: int, ratios: tuple,
             angles: tuple | None) -> Anchors:
    if angles is None:
        return generate_anchors(height, width, min_level, max_level, subscales, list(ratios))
    return generate_oriented_anchors(height, width, min_level, max_level, subscales, list(ratios), list(angles))


def model_anchors(hp: Mapping[str, Any]) -> Anchors:
    """The anchors of the model's input size and anchor parameters (cached)."""
    return _anchors(hp["image_height"], hp["image_width"], hp["min_level"], hp["max_level"],
                    hp["anchor_num_subscales"], tuple(hp["anchor_aspect_ratios"]),
                    tuple(hp["anchor_angles"]) if _oriented(hp) else None)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64, copy=False)
    return np.exp(-np.logaddexp(0.0, -z))


PHI = 2  # column of phi in rectangle2 boxes (row, col, phi, length1, length2)


def _unoriented_indices(hp: Mapping[str, Any]) -> np.ndarray:
    index = _class_index(hp)
    return np.array([index[c] for c in hp.get("class_ids_no_orientation") or () if c in index], dtype=np.int64)


def _axis_parallel_where_unoriented(boxes: np.ndarray, classes: np.ndarray, hp: Mapping[str, Any]):
    """rectangle2 boxes of class_ids_no_orientation become their axis-parallel bounding
    rectangle (phi = 0, length1 along the columns): those classes are learned, predicted and
    evaluated without an orientation."""
    if not _oriented(hp) or not len(boxes):
        return boxes, classes
    unoriented = np.isin(classes, _unoriented_indices(hp))
    if unoriented.any():
        b = boxes[unoriented]
        c, s = np.abs(np.cos(b[:, PHI])), np.abs(np.sin(b[:, PHI]))
        half_cols = b[:, 3] * c + b[:, 4] * s       # half extent along the columns
        half_rows = b[:, 3] * s + b[:, 4] * c
        boxes = boxes.copy()
        boxes[unoriented, PHI] = 0.0
        boxes[unoriented, 3], boxes[unoriented, 4] = half_cols, half_rows
    return boxes, classes


class Detection(ModelType):
    name = NAME
    main_metric = MainMetric("mean_ap", higher_is_better=True)
    reads_backbone_files = True

    def param_specs(self):
        return list(SPECS)

    def default_params(self):
        return {"losses": None}

    def backbones(self) -> Sequence[str]:
        return backbone_names()

    def build(self, hp, backbone, rng):
        if hp["max_level"] < hp["min_level"]:
            raise DLParamError(f"max_level ({hp['max_level']}) must be >= min_level ({hp['min_level']})")
        _check_size(hp)
        unknown = sorted(set(hp.get("class_ids_no_orientation") or ()) - set(hp["class_ids"]))
        if unknown:
            raise DLParamError(f"class_ids_no_orientation has {unknown}, which are not class_ids {hp['class_ids']}")
        k, geometry = len(hp["class_ids"]), _geometry(hp)
        # a classifier file: its feature maps at strides 4..32, as many consecutive ones as it has
        net = build_backbone(backbone, hp, rng, min_levels=1)
        pyramid = build_pyramid(net, hp["min_level"], hp["max_level"], CAPACITY[hp["capacity"]][0])
        layout = HeadLayout(k, geometry.num_params, _anchors_per_location(hp))
        logits, deltas = build_heads(net, pyramid, hp["capacity"], layout)
        # backbone stages deeper than the pyramid reads (resnet18's stride 32 under max_level 4)
        # stay out: they would run, keep batch-norm statistics and take the weight prior for nothing
        graph, values = net.finish([logits, deltas])
        meta = {"input": net.input, "class_logits": logits, "box_deltas": deltas,
                "head_weight": f"{CLASS_HEAD}.out.weight", "head_bias": f"{CLASS_HEAD}.out.bias"}
        return graph, values, meta

    def loss_terms(self, meta):
        return [LossTerm("class", meta["class_logits"], "focal", "class_heads_weight"),
                LossTerm("box", meta["box_deltas"], "huber", "bbox_heads_weight")]

    def loss_options(self, term, hp):
        if term.name == "class":
            weights = hp.get("class_weights")
            alpha = [DEFAULT_ALPHA] * len(hp["class_ids"]) if weights is None else list(weights)
            return {"alpha": alpha, "gamma": 2.0}
        return {"beta": HUBER_BETA}

    def check_samples(self, samples, hp, *, labels):
        index, geometry = _class_index(hp), _geometry(hp)
        for i, s in enumerate(samples):
            check_image(s, i, hp)
            if labels:
                read_boxes(s, i, geometry, hp, index)

    def encode(self, samples, hp, meta, *, labels, dtype):
        inputs = {meta["input"]: images_to_nchw(samples, hp, dtype)}
        targets = {}
        if labels:
            index, geometry = _class_index(hp), _geometry(hp)
            read = [_axis_parallel_where_unoriented(*read_boxes(s, i, geometry, hp, index), hp)
                    for i, s in enumerate(samples)]
            t = encode_targets(model_anchors(hp), [r[0] for r in read], [r[1] for r in read], geometry, dtype)
            count = float(t.num_positive)  # the train step divides by max(1, count over all ranks)
            targets["class"] = TermTarget(t.classes, np.ones(t.classes.shape, dtype=dtype), count, normalizer_floor=1.0)
            targets["box"] = TermTarget(t.deltas, t.positive, count, normalizer_floor=1.0)
        return Encoded(inputs, targets)

    def detections(self, outputs, hp, meta) -> list:
        """Per image: Detections (boxes, scores, class indices) in network-input pixels."""
        anchors, geometry = model_anchors(hp), _geometry(hp)
        scores = _sigmoid(outputs[meta["class_logits"]])
        deltas = outputs[meta["box_deltas"]].astype(np.float64)
        clip = functools.partial(geometry.clip, height=hp["image_height"], width=hp["image_width"])
        out = []
        for s, d in zip(scores, deltas):
            boxes = box_coder.decode(anchors.boxes, d, geometry)
            det = postprocess_detections(s, boxes, anchors.level, geometry.pairwise_iou,
                                         min_confidence=hp["min_confidence"], max_overlap=hp["max_overlap"],
                                         max_num_detections=hp["max_num_detections"],
                                         max_overlap_class_agnostic=hp["max_overlap_class_agnostic"], clip=clip)
            keep = ~geometry.is_degenerate(det.boxes)  # boxes clipped away entirely
            boxes = det.boxes[keep]
            if _oriented(hp):
                boxes[np.isin(det.classes[keep], _unoriented_indices(hp)), PHI] = 0.0
            out.append(type(det)(boxes, det.scores[keep], det.classes[keep]))
        return out

    def decode(self, outputs, hp, meta, contexts):
        ids, names, geometry = np.asarray(hp["class_ids"]), hp["class_names"], _geometry(hp)
        results = []
        for det, ctx in zip(self.detections(outputs, hp, meta), contexts):
            boxes = det.boxes
            if (ctx.original_height, ctx.original_width) != (ctx.image_height, ctx.image_width):
                boxes = geometry.scale(boxes, 1 / ctx.scale_row, 1 / ctx.scale_col)  # raw image's pixels
            r = {key: np.array(boxes[:, j], dtype=np.float64) for j, key in enumerate(geometry.keys)}
            r["bbox_class_id"] = ids[det.classes]
            r["bbox_class_name"] = [names[c] for c in det.classes]
            r["bbox_confidence"] = det.scores.copy()
            results.append(r)
        return results

    def preprocess_sample(self, sample, hp, index):
        new = super().preprocess_sample(sample, hp, index)
        scale_sample_boxes(new, _geometry(hp), SampleContext.of(new, hp, index))
        return new

    def draw_overlay(self, image, result, hp):
        return draw_detection_overlay(image, result, hp)

    def evaluation(self, hp) -> Evaluation:
        return BoxEvaluation(hp)

    def on_param_changed(self, model, name, old, new):
        if name == "class_ids" and len(old) != len(new):
            self._resize_class_head(model, len(new))
        if name in ("image_width", "image_height"):
            _check_size(dict(model.hyperparameters, **{name: new}))

    def _resize_class_head(self, model, k: int) -> None:
        """New class count: a fresh final class convolution with the prior bias (HALCON
        behaviour); the backbone, pyramid and box head keep their weights."""
        hp = model.hyperparameters
        a = _anchors_per_location(hp)
        w = model.values[model.meta["head_weight"]]
        bias = model.backend.to_numpy(model.values[model.meta["head_bias"]])
        rng = np.random.default_rng(hp["seed"] + k)
        model.replace_params({model.meta["head_weight"]: rng.normal(0.0, 0.01, (a * k, *w.shape[1:])),
                              model.meta["head_bias"]: np.full(a * k, float(bias.flat[0]))})
        shapes = [n for n in model.graph.constants if n.startswith(f"{CLASS_HEAD}.flat.") and n.endswith(".shape")]
        model.replace_constants({n: np.array([0, -1, k], np.int64) for n in shapes})
        model.graph.outputs = [ValueInfo(v.name, (None, None, k)) if v.name == model.meta["class_logits"] else v
                               for v in model.graph.outputs]


class BoxEvaluation(Evaluation):
    """COCO-style AP accumulated image by image (coco_eval)."""

    def __init__(self, hp: Mapping[str, Any]):
        self._hp, self._geometry, self._index = hp, _geometry(hp), _class_index(hp)
        self._coco = DetectionEvaluation(hp["class_ids"], self._geometry.pairwise_iou)

    def add(self, results, samples) -> None:
        for i, (r, s) in enumerate(zip(results, samples)):
            gt, gt_classes = _axis_parallel_where_unoriented(
                *read_boxes(s, i, self._geometry, self._hp, self._index), self._hp)
            boxes = np.stack([np.asarray(r[k], dtype=np.float64) for k in self._geometry.keys], axis=1) \
                if len(r["bbox_confidence"]) else np.zeros((0, self._geometry.num_params))
            classes = np.array([self._index[int(c)] for c in r["bbox_class_id"]], dtype=np.int64)
            self._coco.add(boxes, np.asarray(r["bbox_confidence"]), classes, gt, gt_classes)

    def summary(self) -> dict:
        return {**self._coco.summary(), "class_ids": list(self._hp["class_ids"])}
