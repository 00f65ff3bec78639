"""The model-type interface: what a classification, detection or segmentation plugin provides.

A model type builds the default graph, prepares raw samples (image and labels together), turns
samples into input and target arrays (numpy), names its loss terms with their normalisers,
decodes network outputs into HALCON-style result dicts, and says what it can make of an ONNX
network made elsewhere. Built-in and third-party model types use exactly this interface and
the public state API of `DLModel` (core/model.py).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import DLModelFileError
from .graph import Graph
from .params import ParamSpec
from .preprocess import SampleContext, preprocess_image


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
class TermTarget:
    """What one loss term needs for one micro-batch.

    `target` and `weights` go to the loss as they are (numpy here, moved to the backend by the
    train step). The loss returns an unnormalised sum; the train step divides it by
    `normalizer`, which the model type chooses: the sum of the weights for a weighted mean
    (multinomial logistic), max(1, number of positive anchors) for detection. A normaliser of
    0 means nothing in the micro-batch counts for this term: its value is 0 and it sends no
    gradient. Keeping the division out of the loss lets data-parallel training sum the count
    over every rank's shard before dividing.
    """

    target: Any
    weights: Any
    normalizer: float
    # the divisor is max(normalizer_floor, normalizer summed over every rank's shard): a count
    # such as positive anchors is given raw with floor 1, so data-parallel shards that hold no
    # positives still sum to the single-process divisor
    normalizer_floor: float = 0.0


@dataclass
class Encoded:
    """A micro-batch ready for a backend: graph inputs and, per loss-term name, its target."""

    inputs: dict[str, np.ndarray]
    targets: dict[str, TermTarget]


@dataclass
class ForeignModel:
    """What a model type makes of an ONNX network read from elsewhere (`import_foreign`):
    the graph and its values, the model type's metadata and the hyperparameters it derives
    (class_ids, image size, ...), which the caller's parameters may then override."""

    graph: Graph
    values: dict[str, np.ndarray]
    meta: dict[str, Any]
    params: dict[str, Any]


@dataclass(frozen=True)
class MainMetric:
    """The measure the training procedure ranks evaluations by (best.onnx) and shows first:
    its key in the evaluation summary and whether a higher value is better."""

    name: str
    higher_is_better: bool

    def better(self, new: float, old: float | None) -> bool:
        """Whether `new` beats `old` (any value beats None; NaN never wins)."""
        if new != new:  # NaN
            return False
        if old is None or old != old:
            return True
        return new > old if self.higher_is_better else new < old


class Evaluation:
    """Measures accumulated batch by batch (`evaluate_dl_model` feeds it the results and
    samples of one batch at a time), so that a model type can evaluate a large set without
    holding every prediction in memory. This default keeps everything and calls the model
    type's `evaluate` once at the end."""

    def __init__(self, model_type: "ModelType", hp: Mapping[str, Any]):
        self._model_type, self._hp = model_type, hp
        self._results: list[dict] = []
        self._samples: list[Mapping] = []

    def add(self, results: Sequence[dict], samples: Sequence[Mapping]) -> None:
        self._results.extend(results)
        self._samples.extend(samples)

    def summary(self) -> dict:
        return self._model_type.evaluate(self._results, self._samples, self._hp)


