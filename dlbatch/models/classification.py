"""The classification model type: backbone + global average pool + fully connected head,
trained with the `classification` loss term (multinomial logistic by default)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..core.errors import DLParamError
from ..core.graph import ValueInfo
from ..core.hookspecs import hookimpl
from ..core.model_type import Encoded, LossTerm, MainMetric, ModelType, TermTarget
from ..core.samples import check_image, class_index, images_to_nchw
from ..visual.confusion_plot import write_confusion_matrix_png
from .classification_overlay import draw_classification_overlay
from .classifier_import import classifier_from_network
from .network import MIN_SIDE, backbone_names, build_backbone, fully_connected_init


def class_weight_array(hp: Mapping[str, Any]) -> np.ndarray:
    k = len(hp["class_ids"])
    weights = hp.get("class_weights")
    return np.ones(k) if weights is None else np.asarray(weights, dtype=np.float64)


def softmax(z: np.ndarray, axis: int = 1) -> np.ndarray:
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


class Classification(ModelType):
    name = "classification"
    main_metric = MainMetric("top1_error", higher_is_better=False)

    def backbones(self) -> Sequence[str]:
        return backbone_names()

    def default_params(self) -> dict[str, Any]:
        return {"losses": None}

    def build(self, hp, backbone, rng):
        net = build_backbone(backbone, hp, rng)
        features = net.features.last
        pooled = net.global_average_pool(features.name, "head")
        logits = net.fully_connected(pooled, len(hp["class_ids"]), "fc", output="logits")
        graph, values = net.finish([logits])
        meta = {"input": net.input, "logits": logits, "head_weight": "fc.weight", "head_bias": "fc.bias"}
        return graph, values, meta

    def loss_terms(self, meta):
        return [LossTerm("classification", meta["logits"], "multinomial_logistic")]

    def inference_outputs(self, meta):
        return (meta.get("output", meta["logits"]),)

    def check_samples(self, samples, hp, *, labels):
        ids = {cid: i for i, cid in enumerate(hp["class_ids"])}
        for i, s in enumerate(samples):
            check_image(s, i, hp)
            if labels:
                class_index(s, i, "image_label_id", ids)

    def encode(self, samples, hp, meta, *, labels, dtype):
        inputs = {meta["input"]: images_to_nchw(samples, hp, dtype)}
        targets = {}
        if labels:
            ids = {cid: i for i, cid in enumerate(hp["class_ids"])}
            y = np.array([class_index(s, i, "image_label_id", ids) for i, s in enumerate(samples)], dtype=np.int64)
            weights = class_weight_array(hp)[y].astype(dtype)
            # a weighted mean over the images (SPEC section 4): normalised by the weight sum
            targets["classification"] = TermTarget(y, weights, float(weights.sum(dtype=np.float64)))
        return Encoded(inputs, targets)

    def decode(self, outputs, hp, meta, contexts):
        out = outputs[meta.get("output", meta["logits"])]
        probs = out if meta.get("output_is_probability") else softmax(out.astype(np.float64), axis=1)
        ids, names = hp["class_ids"], hp["class_names"]
        results = []
        for p in probs:
            order = np.argsort(-p, kind="stable")
            results.append({
                "classification_class_ids": [ids[j] for j in order],
                "classification_class_names": [names[j] for j in order],
                "classification_confidences": [float(p[j]) for j in order],
            })
        return results

    def evaluate(self, results, samples, hp):
        ids = hp["class_ids"]
        index = {cid: i for i, cid in enumerate(ids)}
        k = len(ids)
        confusion = np.zeros((k, k), dtype=np.int64)  # rows: ground truth, cols: predicted
        for r, s in zip(results, samples):
            confusion[index[int(np.asarray(s["image_label_id"]).item())],
                      index[r["classification_class_ids"][0]]] += 1
        total = confusion.sum()
        correct = np.trace(confusion)
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = np.diag(confusion) / confusion.sum(axis=1)
            precision = np.diag(confusion) / confusion.sum(axis=0)
        return {
            "num_samples": int(total),
            "top1_error": float(1 - correct / total) if total else 0.0,
            "accuracy": float(correct / total) if total else 0.0,
            "mean_recall": float(np.nanmean(recall)) if total else 0.0,
            "mean_precision": float(np.nanmean(precision)) if np.isfinite(precision).any() else 0.0,
            "confusion_matrix": confusion.tolist(),
            "class_ids": list(ids),
        }

    def draw_overlay(self, image, result, hp):
        return draw_classification_overlay(image, result, hp)

    def evaluation_plots(self, summary, hp, out_dir):
        """confusion_matrix.png (rows ground truth, columns predicted) with the class names."""
        if summary.get("confusion_matrix") is None:
            return []
        names = dict(zip(hp["class_ids"], hp["class_names"]))
        ids = summary.get("class_ids", hp["class_ids"])
        return [write_confusion_matrix_png(summary["confusion_matrix"], [names.get(c, str(c)) for c in ids],
                                           Path(out_dir) / "confusion_matrix.png")]

    def on_param_changed(self, model, name, old, new):
        if name == "class_ids" and len(old) != len(new):
            self._resize_head(model, len(new))
        if name in ("image_width", "image_height"):
            side = new
            backbone = model.meta.get("backbone")
            if backbone in MIN_SIDE and side < MIN_SIDE[backbone]:
                raise DLParamError(f"the {backbone} backbone needs {name} of at least "
                                   f"{MIN_SIDE[backbone]} pixels; got {name}={new}")

    def _resize_head(self, model, k: int) -> None:
        """New class count: re-initialise the last fully connected layer (HALCON behaviour);
        its solver state is dropped, everything else is kept."""
        wname, bname = model.meta.get("head_weight"), model.meta.get("head_bias")
        if not wname or wname not in model.values:
            raise DLParamError("this model's head cannot be resized automatically; it has no known "
                               "final fully connected layer")
        fin = int(model.values[wname].shape[1])
        rng = np.random.default_rng(model.hyperparameters["seed"] + k)
        weight, bias = fully_connected_init(fin, k, rng)
        model.replace_params({wname: weight, **({bname: bias} if bname else {})})
        model.graph.outputs = [ValueInfo(v.name, (None, k)) if v.name == model.meta["logits"] else v
                               for v in model.graph.outputs]

    def import_foreign(self, network, params):
        return classifier_from_network(network)


@hookimpl
def dlbatch_register_model_types(register):
    register(Classification())
