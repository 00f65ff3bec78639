"""The model type "multi_label_classification": any number of classes per image, none included.

A sample's labels are `image_label_ids`, the ids of every class the image shows (a list,
possibly empty). The network is built with dlbatch's public network API
(`dlbatch.models.network`): a backbone (built-in, or a classifier read from an ONNX file), global
average pooling and a freshly initialised fully connected head with one logit per class. The K
logits are K independent yes/no answers, trained with the loss term `multi_label` (default loss
`binary_logistic`, this plugin's) as a mean over samples x classes. `apply_dl_model` returns
every class whose sigmoid confidence is at least the parameter `min_confidence`, best first;
`evaluate_dl_model` gives each class's F1 score at that threshold and ranks models by their mean.
"""
from __future__ import annotations

import numpy as np

from dlbatch.core.errors import DLParamError, DLSampleError
from dlbatch.core.model_type import Encoded, LossTerm, MainMetric, ModelType, TermTarget
from dlbatch.core.params import ParamSpec
from dlbatch.core.samples import check_image, class_index, images_to_nchw, require_key, sample_array
from dlbatch.models.network import backbone_names, build_backbone

NAME = "multi_label_classification"
LABELS = "image_label_ids"
TERM = "multi_label"
HEAD = "multi_label_head"       # the fully connected layer: HEAD.weight (K x C), HEAD.bias
LOGITS = "multi_label_logits"   # its output, N x K


def label_indices(sample, index: int, id_to_index) -> list[int]:
    """The class indices 0..K-1 of a sample's `image_label_ids`, with the built-in types' errors."""
    value = require_key(sample, index, LABELS, "training and evaluating this model need")
    ids = sample_array(value, index, LABELS)
    if ids.ndim != 1:
        raise DLSampleError(f"sample {index}: {LABELS!r} must be a list of class ids (empty for an image "
                            f"without any of the classes), got {value!r:.80}")
    return [class_index({LABELS: cid}, index, LABELS, id_to_index) for cid in ids]


def multi_hot(samples, hp, dtype="float64") -> np.ndarray:
    """N x K: 1 where a sample shows the class."""
    id_to_index = {cid: k for k, cid in enumerate(hp["class_ids"])}
    y = np.zeros((len(samples), len(id_to_index)), dtype=dtype)
    for n, sample in enumerate(samples):
        y[n, label_indices(sample, n, id_to_index)] = 1
    return y


def unit_interval(x) -> str | None:
    return None if 0 <= x <= 1 else "must be in [0, 1]"


class MultiLabelClassification(ModelType):
    name = NAME
    reads_backbone_files = True   # build_backbone reads a classifier file as the built-in types do
    main_metric = MainMetric("mean_f1", higher_is_better=True)

    def param_specs(self):
        return [ParamSpec("min_confidence", "float", 0.5, "apply returns the classes whose confidence "
                          "(sigmoid of the class's logit) is at least this", check=unit_interval,
                          model_types=(NAME,))]

    def backbones(self):
        return backbone_names()

    def build(self, hp, backbone, rng):
        # the backbone (its deepest feature map), pooled, and our own head: K = len(class_ids)
        # outputs, freshly initialised from the rng create_dl_model seeds
        net = build_backbone(backbone, hp, rng)
        pooled = net.global_average_pool(net.features.last.name, "pool")
        logits = net.fully_connected(pooled, len(hp["class_ids"]), HEAD, output=LOGITS)
        graph, values = net.finish([logits])
        return graph, values, {"input": net.input, "logits": logits}

    def loss_terms(self, meta):
        return [LossTerm(TERM, meta["logits"], "binary_logistic")]

    def check_samples(self, samples, hp, *, labels):
        id_to_index = {cid: k for k, cid in enumerate(hp["class_ids"])}
        for i, sample in enumerate(samples):
            check_image(sample, i, hp)
            if labels:
                label_indices(sample, i, id_to_index)

    def encode(self, samples, hp, meta, *, labels, dtype):
        inputs = {meta["input"]: images_to_nchw(samples, hp, dtype)}
        targets = {}
        if labels:
            y = multi_hot(samples, hp, dtype)
            weights = np.ones(y.shape[1]) if hp.get("class_weights") is None else np.asarray(hp["class_weights"])
            a = np.broadcast_to(weights, y.shape).astype(dtype)
            # a weighted mean over samples x classes: N x K with the default weights
            targets[TERM] = TermTarget(y, a, float(a.sum(dtype=np.float64)))
        return Encoded(inputs, targets)

    def decode(self, outputs, hp, meta, contexts):
        z = np.asarray(outputs[meta["logits"]], dtype=np.float64)
        confidences = np.exp(-np.logaddexp(0.0, -z))  # sigmoid, without overflow
        ids, names = hp["class_ids"], hp["class_names"]
        results = []
        for p in confidences:
            keep = [k for k in np.argsort(-p, kind="stable") if p[k] >= hp["min_confidence"]]
            results.append({"classification_class_ids": [ids[k] for k in keep],
                            "classification_class_names": [names[k] for k in keep],
                            "classification_confidences": [float(p[k]) for k in keep]})
        return results

    def evaluate(self, results, samples, hp):
        """Per class at min_confidence: F1 = 2 TP / (2 TP + FP + FN); a class that no sample
        shows and none was predicted has no F1 (None) and is left out of `mean_f1`."""
        truth = multi_hot(samples, hp).astype(bool)
        predicted = multi_hot([{LABELS: r["classification_class_ids"]} for r in results], hp).astype(bool)
        tp, fp = (truth & predicted).sum(axis=0), (~truth & predicted).sum(axis=0)
        fn = (truth & ~predicted).sum(axis=0)
        counted = 2 * tp + fp + fn
        f1 = [float(2 * t / c) if c else None for t, c in zip(tp, counted)]
        defined = [v for v in f1 if v is not None]
        return {"num_samples": len(samples),
                "mean_f1": float(np.mean(defined)) if defined else 1.0,  # nothing to find, nothing found
                "per_class_f1": f1,
                "exact_match_accuracy": float((truth == predicted).all(axis=1).mean()) if len(samples) else 0.0,
                "class_ids": list(hp["class_ids"])}

    def on_param_changed(self, model, name, old, new):
        if name == "class_ids" and len(old) != len(new):
            raise DLParamError(f"a {NAME} model keeps its number of classes ({len(old)}); new class_ids may "
                               "rename them, but for another number create a new model")
