"""Shared by the synthetic examples: a resnet18 classifier trained to name the one shape in an
image, written to ONNX, so a segmentation or detection model can be built on the file
(`backbone="…/classifier.onnx"`), starting from trained features."""
from __future__ import annotations

import os

import numpy as np

import dlbatch
from dlbatch.data import detection_samples


def train_classifier_file(folder: str, class_ids, *, side: int, batch: int, steps: int, learning_rate: float,
                          backend: str, **data_options) -> str:
    """Train the classifier for `steps` steps and return the path of its ONNX file in `folder`."""
    model = dlbatch.create_dl_model("classification", backbone="resnet18", class_ids=list(class_ids),
                                    image_dimensions=[side, side, 3], batch_size=batch, learning_rate=learning_rate,
                                    momentum=0.9, weight_prior=1e-5, backend=backend)
    raw = detection_samples(max(4 * batch, steps * batch // 4), height=side, width=side, class_ids=class_ids,
                            seed=11, min_objects=1, max_objects=1, **data_options)
    data = dlbatch.preprocess_dl_samples([{"image": s["image"], "image_label_id": int(s["bbox_label_id"][0])}
                                          for s in raw], model)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        model.train_batch([data[i] for i in rng.choice(len(data), batch, replace=False)])
    path = os.path.join(folder, "classifier.onnx")
    dlbatch.write_dl_model(model, path)
    return path
