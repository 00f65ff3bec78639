"""A test-only model type, written as a third-party plugin would be: only the public
interfaces (ModelType, TermTarget, Graph, the model's public state API).

Two loss terms read two heads on one shared hidden layer, and both use the same registered
loss (multinomial_logistic):
- `main`: a weighted mean over the images (normaliser: the sum of the class weights),
- `aux`: every image counts, normalised by the number of "positive" images (label not the first
  class id), at least 1, the way detection's focal loss divides by the positive anchors;
  weighted by the hyperparameter `aux_weight`.
"""
from __future__ import annotations

import numpy as np

from dlbatch.core.graph import Graph, Node, ValueInfo
from dlbatch.core.hookspecs import hookimpl
from dlbatch.core.model_type import Encoded, LossTerm, ModelType, TermTarget
from dlbatch.core.params import ParamSpec, non_negative
from dlbatch.core.samples import check_image, class_index, images_to_nchw

NAME = "two_term_test"
HIDDEN = 6


class TwoTerm(ModelType):
    name = NAME

    def param_specs(self):
        return [ParamSpec("aux_weight", "float", 0.5, "weight of the aux term", check=non_negative,
                          model_types=(NAME,))]

    def backbones(self):
        return ["linear"]

    def build(self, hp, backbone, rng):
        c, h, w, k = hp["image_num_channels"], hp["image_height"], hp["image_width"], len(hp["class_ids"])
        fin = c * h * w
        values = {"hidden.weight": rng.normal(0, 0.3, (HIDDEN, fin)), "hidden.bias": rng.normal(0, 0.1, HIDDEN),
                  "a.weight": rng.normal(0, 0.3, (k, HIDDEN)), "a.bias": np.zeros(k),
                  "b.weight": rng.normal(0, 0.3, (k, HIDDEN)), "b.bias": np.zeros(k)}
        nodes = [Node("Flatten", ["image"], ["flat"], {"axis": 1}, "flatten"),
                 Node("Gemm", ["flat", "hidden.weight", "hidden.bias"], ["hidden_pre"], {"transB": 1}, "hidden"),
                 Node("Relu", ["hidden_pre"], ["hidden_out"], {}, "relu"),
                 Node("Gemm", ["hidden_out", "a.weight", "a.bias"], ["logits_a"], {"transB": 1}, "a"),
                 Node("Gemm", ["hidden_out", "b.weight", "b.bias"], ["logits_b"], {"transB": 1}, "b")]
        graph = Graph(nodes, [ValueInfo("image", (None, c, None, None))],
                      [ValueInfo("logits_a", (None, k)), ValueInfo("logits_b", (None, k))],
                      trainable=list(values))
        return graph, values, {"input": "image"}

    def loss_terms(self, meta):
        return [LossTerm("main", "logits_a", "multinomial_logistic"),
                LossTerm("aux", "logits_b", "multinomial_logistic", weight_param="aux_weight")]

    def check_samples(self, samples, hp, *, labels):
        ids = {cid: i for i, cid in enumerate(hp["class_ids"])}
        for i, s in enumerate(samples):
            check_image(s, i, hp)
            if labels:
                class_index(s, i, "image_label_id", ids)

    def encode(self, samples, hp, meta, *, labels, dtype):
        inputs = {"image": images_to_nchw(samples, hp, dtype)}
        targets = {}
        if labels:
            ids = {cid: i for i, cid in enumerate(hp["class_ids"])}
            y = np.array([class_index(s, i, "image_label_id", ids) for i, s in enumerate(samples)])
            cw = np.ones(len(ids)) if hp.get("class_weights") is None else np.asarray(hp["class_weights"])
            a = cw[y].astype(dtype)
            targets["main"] = TermTarget(y, a, float(a.sum()))
            targets["aux"] = TermTarget(y, np.ones(len(y), dtype=dtype), float(max(1, int((y != 0).sum()))))
        return Encoded(inputs, targets)

    def decode(self, outputs, hp, meta, contexts):
        return [{"main_class_id": hp["class_ids"][int(np.argmax(za))],
                 "aux_class_id": hp["class_ids"][int(np.argmax(zb))],
                 "original_image_size": [ctx.original_height, ctx.original_width]}
                for za, zb, ctx in zip(outputs["logits_a"], outputs["logits_b"], contexts)]


@hookimpl
def dlbatch_register_model_types(register):
    register(TwoTerm())
