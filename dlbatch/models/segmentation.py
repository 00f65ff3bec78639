"""The segmentation model type: a backbone (built-in, or a classifier read from an ONNX file)
with a top-down decoder giving per-pixel class logits at full input resolution, trained with
the `segmentation` loss term (multinomial logistic per pixel, SPEC section 4)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..core.errors import DLModelFileError
from ..core.graph import ValueInfo
from ..core.hookspecs import hookimpl
from ..core.model_type import Encoded, Evaluation, LossTerm, MainMetric, ModelType, TermTarget
from ..core.params import ParamSpec
from ..core.preprocess import resize_nearest
from ..core.samples import check_image, images_to_nchw
from .classification import class_weight_array
from .decoder import CLASSIFIER, PREFIX as DECODER_PREFIX, build_decoder
from .image_size import check_size_multiple
from .label_images import LabelMap, label_image, weight_image
from .network import backbone_names, build_backbone
from .segmentation_metrics import PixelConfusion, segmentation_measures
from .segmentation_overlay import draw_segmentation_overlay

NAME = "segmentation"
LOGITS = "segmentation_logits"
# the levels the decoder reads from each built-in backbone (at least three, SPEC/issue)
BUILTIN_STRIDES = {"compact": (1, 2, 4), "resnet18": (4, 8, 16, 32)}
LABEL_KEYS = ("segmentation_image", "weight_image")


def _check_size(hp: Mapping[str, Any], multiple: int, backbone: str) -> None:
    check_size_multiple(hp, multiple, f"a segmentation model with the {backbone} backbone")


def softmax_confidence(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(winning class index, its softmax probability) per pixel of N x K x H x W logits."""
    z = logits.astype(np.float64, copy=False)
    winner = z.argmax(axis=1)
    top = np.take_along_axis(z, winner[:, None], axis=1)[:, 0]
    confidence = 1.0 / np.exp(z - top[:, None]).sum(axis=1)
    return winner, confidence.astype(np.float32)


