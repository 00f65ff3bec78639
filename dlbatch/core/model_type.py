"""The model-type interface: what a classification, detection or segmentation plugin provides.

A model type builds the default graph, turns samples into input and target arrays (numpy),
names its loss terms, and decodes network outputs into HALCON-style result dicts.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .graph import Graph
from .params import ParamSpec


@dataclass(frozen=True)
class LossTerm:
    """One term of the training objective. `output` is the graph output it reads,
    `default_loss` the registered loss used unless the `losses` parameter says otherwise,
    `weight_param` the hyperparameter that weights it (None: weight 1)."""

    name: str
    output: str
    default_loss: str
    weight_param: str | None = None


@dataclass
class Encoded:
    """A micro-batch ready for a backend: graph inputs and, per loss term, (target, weights)."""

    inputs: dict[str, np.ndarray]
    targets: dict[str, tuple[Any, Any]]


class ModelType(ABC):
    name: str = ""

    def param_specs(self) -> list[ParamSpec]:
        """Parameters specific to this model type (added to the generic table)."""
        return []

    def default_params(self) -> dict[str, Any]:
        """Overrides of generic defaults for this model type."""
        return {}

    @abstractmethod
    def backbones(self) -> Sequence[str]:
        """Names accepted by create_dl_model(..., backbone=...)."""

    @abstractmethod
    def build(self, hp: Mapping[str, Any], backbone: str, rng: np.random.Generator
              ) -> tuple[Graph, dict[str, np.ndarray], dict[str, Any]]:
        """The default graph, its initial values (numpy, float64 is fine) and model-type
        metadata to keep with the model (e.g. which output holds the logits)."""

    @abstractmethod
    def loss_terms(self, meta: Mapping[str, Any]) -> list[LossTerm]:
        ...

    @abstractmethod
    def check_samples(self, samples: Sequence[Mapping], hp: Mapping[str, Any], *, labels: bool) -> None:
        """Raise DLSampleError naming the sample index and key for anything wrong."""

    @abstractmethod
    def encode(self, samples: Sequence[Mapping], hp: Mapping[str, Any], meta: Mapping[str, Any],
               *, labels: bool, dtype: str) -> Encoded:
        ...

    @abstractmethod
    def decode(self, outputs: Mapping[str, np.ndarray], hp: Mapping[str, Any],
               meta: Mapping[str, Any]) -> list[dict]:
        ...

    def inference_outputs(self, meta: Mapping[str, Any]) -> tuple[str, ...]:
        """Graph outputs that apply_dl_model needs."""
        return tuple(term.output for term in self.loss_terms(meta))

    def evaluate(self, results: list[dict], samples: Sequence[Mapping], hp: Mapping[str, Any]) -> dict:
        raise NotImplementedError(f"evaluate is not implemented for {self.name} models")

    def on_param_changed(self, model, name: str, old: Any, new: Any) -> None:
        """React to a changed hyperparameter (e.g. resize the head when class_ids changes).
        Called before the change is committed; raise to refuse it."""

    def loss_options(self, term: LossTerm, hp: Mapping[str, Any]) -> dict[str, Any]:
        return {}