class ModelType(ABC):
    """A model type plugin: classification, segmentation, detection or a third party's.

    Register an instance with the `dlbatch_register_model_types` hook; `name` is what
    `create_dl_model` takes. A model type reaches a model only through its public state API
    (`model.hyperparameters`, `model.replace_params`, ...). `tests/core/two_term_model.py` is a
    complete example.

    Attributes:
        name: the registered name.
        reads_backbone_files: whether `create_dl_model(..., backbone="classifier.onnx")` works.
        main_metric: what `train_dl_model` ranks evaluations by (None: never "best").
    """

    name: str = ""
    reads_backbone_files: bool = False  # create_dl_model(..., backbone="classifier.onnx") accepted
    # What train_dl_model ranks evaluations by; a model type without one is never "best".
    main_metric: MainMetric | None = None

    def param_specs(self) -> list[ParamSpec]:
        """Parameters specific to this model type (added to the generic parameter table).

        Returns:
            ParamSpecs whose `model_types` include this type's name.
        """
        return []

    def default_params(self) -> dict[str, Any]:
        """Overrides of generic defaults for this model type.

        Returns:
            {parameter name: default}.
        """
        return {}

    @abstractmethod
    def backbones(self) -> Sequence[str]:
        """Names accepted by `create_dl_model(..., backbone=...)`; the first is the default.

        Returns:
            Backbone names.
        """

    @abstractmethod
    def build(self, hp: Mapping[str, Any], backbone: str, rng: np.random.Generator
              ) -> tuple[Graph, dict[str, np.ndarray], dict[str, Any]]:
        """The default network of a new model.

        Args:
            hp: the validated hyperparameters.
            backbone: one of `backbones()` (or an ONNX file path when `reads_backbone_files`).
            rng: the generator to initialise weights with (seeded from the `seed` parameter).

        Returns:
            `(graph, values, meta)`: the graph, its initial values (numpy; float64 is fine) and
            model-type metadata kept with the model (e.g. which output holds the logits).
        """

    @abstractmethod
    def loss_terms(self, meta: Mapping[str, Any]) -> list[LossTerm]:
        """The terms of the training objective.

        Args:
            meta: the model's metadata (from `build`).

        Returns:
            One LossTerm per term: its name, the graph output it reads, the default loss and
            the hyperparameter weighting it.
        """

    @abstractmethod
    def check_samples(self, samples: Sequence[Mapping], hp: Mapping[str, Any], *, labels: bool) -> None:
        """Check samples before anything runs, so that a bad sample never changes the model.

        Args:
            samples: the samples of a call.
            hp: the hyperparameters.
            labels: whether the labels are needed (training, evaluation) or not (apply).

        Raises:
            DLSampleError: anything wrong, naming the sample index and the key.
        """

    @abstractmethod
    def encode(self, samples: Sequence[Mapping], hp: Mapping[str, Any], meta: Mapping[str, Any],
               *, labels: bool, dtype: str) -> Encoded:
        """Turn one micro-batch of checked samples into arrays.

        Args:
            samples: the micro-batch.
            hp: the hyperparameters.
            meta: the model's metadata.
            labels: whether to encode targets.
            dtype: the floating type of the inputs ("float32", "float64").

        Returns:
            Graph inputs and, with `labels`, one TermTarget per loss term (numpy arrays).
        """

    @abstractmethod
    def decode(self, outputs: Mapping[str, np.ndarray], hp: Mapping[str, Any], meta: Mapping[str, Any],
               contexts: Sequence[SampleContext]) -> list[dict]:
        """Turn network outputs into result dicts.

        Args:
            outputs: the graph outputs named by `inference_outputs`, as numpy arrays.
            hp: the hyperparameters.
            meta: the model's metadata.
            contexts: how each sample's image was prepared (original size, scale), so results
                can be given in the original image's pixels.

        Returns:
            One result dict per sample.
        """

    def preprocess_sample(self, sample: Mapping[str, Any], hp: Mapping[str, Any], index: int) -> dict:
        """A raw sample (any image size and grey-value type) in the model's input format.
        The default prepares the image and copies every other key; a model type whose labels
        live in image coordinates (boxes, label images) overrides this and transforms them
        with the image, using `SampleContext.of(new_sample, hp)` for the scale."""
        new = dict(sample)
        new["image"] = preprocess_image(sample["image"], hp, index)
        new.setdefault("original_image_size", list(np.shape(sample["image"])[:2]))
        return new

    def import_foreign(self, network, params: Mapping[str, Any]) -> ForeignModel:
        """Make a model of this type from an ONNX network made elsewhere (`network` is a
        core.onnx_foreign.ForeignNetwork: the imported graph, values, shapes, image input).
        Model types that cannot say so; the error tells the user what to do instead."""
        raise DLModelFileError(f"{network.path}: a {self.name} model cannot be read from an ONNX file made "
                               f"elsewhere; create one with create_dl_model({self.name!r}, "
                               "backbone=...) instead")

    def inference_outputs(self, meta: Mapping[str, Any]) -> tuple[str, ...]:
        """Graph outputs that apply_dl_model needs."""
        return tuple(term.output for term in self.loss_terms(meta))

    def evaluate(self, results: list[dict], samples: Sequence[Mapping], hp: Mapping[str, Any]) -> dict:
        """Measure results against the samples' labels (what `evaluate_dl_model` returns).

        Args:
            results: `apply_dl_model`'s results, one per sample.
            samples: the labelled samples.
            hp: the hyperparameters.

        Returns:
            The measures, the main metric among them.
        """
        raise NotImplementedError(f"evaluate is not implemented for {self.name} models")

    def evaluation(self, hp: Mapping[str, Any]) -> Evaluation:
        """A fresh accumulator for evaluate_dl_model; override to measure batch by batch."""
        return Evaluation(self, hp)

    def on_param_changed(self, model, name: str, old: Any, new: Any) -> None:
        """React to a changed hyperparameter (e.g. resize the head when class_ids changes)
        through the model's public state API (`model.replace_params`). Called before the
        change is committed; raise to refuse it."""

    def loss_options(self, term: LossTerm, hp: Mapping[str, Any]) -> dict[str, Any]:
        """Settings passed to a term's loss as `options` (e.g. the focal loss's alpha).

        Args:
            term: the loss term.
            hp: the hyperparameters.

        Returns:
            {option: value}; none by default.
        """
        return {}

    def draw_overlay(self, image: np.ndarray, result: Mapping[str, Any], hp: Mapping[str, Any]) -> np.ndarray:
        """An RGB uint8 H x W x 3 picture of `result` (one apply_dl_model result, in the raw
        image's pixels) drawn over `image` (the raw image, H x W or H x W x C uint8): what
        `dlbatch apply --overlay` writes. The default returns the image unchanged, in RGB."""
        arr = np.asarray(image)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.shape[2] == 1:
            arr = np.repeat(arr, 3, axis=2)
        return np.ascontiguousarray(arr[:, :, :3]).astype(np.uint8)

    def evaluation_plots(self, summary: Mapping[str, Any], hp: Mapping[str, Any], out_dir) -> list:
        """Write the type's evaluation pictures (e.g. a confusion matrix) as PNGs into
        `out_dir` and return their paths: what `dlbatch evaluate --plots DIR` writes."""
        return []
