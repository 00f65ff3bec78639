"""ForeignModel: what a model type makes of an ONNX network made elsewhere
(`ModelType.import_foreign`), before dlbatch turns it into a DLModel."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .graph import Graph

__all__ = ["ForeignModel"]


@dataclass
class ForeignModel:
    """What a model type makes of an ONNX network read from elsewhere (`ModelType.import_foreign`).

    Attributes:
        graph: the model's graph.
        values: its initial values (numpy).
        meta: the model type's metadata (as `ModelType.build` returns).
        params: the hyperparameters it derives (class_ids, image size, ...), which the
            caller's parameters may then override.

    Examples:
        >>> import numpy as np
        >>> import dlbatch
        >>> model = dlbatch.create_dl_model("classification", class_ids=[0, 1, 2], image_dimensions=[16, 16, 3])
        >>> values = {n: np.asarray(v) for n, v in model.numpy_values().items()}
        >>> made = ForeignModel(model.graph, values, dict(model.meta), {"class_ids": [0, 1, 2]})
        >>> made.params["class_ids"]
        [0, 1, 2]
    """

    graph: Graph
    values: dict[str, np.ndarray]
    meta: dict[str, Any]
    params: dict[str, Any]
