"""The model-type interface: what a classification, detection or segmentation plugin provides.

A model type builds the default graph, prepares raw samples (image and labels together), turns
samples into input and target arrays (numpy), names its loss terms with their normalisers,
decodes network outputs into HALCON-style result dicts, and says what it can make of an ONNX
network made elsewhere. Built-in and third-party model types use exactly this interface and
the public state API of `DLModel` (core/model.py). The types of its answers live beside it:
`dlbatch.core.loss_terms` (LossTerm, TermTarget, Encoded) and `dlbatch.core.model_evaluation`
(MainMetric, Evaluation); this module re-exports them. The evaluation hooks (`evaluate`,
`evaluation`, `evaluation_plots`) are `dlbatch.core.model_type_evaluation.EvaluationHooks`,
which ModelType inherits (re-exported here).

The examples of this module call the built-in classification model type the way the framework
does; `tests/core/two_term_model.py` is a complete model type written as a plugin.

Examples:
    >>> import numpy as np
    >>> import dlbatch
    >>> from dlbatch.data import classification_samples
    >>> model = dlbatch.create_dl_model("classification", class_ids=[0, 1, 2],
    ...                                 image_dimensions=[16, 16, 3], batch_size=2)
    >>> mt, hp, meta = model.model_type, model.hyperparameters, model.meta
    >>> raw = classification_samples(2, height=20, width=24)
    >>> samples = dlbatch.preprocess_dl_samples(raw, model)
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import DLModelFileError
from .foreign_model import ForeignModel
from .graph import Graph
from .loss_terms import Encoded, LossTerm, TermTarget
from .model_evaluation import Evaluation, MainMetric
from .model_type_evaluation import EvaluationHooks
from .params import ParamSpec
from .preprocess import SampleContext, preprocess_image

__all__ = ["ModelType", "EvaluationHooks", "LossTerm", "TermTarget", "Encoded", "ForeignModel", "MainMetric",
           "Evaluation"]


class ModelType(EvaluationHooks, ABC):
    """A model type plugin: classification, segmentation, detection or a third party's.

    Register an instance with the `dlbatch_register_model_types` hook; `name` is what
    `create_dl_model` takes. One instance serves every model of the type, so it keeps no
    per-model state: what a model needs is in its hyperparameters (`hp`) and in the metadata
    `build` returns (`meta`). A model type reaches a model only through its public state API
    (`model.hyperparameters`, `model.replace_params`, ...). A subclass implements the abstract
    methods; the others, the evaluation hooks inherited from `EvaluationHooks` among them, have
    working defaults. `tests/core/two_term_model.py` is a complete example.

    Attributes:
        name: the registered name.
        reads_backbone_files: whether `create_dl_model(..., backbone="classifier.onnx")` works.
        main_metric: what `train_dl_model` ranks evaluations by (None: never "best").

    Examples:
        >>> mt.name, mt.reads_backbone_files
        ('classification', False)
    """

    name: str = ""
    reads_backbone_files: bool = False
    main_metric: MainMetric | None = None

    def param_specs(self) -> list[ParamSpec]:
        """Parameters specific to this model type, added to the generic parameter table.

        Read when a model is created or read, by `dlbatch params TYPE` and by the parameter
        reference of the docs.

        Returns:
            ParamSpecs whose `model_types` include this type's name (none by default).

        Examples:
            >>> from dlbatch.core.plugins import manager
            >>> "anchor_angles" in {spec.name for spec in manager.model_type("detection").param_specs()}
            True
        """
        return []

    def default_params(self) -> dict[str, Any]:
        """Overrides of generic defaults for this model type.

        Applied when a model is created, before the caller's parameters.

        Returns:
            {parameter name: default} (none by default).

        Examples:
            >>> mt.default_params()
            {'losses': None}
        """
        return {}

    @abstractmethod
    def backbones(self) -> Sequence[str]:
        """Names accepted by `create_dl_model(..., backbone=...)`; the first is the default.

        Returns:
            Backbone names.

        Examples:
            >>> mt.backbones()[0]
            'compact'
        """

    @abstractmethod
    def build(self, hp: Mapping[str, Any], backbone: str, rng: np.random.Generator
              ) -> tuple[Graph, dict[str, np.ndarray], dict[str, Any]]:
        """The default network of a new model.

        Called once by `create_dl_model`; the same `hp` and seed must give the same values.

        Args:
            hp: the validated hyperparameters.
            backbone: one of `backbones()` (or an ONNX file path when `reads_backbone_files`).
            rng: the generator to initialise weights with (seeded from the `seed` parameter).

        Returns:
            `(graph, values, meta)`: the graph, its initial values (numpy; float64 is fine; one
            per `graph.initializer_names()`) and model-type metadata kept with the model and
            written into its file (e.g. which output holds the logits): JSON-compatible values.

        Examples:
            >>> graph, values, built_meta = mt.build(hp, "compact", np.random.default_rng(0))
            >>> sorted(values) == sorted(graph.initializer_names()), built_meta["logits"]
            (True, 'logits')
        """

    @abstractmethod
    def loss_terms(self, meta: Mapping[str, Any]) -> list[LossTerm]:
        """The terms of the training objective.

        Called at every train step and when the `losses` parameter is checked.

        Args:
            meta: the model's metadata (from `build`).

        Returns:
            One LossTerm per term: its name, the graph output it reads, the default loss and
            the hyperparameter weighting it.

        Examples:
            >>> [term.name for term in mt.loss_terms(meta)]
            ['classification']
        """

    @abstractmethod
    def check_samples(self, samples: Sequence[Mapping], hp: Mapping[str, Any], *, labels: bool) -> None:
        """Check samples before anything runs, so that a bad sample never changes the model.

        Called with every sample of a train, apply or evaluate call before any of them is
        encoded; `encode` may then assume valid samples. `dlbatch.core.samples` has the
        common checks.

        Args:
            samples: the samples of a call.
            hp: the hyperparameters.
            labels: whether the labels are needed (training, evaluation) or not (apply).

        Raises:
            DLSampleError: anything wrong, naming the sample index and the key.

        Examples:
            >>> mt.check_samples(samples, hp, labels=True)         # fine: returns None
            >>> mt.check_samples([{**samples[0], "image_label_id": 9}], hp, labels=True)
            Traceback (most recent call last):
            dlbatch.core.errors.DLSampleError: sample 0: 'image_label_id' is 9, which is not one of
            the model's class_ids [0, 1, 2]; ...
        """

    @abstractmethod
    def encode(self, samples: Sequence[Mapping], hp: Mapping[str, Any], meta: Mapping[str, Any],
               *, labels: bool, dtype: str) -> Encoded:
        """Turn one micro-batch of checked samples into arrays.

        Called once per micro-batch by the train step (`labels=True`) and per chunk of
        batch_size samples by apply and evaluate (`labels=False`).

        Args:
            samples: the micro-batch.
            hp: the hyperparameters.
            meta: the model's metadata.
            labels: whether to encode targets.
            dtype: the floating type of the inputs ("float32", "float64").

        Returns:
            Graph inputs and, with `labels`, one TermTarget per loss term (numpy arrays).

        Examples:
            >>> sorted(mt.encode(samples, hp, meta, labels=False, dtype="float32").inputs)
            ['image']
        """

    @abstractmethod
    def decode(self, outputs: Mapping[str, np.ndarray], hp: Mapping[str, Any], meta: Mapping[str, Any],
               contexts: Sequence[SampleContext]) -> list[dict]:
        """Turn network outputs into result dicts (what `apply_dl_model` returns).

        Called once per chunk of batch_size samples after the inference forward.

        Args:
            outputs: the graph outputs named by `inference_outputs`, as numpy arrays.
            hp: the hyperparameters.
            meta: the model's metadata.
            contexts: how each sample's image was prepared (original size, scale), so results
                can be given in the original image's pixels.

        Returns:
            One result dict per sample.

        Examples:
            >>> contexts = [SampleContext.of(s, hp, i) for i, s in enumerate(samples)]
            >>> logits = np.array([[0.0, 3.0, 0.0], [3.0, 0.0, 0.0]])
            >>> [r["classification_class_ids"][0] for r in mt.decode({"logits": logits}, hp, meta, contexts)]
            [1, 0]
        """

    def preprocess_sample(self, sample: Mapping[str, Any], hp: Mapping[str, Any], index: int) -> dict:
        """A raw sample (any image size and grey-value type) in the model's input format.

        Called by `preprocess_dl_samples` and the training procedure for every sample. The
        default prepares the image and copies every other key; a model type whose labels
        live in image coordinates (boxes, label images) overrides this and transforms them
        with the image, using `SampleContext.of(new_sample, hp)` for the scale.

        Args:
            sample: the raw sample (not changed).
            hp: the hyperparameters (image size, range, channels).
            index: its index in the call, for error messages.

        Returns:
            A new sample dict, with `original_image_size` set to the raw image's size.

        Raises:
            DLSampleError: an image that cannot be prepared.

        Examples:
            >>> prepared = mt.preprocess_sample(raw[0], hp, 0)
            >>> prepared["image"].shape, prepared["original_image_size"]
            ((16, 16, 3), [20, 24])
        """
        new = dict(sample)
        new["image"] = preprocess_image(sample["image"], hp, index)
        new.setdefault("original_image_size", list(np.shape(sample["image"])[:2]))
        return new

    def import_foreign(self, network, params: Mapping[str, Any]) -> ForeignModel:
        """Make a model of this type from an ONNX network made elsewhere.

        Called by `read_dl_model(path, type=...)` for a file dlbatch did not write. Model types
        that cannot do this keep the default, which says so and what to do instead.

        Args:
            network: a `dlbatch.core.onnx_foreign.ForeignNetwork`: the imported graph,
                values, shapes, image input.
            params: the parameters the caller passed to `read_dl_model`.

        Returns:
            The graph, values, metadata and derived hyperparameters of the new model.

        Raises:
            DLModelFileError: the network does not fit this model type, saying why.

        Examples:
            >>> from types import SimpleNamespace
            >>> manager.model_type("segmentation").import_foreign(SimpleNamespace(path="net.onnx"), {})
            Traceback (most recent call last):
            dlbatch.core.errors.DLModelFileError: net.onnx: a segmentation model cannot be read from
            an ONNX file made elsewhere; ...
        """
        raise DLModelFileError(f"{network.path}: a {self.name} model cannot be read from an ONNX file made "
                               f"elsewhere; create one with create_dl_model({self.name!r}, "
                               "backbone=...) instead")

    def inference_outputs(self, meta: Mapping[str, Any]) -> tuple[str, ...]:
        """Graph outputs that apply_dl_model needs (the forward computes nothing else).

        Args:
            meta: the model's metadata.

        Returns:
            Output names; by default those the loss terms read.

        Examples:
            >>> mt.inference_outputs(meta)
            ('logits',)
        """
        return tuple(term.output for term in self.loss_terms(meta))

    def on_param_changed(self, model, name: str, old: Any, new: Any) -> None:
        """React to a changed hyperparameter through the model's public state API.

        Called by `set_dl_model_param` for each changed parameter before the change is
        committed (e.g. classification re-initialises its head with `model.replace_params`
        when class_ids changes). Raise to refuse the change; the model then stays as it was.

        Args:
            model: the model (a DLModel).
            name: the parameter's name.
            old: its current value.
            new: the value being set.

        Raises:
            DLParamError: the change is not possible for this model type, saying why.

        Examples:
            >>> dlbatch.set_dl_model_param(model, "class_ids", [0, 1, 2, 3])   # calls it
            >>> model.state_dict()["fc.weight"].shape[0]
            4
        """

    def loss_options(self, term: LossTerm, hp: Mapping[str, Any]) -> dict[str, Any]:
        """Settings passed to a term's loss as `options` (e.g. the focal loss's alpha).

        Called at every train step for each loss term.

        Args:
            term: the loss term.
            hp: the hyperparameters.

        Returns:
            {option: value}; none by default.

        Examples:
            >>> mt.loss_options(mt.loss_terms(meta)[0], hp)
            {}
        """
        return {}

    def draw_overlay(self, image: np.ndarray, result: Mapping[str, Any], hp: Mapping[str, Any]) -> np.ndarray:
        """A picture of one result drawn over its image: what `dlbatch apply --overlay` writes.

        Args:
            image: the raw image, H x W or H x W x C uint8.
            result: one apply_dl_model result, in the raw image's pixels.
            hp: the hyperparameters (class names, ...).

        Returns:
            An RGB uint8 H x W x 3 picture. The default returns the image unchanged, in RGB.

        Examples:
            >>> result = dlbatch.apply_dl_model(model, samples[:1])[0]
            >>> mt.draw_overlay(raw[0]["image"], result, hp).shape
            (20, 24, 3)
        """
        arr = np.asarray(image)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.shape[2] == 1:
            arr = np.repeat(arr, 3, axis=2)
        return np.ascontiguousarray(arr[:, :, :3]).astype(np.uint8)
