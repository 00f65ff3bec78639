"""dlbatch: train deep-learning models one batch at a time (HALCON train_dl_model_batch
semantics) with plugin model types, losses and compute backends.

    import dlbatch
    model = dlbatch.create_dl_model("classification", backbone="compact", num_classes=10,
                                    image_dimensions=[8, 8, 1], batch_size=32)
    losses = dlbatch.train_dl_model_batch(model, samples)

`dlbatch.plugin_manager` is the process's plugin manager (dlbatch.core.plugins.PluginManager):
what `dlbatch.plugins()` lists, and where `register_plugin` adds a plugin object at run time.
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
    """One weight update from exactly batch_size * batch_size_multiplier samples (HALCON's
    train_dl_model_batch).

    The samples are split in order into batch_size_multiplier micro-batches; each runs forward
    (batch norm on the micro-batch's statistics) and backward; losses and gradients are averaged,
    the weight prior is added once, and the solver makes one update. See "How a training step
    works" in the docs for the formulas.

    Args:
        model: the model to train (changed in place).
        samples: preprocessed sample dicts (`preprocess_dl_samples`) with the model type's labels.

    Returns:
        `total_loss` and one `loss_<loss name>` per loss term plus `loss_regularization`.

    Raises:
        DLSampleError: the wrong number of samples, a missing key, a bad shape or label.
        DLNumericError: a non-finite loss or gradient. On any error the weights, batch-norm
            statistics and solver state stay bit-identical.
        DLBackendError: an inference-only backend (onnxruntime); switch the backend to train.

    Examples:
        >>> import dlbatch
        >>> from dlbatch.data import classification_samples
        >>> model = dlbatch.create_dl_model("classification", class_ids=[0, 1, 2],
        ...                                 image_dimensions=[16, 16, 3], batch_size=4)
        >>> samples = dlbatch.preprocess_dl_samples(classification_samples(4, height=16, width=16), model)
        >>> sorted(dlbatch.train_dl_model_batch(model, samples))
        ['loss_multinomial_logistic', 'loss_regularization', 'total_loss']
    """
    return model.train_batch(samples)


def apply_dl_model(model: DLModel, samples) -> list[dict]:
    """Inference (HALCON's apply_dl_model): one result dict per sample.

    Batch norm uses the running statistics; the samples are processed in chunks of batch_size.
    Boxes and label images are given in the original image's pixels.

    Args:
        model: the model.
        samples: preprocessed sample dicts (labels are not needed).

    Returns:
        One dict per sample: classification_class_ids / _names / _confidences (best first);
        segmentation_image and segmentation_confidence; or bbox_class_id, bbox_class_name,
        bbox_confidence and the box keys of the instance type.

    Raises:
        DLSampleError: a missing image or a wrong image shape.

    Examples:
        >>> results = dlbatch.apply_dl_model(model, samples[:1])
        >>> len(results), len(results[0]["classification_class_ids"])
        (1, 3)
    """
    return model.apply(samples)


def evaluate_dl_model(model: DLModel, samples) -> dict:
    """Apply the model to labelled samples and measure it (HALCON's evaluate_dl_model).

    Args:
        model: the model.
        samples: preprocessed sample dicts with the model type's labels.

    Returns:
        The model type's measures: classification top1_error, accuracy, mean_precision,
        mean_recall, confusion_matrix; segmentation mean_iou, class_iou, pixel_accuracy, ...;
        detection mean_ap, ap_50, ap_75, class_ap (as pycocotools' COCOeval).

    Raises:
        DLSampleError: a missing or invalid label.

    Examples:
        >>> measures = dlbatch.evaluate_dl_model(model, samples)
        >>> measures["num_samples"], 0.0 <= measures["accuracy"] <= 1.0
        (4, True)
    """
    return model.evaluate(samples)


def get_dl_model_param(model: DLModel, name: str) -> Any:
    """The value of a model parameter (HALCON's get_dl_model_param).

    Args:
        model: the model.
        name: a parameter name (see the parameter reference or `dlbatch params TYPE`).

    Returns:
        The value (lists are copies).

    Raises:
        DLParamError: an unknown name; the message lists the model's parameters.

    Examples:
        >>> dlbatch.get_dl_model_param(model, "class_ids")
        [0, 1, 2]
    """
    return model.get_param(name)


def set_dl_model_param(model: DLModel, name: str, value: Any) -> None:
    """Set a model parameter (HALCON's set_dl_model_param); takes effect at the next call.

    Switching backend, device or precision keeps weights, batch-norm statistics and solver state;
    setting class_ids re-initialises a classification head. Parameters that shape a network
    (detection levels, anchors, instance_type, ...) are fixed at creation.

    Args:
        model: the model (changed in place).
        name: a settable parameter name.
        value: the new value, converted and checked against the parameter table.

    Raises:
        DLParamError: an unknown or read-only name, a wrong type or an out-of-range value; the
            model is left as it was.
        DLPluginError: backend set to an unregistered name.
        DLBackendError: a device or runtime the backend cannot use (e.g. "cuda:0" on numpy).

    Examples:
        >>> dlbatch.set_dl_model_param(model, "solver_type", "adam")
        >>> dlbatch.get_dl_model_param(model, "solver_type")
        'adam'
    """
    model.set_param(name, value)


def write_dl_model(model: DLModel, path) -> None:
    """Write the model to one .onnx file (HALCON's write_dl_model), atomically.

    The file holds the graph, the weights and batch-norm statistics, the hyperparameters and the
    solver state, so `read_dl_model` resumes training exactly; it passes the ONNX checker and
    runs in onnxruntime. A crash or a full disk never leaves a half-written file.

    Args:
        model: the model.
        path: the file to write (replaced if it exists).

    Raises:
        DLModelFileError: the file cannot be written (the old file is then intact).

    Examples:
        >>> dlbatch.write_dl_model(model, "model.onnx")   # doctest: +SKIP
    """
    from .core.onnx_io import write_dl_model as _write
    _write(model, path)


def read_dl_model(path, backend: str | None = None, device: str = "cpu", **kwargs) -> DLModel:
    """Read a dlbatch .onnx file or an ONNX classifier made elsewhere (HALCON's read_dl_model).

    A file made elsewhere (e.g. `torch.onnx.export`, opsets 7-21) becomes a classification
    model (or the type given as `type=`): constant subgraphs are folded, initializers become
    trainable parameters, a final Softmax is trained on its logits.

    Args:
        path: the .onnx file.
        backend: compute backend (default from plugins.toml); not stored in files.
        device: device of the backend, e.g. "cpu" or "cuda:0".
        **kwargs: model parameters to set on reading (e.g. batch_size, class_ids) and `type`.

    Returns:
        The DLModel.

    Raises:
        DLModelFileError: a missing, corrupt or unsafe file, or ops, opsets or types without
            support (every missing op is listed with its nodes).
        DLPluginError: an unknown backend.

    Examples:
        >>> model = dlbatch.read_dl_model("model.onnx", backend="numpy")   # doctest: +SKIP
    """
    from .core.onnx_io import read_dl_model as _read
    return _read(path, backend=backend, device=device, **kwargs)


def detection_params_from_samples(samples, image_width: int, image_height: int, **options) -> dict:
    """Anchor parameters suggested from the samples' boxes so that most boxes get an anchor with
    IoU >= 0.5 (HALCON's determine_dl_model_detection_param).

    Args:
        samples: dicts with rectangle1 or rectangle2 boxes at image_width x image_height.
        image_width: the model's image width.
        image_height: the model's image height.
        **options: see dlbatch.models.detection.detection_params.detection_params_from_samples
            (instance_type, ignore_direction, coverage_goal, level and search bounds).

    Returns:
        min_level, max_level, anchor_num_subscales, anchor_aspect_ratios (and anchor_angles for
        rectangle2), with coverage, coverage_goal_met, num_boxes and num_anchors.

    Raises:
        DLSampleError: samples without boxes, or degenerate boxes.
        DLParamError: bad sizes or options.

    Examples:
        >>> from dlbatch.data import detection_samples
        >>> p = dlbatch.detection_params_from_samples(detection_samples(20), 64, 64)
        >>> p["min_level"] <= p["max_level"]
        True
    """
    from .models.detection.detection_params import detection_params_from_samples as _suggest
    return _suggest(samples, image_width, image_height, **options)


def export_inference_onnx(model: DLModel, path) -> None:
    """Write a detection model (rectangle1) as an inference-only .onnx file whose graph also
    decodes the boxes and runs NonMaxSuppression, so onnxruntime alone returns apply_dl_model's
    detections; written atomically; outputs in dlbatch.models.detection.inference_export.

    Args:
        model: a detection model; its decoding settings (min_confidence, max_overlap, ...) are
            baked into the file.
        path: the file to write.

    Raises:
        DLParamError: not a detection model this export supports.
        DLModelFileError: the file cannot be written.

    Examples:
        >>> dlbatch.export_inference_onnx(detector, "detector_inference.onnx")   # doctest: +SKIP
    """
    from .models.detection.inference_export import export_inference_onnx as _export
    _export(model, path)


def train_dl_model(model: DLModel, train, validation=None, **options) -> dict:
    """The training procedure (HALCON's train_dl_model): shuffled epochs of
    train_dl_model_batch, change strategies, augmentation, evaluation, best/final checkpoints
    and exact resume.

    Args:
        model: the model (trained in place).
        train: raw or preprocessed training samples (a list or a DLDataset split).
        validation: samples evaluated every evaluation_interval_epochs epochs (None: none).
        **options: epochs (required), evaluation_interval_epochs, change, augment, seed,
            out_dir, resume, progress; see dlbatch.training.train_dl_model.

    Returns:
        best_metric, best_epoch, final_epoch, main_metric, history, out_dir and paths.

    Raises:
        DLParamError: bad options (epochs, change strategies, augmentation names), or an
            out_dir that holds another run.
        DLSampleError: a sample the model cannot train on.
        DLNumericError: a non-finite loss or gradient (the run can resume from its last epoch).

    Examples:
        >>> result = dlbatch.train_dl_model(model, samples, samples, epochs=1, progress=False)
        >>> result["final_epoch"]
        1
    """
    from .training import train_dl_model as _train
    return _train(model, train, validation, **options)


def read_dl_dataset(path, **options):
    """A dataset on disk (class folders, COCO JSON, images/ + labels/, HALCON DLDataset JSON)
    as a lazy sequence of raw samples.

    Args:
        path: the dataset folder or JSON file.
        **options: format, image_dir, border_tolerance, check_files; see
            dlbatch.datasets.read_dl_dataset.

    Returns:
        A DLDataset.

    Raises:
        DLError: no such path or the wrong kind of path for the format.
        DLSampleError: an invalid annotation (naming the file and key).

    Examples:
        >>> data = dlbatch.read_dl_dataset("data")   # doctest: +SKIP
    """
    from .datasets import read_dl_dataset as _read
    return _read(path, **options)


def split_dl_dataset(dataset, train_percent: float = 70, validation_percent: float = 15, seed: int = 42):
    """A copy of `dataset` whose samples are split into train/validation/test (HALCON's
    split_dl_dataset), the same for the same seed; classification is stratified per class.

    Args:
        dataset: a DLDataset.
        train_percent: share of training samples, in percent.
        validation_percent: share of validation samples, in percent (the rest is test).
        seed: the seed of the split.

    Returns:
        A new DLDataset; `.split("train")` gives a split's samples.

    Raises:
        DLParamError: percentages outside 0..100 or above 100 together.

    Examples:
        >>> data = dlbatch.split_dl_dataset(dlbatch.read_dl_dataset("data"), 80, 20)   # doctest: +SKIP
    """
    from .datasets import split_dl_dataset as _split
    return _split(dataset, train_percent, validation_percent, seed)


def plugins():
    """Every loaded plugin: name, source, distribution, version and what it registered.

    Returns:
        A list of PluginInfo (built-ins first; `dlbatch plugins list` prints the same).

    Examples:
        >>> "dlbatch.models.classification" in [p.name for p in dlbatch.plugins()]
        True
    """
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
