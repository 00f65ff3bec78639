"""A test-only classification model type (a plugin, public interfaces only) with a chosen
small network, so that data-parallel tests control whether batch norm is in it:

- `plain`: Conv 3x3 -> Relu -> Flatten -> Gemm (no batch norm),
- `bn`: Conv 3x3 -> BatchNormalization -> Relu -> Conv 3x3 -> BatchNormalization -> Flatten -> Gemm,
  (no BatchNormalization -> Relu -> MaxPool chain, which the numpy backend fuses into a kernel
  that does not synchronise statistics).

One loss term (multinomial_logistic), normalised by the number of images of the micro-batch;
with the backbone variant `plain_floor` (the plain network) every image adds to the sum but the
normaliser is max(1, images of the first class), like detection's positive anchors, given as
the raw count and `normalizer_floor` = 1 so that data-parallel steps apply the floor after the
sum over the ranks.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlbatch.core.graph import Graph, Node, ValueInfo
from dlbatch.core.hookspecs import hookimpl
from dlbatch.core.model_type import Encoded, LossTerm, ModelType, TermTarget
from dlbatch.core.samples import check_image, class_index, images_to_nchw


@dataclass
class FlooredTarget(TermTarget):
    """A TermTarget whose normaliser is max(normalizer_floor, normalizer summed over ranks)."""

    normalizer_floor: float = 0.0

NAME = "tiny_dp_test"
CH = 4


class TinyNet(ModelType):
    name = NAME

    def backbones(self):
        return ["plain", "bn", "plain_floor"]

    def build(self, hp, backbone, rng):
        c, h, w, k = hp["image_num_channels"], hp["image_height"], hp["image_width"], len(hp["class_ids"])
        values = {"conv1.weight": rng.normal(0, 0.3, (CH, c, 3, 3))}
        nodes = [Node("Conv", ["image", "conv1.weight"], ["c1"], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, "conv1")]
        stats = []
        x = "c1"
        if backbone == "bn":
            values.update({"bn1.scale": rng.uniform(0.5, 1.5, CH), "bn1.bias": rng.normal(0, 0.1, CH),
                           "bn1.mean": np.zeros(CH), "bn1.var": np.ones(CH),
                           "conv2.weight": rng.normal(0, 0.3, (CH, CH, 3, 3)),
                           "bn2.scale": rng.uniform(0.5, 1.5, CH), "bn2.bias": rng.normal(0, 0.1, CH),
                           "bn2.mean": np.zeros(CH), "bn2.var": np.ones(CH)})
            stats = ["bn1.mean", "bn1.var", "bn2.mean", "bn2.var"]
            nodes += [Node("BatchNormalization", ["c1", "bn1.scale", "bn1.bias", "bn1.mean", "bn1.var"], ["b1"],
                           {"epsilon": 1e-5}, "bn1"),
                      Node("Relu", ["b1"], ["r1"], {}, "relu1"),
                      Node("Conv", ["r1", "conv2.weight"], ["c2"], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]},
                           "conv2"),
                      Node("BatchNormalization", ["c2", "bn2.scale", "bn2.bias", "bn2.mean", "bn2.var"], ["x"],
                           {"epsilon": 1e-5}, "bn2")]
            x = "x"
        else:
            nodes.append(Node("Relu", ["c1"], ["x"], {}, "relu1"))
            x = "x"
        values.update({"fc.weight": rng.normal(0, 0.1, (k, CH * h * w)), "fc.bias": np.zeros(k)})
        nodes += [Node("Flatten", [x], ["flat"], {"axis": 1}, "flatten"),
                  Node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], {"transB": 1}, "fc")]
        trainable = [n for n in values if n not in stats]
        graph = Graph(nodes, [ValueInfo("image", (None, c, None, None))], [ValueInfo("logits", (None, k))],
                      trainable=trainable, statistics=stats)
        meta = {"input": "image", "floor": backbone == "plain_floor"}
        return graph, {n: np.asarray(v, dtype=np.float32) for n, v in values.items()}, meta

    def loss_terms(self, meta):
        return [LossTerm("classification", "logits", "multinomial_logistic")]

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
            if meta.get("floor"):
                # every image adds to the sum (like focal's negatives), class-0 images normalise
                targets["classification"] = FlooredTarget(y, np.ones(len(y), dtype=dtype), float((y == 0).sum()),
                                                          normalizer_floor=1.0)
            else:
                targets["classification"] = TermTarget(y, np.ones(len(y), dtype=dtype), float(len(y)))
        return Encoded(inputs, targets)

    def decode(self, outputs, hp, meta, contexts):
        return [{"class_id": hp["class_ids"][int(np.argmax(z))]} for z in outputs["logits"]]


@hookimpl
def dlbatch_register_model_types(register):
    register(TinyNet())
