"""dlbatch: train deep-learning models one batch at a time (HALCON train_dl_model_batch
semantics) with plugin model types, losses and compute backends.

    import dlbatch
    model = dlbatch.create_dl_model("classification", backbone="compact", num_classes=10,
                                    image_dimensions=[8, 8, 1], batch_size=32)
    losses = dlbatch.train_dl_model_batch(model, samples)
"""
from __future__ import annotations

from typing import Any

from .core.create import create_dl_model
from .core.errors import (DLBackendError, DLError, DLModelFileError, DLNumericError, DLParamError,
                          DLPluginError, DLSampleError)
from .core.model import DLModel
from .core.plugins import manager as plugin_manager
from .core.preprocess import preprocess_dl_samples
from .core.system import get_system, set_system

__version__ = "0.1.0"


def train_dl_model_batch(model: DLModel, samples) -> dict[str, float]:
    """One weight update from batch_size * batch_size_multiplier samples (SPEC section 1)."""
    return model.train_batch(samples)


def apply_dl_model(model: DLModel, samples) -> list[dict]:
    """Inference: one result dict per sample (SPEC section 6)."""
    return model.apply(samples)


def evaluate_dl_model(model: DLModel, samples) -> dict:
    """Apply the model to labelled samples and measure (accuracy, confusion matrix, ...)."""
    return model.evaluate(samples)


def get_dl_model_param(model: DLModel, name: str) -> Any:
    return model.get_param(name)


def set_dl_model_param(model: DLModel, name: str, value: Any) -> None:
    model.set_param(name, value)


def write_dl_model(model: DLModel, path) -> None:
    """Write the model to one .onnx file (atomically)."""
    from .core.onnx_io import write_dl_model as _write
    _write(model, path)


def read_dl_model(path, backend: str | None = None, device: str = "cpu", **kwargs) -> DLModel:
    """Read a dlbatch .onnx file or an ONNX classifier made elsewhere."""
    from .core.onnx_io import read_dl_model as _read
    return _read(path, backend=backend, device=device, **kwargs)


def detection_params_from_samples(samples, image_width: int, image_height: int, **options) -> dict:
    """Anchor parameters (min_level, max_level, anchor_num_subscales, anchor_aspect_ratios, and
    anchor_angles for rectangle2 boxes) suggested from the samples' boxes so that most boxes get
    an anchor with IoU >= 0.5 (HALCON's determine_dl_model_detection_param)."""
    from .models.detection.detection_params import detection_params_from_samples as _suggest
    return _suggest(samples, image_width, image_height, **options)


def export_inference_onnx(model: DLModel, path) -> None:
    """Write a detection model as an inference-only .onnx file whose graph also decodes the boxes
    and runs NonMaxSuppression, so onnxruntime alone returns apply_dl_model's detections
    (atomically; outputs in dlbatch.models.detection.inference_export). Other models: DLParamError."""
    from .models.detection.inference_export import export_inference_onnx as _export
    _export(model, path)


def train_dl_model(model: DLModel, train, validation=None, **options) -> dict:
    """The training procedure (HALCON's train_dl_model): shuffled epochs of
    train_dl_model_batch, change strategies, augmentation, evaluation, best/final checkpoints
    and exact resume; options in dlbatch.training.train_dl_model."""
    from .training import train_dl_model as _train
    return _train(model, train, validation, **options)


def read_dl_dataset(path, **options):
    """A dataset on disk (class folders, COCO JSON, images/ + labels/, HALCON DLDataset JSON)
    as a lazy sequence of raw samples; options in dlbatch.datasets.read_dl_dataset."""
    from .datasets import read_dl_dataset as _read
    return _read(path, **options)


def split_dl_dataset(dataset, train_percent: float = 70, validation_percent: float = 15, seed: int = 42):
    """A copy of `dataset` whose samples are split into train/validation/test (HALCON's
    split_dl_dataset), the same for the same seed."""
    from .datasets import split_dl_dataset as _split
    return _split(dataset, train_percent, validation_percent, seed)


def plugins():
    """Every loaded plugin: name, source, distribution, version and what it registered."""
    return plugin_manager.plugins()


__all__ = [
    "DLModel", "create_dl_model", "read_dl_model", "write_dl_model", "train_dl_model_batch",
    "apply_dl_model", "evaluate_dl_model", "get_dl_model_param", "set_dl_model_param",
    "preprocess_dl_samples", "train_dl_model", "read_dl_dataset", "split_dl_dataset",
    "detection_params_from_samples", "export_inference_onnx", "set_system", "get_system",
    "plugins", "plugin_manager",
    "DLError", "DLParamError", "DLSampleError", "DLPluginError", "DLBackendError", "DLNumericError",
    "DLModelFileError",
]