class Segmentation(ModelType):
    name = NAME
    main_metric = MainMetric("mean_iou", higher_is_better=True)
    reads_backbone_files = True

    def param_specs(self) -> list[ParamSpec]:
        return [ParamSpec("ignore_class_ids", "int_list", [], "label ids whose pixels are not trained on or "
                          "evaluated", model_types=(NAME,)),
                ParamSpec("backbone", "str", readonly=True, doc="the backbone the model was built on",
                          model_types=(NAME,))]

    def backbones(self) -> Sequence[str]:
        return backbone_names()

    def build(self, hp, backbone, rng):
        net = build_backbone(backbone, hp, rng)
        k = len(hp["class_ids"])
        maps = (tuple(net.features.at(s) for s in BUILTIN_STRIDES[backbone]) if net.opset is None
                else net.features.maps)
        _check_size(hp, maps[-1].stride, backbone)
        if net.opset is not None:  # the file's own names must leave the decoder's free
            clash = sorted(t for t in net.names() if t == LOGITS or t.startswith(DECODER_PREFIX + "."))
            if clash:
                raise DLModelFileError(f"{backbone}: the classifier already has tensors named {clash[:3]}, which "
                                       "the segmentation decoder adds; rename them in the network before exporting it")
        logits = build_decoder(net, maps, k, LOGITS)
        graph, values = net.finish([logits])
        meta = {"input": net.input, "logits": logits, "size_multiple": maps[-1].stride,
                "head_weight": f"{CLASSIFIER}.weight", "head_bias": f"{CLASSIFIER}.bias"}
        return graph, values, meta

    def loss_terms(self, meta):
        return [LossTerm("segmentation", meta["logits"], "multinomial_logistic")]

    def _labels(self, hp) -> LabelMap:
        return LabelMap(hp["class_ids"], hp.get("ignore_class_ids") or ())

    def check_samples(self, samples, hp, *, labels):
        label_map = self._labels(hp) if labels else None
        for i, s in enumerate(samples):
            check_image(s, i, hp)
            if labels:
                label_image(s, i, hp, label_map)
                weight_image(s, i, hp)

    def encode(self, samples, hp, meta, *, labels, dtype):
        inputs = {meta["input"]: images_to_nchw(samples, hp, dtype)}
        targets = {}
        if labels:
            label_map, class_weights = self._labels(hp), class_weight_array(hp)
            y = np.empty((len(samples), hp["image_height"], hp["image_width"]), dtype=np.int64)
            a = np.empty(y.shape, dtype=np.float64)
            for i, s in enumerate(samples):
                y[i], counted = label_map.encode(label_image(s, i, hp, label_map))
                a[i] = class_weights[y[i]] * counted
                w = weight_image(s, i, hp)
                if w is not None:
                    a[i] *= w
            # a weighted mean over the pixels (SPEC section 4): normalised by the weight sum
            targets["segmentation"] = TermTarget(y, a.astype(dtype), float(a.sum()))
        return Encoded(inputs, targets)

    def decode(self, outputs, hp, meta, contexts):
        winner, confidence = softmax_confidence(outputs[meta["logits"]])
        ids = np.asarray(hp["class_ids"])
        results = []
        for w, c, ctx in zip(winner, confidence, contexts):
            size = (ctx.original_height, ctx.original_width)
            if size != (ctx.image_height, ctx.image_width):  # back to the raw image's pixels
                w, c = resize_nearest(w, *size), resize_nearest(c, *size)
            results.append({"segmentation_image": ids[w], "segmentation_confidence": c})
        return results

    def preprocess_sample(self, sample, hp, index):
        new = super().preprocess_sample(sample, hp, index)
        for key in LABEL_KEYS:
            if new.get(key) is not None:
                new[key] = resize_nearest(np.asarray(new[key]), hp["image_height"], hp["image_width"])
        return new

    def draw_overlay(self, image, result, hp):
        return draw_segmentation_overlay(image, result, hp)

    def evaluation(self, hp) -> Evaluation:
        return PixelEvaluation(self._labels(hp), hp["class_ids"])

    def on_param_changed(self, model, name, old, new):
        if name == "class_ids" and len(old) != len(new):
            self._resize_head(model, len(new))
        if name in ("image_width", "image_height"):
            _check_size(dict(model.hyperparameters, **{name: new}), model.meta["size_multiple"],
                        model.meta.get("backbone", "this"))

    def _resize_head(self, model, k: int) -> None:
        """New class count: a fresh final 1x1 classifier (HALCON behaviour); its solver state is
        dropped, the backbone and decoder keep their weights."""
        weight = model.values[model.meta["head_weight"]]
        rng = np.random.default_rng(model.hyperparameters["seed"] + k)
        model.replace_params({model.meta["head_weight"]: rng.normal(0.0, 0.01, (k, *weight.shape[1:])),
                              model.meta["head_bias"]: np.zeros(k)})
        model.graph.outputs = [ValueInfo(v.name, (None, k, None, None)) if v.name == model.meta["logits"] else v
                               for v in model.graph.outputs]


class PixelEvaluation(Evaluation):
    """One confusion matrix over every counted pixel, accumulated batch by batch."""

    def __init__(self, labels: LabelMap, class_ids: Sequence[int]):
        self._labels, self._class_ids = labels, list(class_ids)
        self._index = {c: i for i, c in enumerate(self._class_ids)}
        self._confusion = PixelConfusion(len(self._class_ids))

    def add(self, results, samples) -> None:
        for r, s in zip(results, samples):
            truth, counted = self._labels.encode(np.asarray(s["segmentation_image"]).reshape(
                r["segmentation_image"].shape).astype(np.int64))
            predicted, _ = self._labels.encode(r["segmentation_image"])
            self._confusion.add(truth, predicted, counted)

    def summary(self) -> dict:
        return segmentation_measures(self._confusion.matrix, self._class_ids)


@hookimpl
def dlbatch_register_model_types(register):
    register(Segmentation())
